"""`.pt` checkpoints in PyTorch: the training-side format, on CPU or a CUDA GPU."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines.backends.base import Engine
from engines.contract import CKPT_META, CKPT_MODEL, ModelFileError, ModelMeta
from engines.device import resolve_device
from engines.models import InferenceModel, create_model


def load_checkpoint(path: Path) -> tuple[ModelMeta, dict[str, Any]]:
    """Read a checkpoint with weights_only=True: a file that holds code is refused, never unpickled."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only names the class it refused ("Unsupported global: GLOBAL builtins.print"); any other
        # unpickling error means the file is not a checkpoint at all (an ONNX file, a text file)
        refused = re.search(r"Unsupported global: (GLOBAL [\w.]+)", str(exc))
        if refused:
            raise ModelFileError(
                f"{path}: refusing to unpickle a checkpoint with objects other than tensors and "
                f"plain data ({refused.group(1)})"
            ) from None
        raise ModelFileError(f"{path}: not a PyTorch checkpoint (torch.load cannot read it)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: not a readable PyTorch checkpoint ({str(exc).splitlines()[0][:160]})"
        ) from None
    if not isinstance(ckpt, dict) or CKPT_META not in ckpt or CKPT_MODEL not in ckpt:
        raise ModelFileError(
            f"{path}: not a mask-monitor checkpoint (no '{CKPT_META}' and '{CKPT_MODEL}' entries); "
            f"train one with `mask-train fit`"
        )
    return ModelMeta.from_dict(ckpt[CKPT_META], str(path)), ckpt


def read_meta(path: Path) -> ModelMeta:
    """The checkpoint's metadata (engines.formats' reader for .pt): reading it loads the weights too, since a
    .pt file is one pickle, but builds no network."""
    return load_checkpoint(path)[0]


def build_inference_model(
    meta: ModelMeta, state_dict: dict[str, torch.Tensor], source: str
) -> InferenceModel:
    model = create_model(meta.arch, meta.head, pretrained=False)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise ModelFileError(
            f"{source}: weights do not fit {meta.arch} with a {meta.head} head "
            f"({str(exc).splitlines()[0][:160]})"
        ) from None
    return InferenceModel(model, meta.head).eval()


class TorchEngine(Engine):
    runtime = "PyTorch"

    def __init__(self, path: Path, device: str = "auto", threads: int = 0) -> None:
        meta, ckpt = load_checkpoint(path)
        self._set_file(path, meta)
        device = resolve_device(device, "engine.device")
        if threads and device == "cpu":
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model = build_inference_model(meta, ckpt[CKPT_MODEL], str(path)).to(self.device)
        self.runtime = f"PyTorch {device}"

    @torch.inference_mode()
    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(self._check_batch(batch)).to(self.device, non_blocking=True)
        return self.model(x).float().cpu().numpy()

    def close(self) -> None:
        del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
