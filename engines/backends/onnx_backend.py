"""`.onnx` files in ONNX Runtime: the default on a CPU machine (CUDA provider used where present)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engines.backends.base import Engine
from engines.contract import INPUT_NAME, META_KEY, ModelFileError, ModelMeta
from engines.errors import UserError


def read_meta(path: Path) -> ModelMeta:
    """The metadata in the file's metadata_props (engines.formats' reader for .onnx): parsed with `onnx`,
    without starting an ONNX Runtime session."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends from protobuf
        raise ModelFileError(f"{path}: not a valid ONNX file ({exc.__class__.__name__})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if META_KEY not in props:
        raise ModelFileError(
            f"{path}: ONNX file without mask-monitor metadata; export it with `mask-train export-onnx`"
        )
    return ModelMeta.from_json(props[META_KEY], str(path))


class OnnxEngine(Engine):
    runtime = "ONNX Runtime"

    def __init__(self, path: Path, device: str = "auto", threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("onnxruntime is not installed: pip install onnxruntime") from None
        self._set_file(path, read_meta(path))
        available = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise UserError(
                f"{path}: device 'cuda' asked for, but this onnxruntime has no CUDA provider; use cpu"
            )
        providers = ["CPUExecutionProvider"]
        if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:
            raise ModelFileError(
                f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:200]})"
            ) from None
        inp = self.session.get_inputs()[0]
        if inp.name != INPUT_NAME:
            raise ModelFileError(f"{path}: input is named {inp.name!r}, expected {INPUT_NAME!r}")
        self._dtype = np.float16 if "float16" in inp.type else np.float32
        self.runtime = f"ONNX Runtime {self.session.get_providers()[0].replace('ExecutionProvider', '')}"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = self._check_batch(batch).astype(self._dtype, copy=False)
        (probs,) = self.session.run(None, {INPUT_NAME: x})
        return probs.astype(np.float32, copy=False)
