"""`.engine` files in TensorRT (10 and 11): the fastest classifier on an NVIDIA GPU.

The file is engines.contract's header (ModelMeta) followed by a serialized TensorRT plan. I/O goes by
tensor name (INPUT_NAME / OUTPUT_NAME), the batch is dynamic within the plan's optimisation profile, and
the buffers are torch CUDA tensors run on a torch CUDA stream (torch is already here; no pycuda).
`tensorrt` and CUDA are touched only when an engine is loaded, so a CPU machine never needs them.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from engines.backends.base import Engine
from engines.contract import (
    INPUT_NAME,
    OUTPUT_NAME,
    ModelFileError,
    ModelMeta,
    read_engine_header,
    unpack_engine,
)
from engines.errors import UserError

CPU_HINT = "Use the .onnx file on a CPU machine"


def read_meta(path: Path) -> ModelMeta:
    """The header's metadata (engines.formats' reader for .engine): neither tensorrt nor torch is imported
    and the plan is not read, so a CPU machine can list and check engine files."""
    return read_engine_header(path)


def cuda_available() -> bool:
    """torch.cuda.is_available() without the warning a CUDA build of torch prints where no driver is."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(torch.cuda.is_available())


def require_tensorrt(what: str, hint: str = "") -> ModuleType:
    """`import tensorrt`, or ONE line that says why it cannot run here and what to use instead."""

    def refuse(reason: str) -> UserError:
        return UserError(
            f"{what} needs TensorRT and an NVIDIA GPU with CUDA; none here ({reason}). {CPU_HINT}{hint}"
        )

    try:
        import tensorrt as trt
    except ImportError:
        raise refuse(
            "the tensorrt package is not installed; on a GPU machine: pip install -e '.[trt]'"
        ) from None
    except Exception as exc:  # a broken install: missing libnvinfer, wrong CUDA libraries
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:160]
        raise refuse(f"tensorrt fails to import: {first}") from None
    if not cuda_available():
        raise refuse(
            f"tensorrt {getattr(trt, '__version__', '?')} is installed but no CUDA device is visible"
        )
    return trt


def torch_dtype(trt: ModuleType, dtype: Any):
    """TensorRT DataType -> torch dtype, for the I/O types this project's engines use."""
    import torch

    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
    if hasattr(trt.DataType, "BF16"):
        table[trt.DataType.BF16] = torch.bfloat16
    if dtype not in table:
        raise KeyError(dtype)
    return table[dtype]


class TensorRTEngine(Engine):
    runtime = "TensorRT"

    def __init__(self, path: Path, device: str = "auto", threads: int = 0) -> None:
        if device == "cpu":
            raise UserError(
                f"{path}: a TensorRT engine runs only on an NVIDIA GPU, but device 'cpu' was asked "
                f"for. {CPU_HINT}"
            )
        trt = require_tensorrt(f"{path}: a TensorRT engine")
        import torch

        meta, plan = unpack_engine(path.read_bytes(), str(path))
        self._set_file(path, meta)
        self.device = torch.device("cuda", torch.cuda.current_device())
        self._lock = threading.Lock()
        self._logger = trt.Logger(trt.Logger.ERROR)
        self._trt_runtime = trt.Runtime(self._logger)
        with torch.cuda.device(self.device):
            self._engine = self._trt_runtime.deserialize_cuda_engine(plan)
            if self._engine is None:
                raise ModelFileError(
                    f"{path}: TensorRT {trt.__version__} cannot load this plan (built by another "
                    f"TensorRT version or for another GPU); rebuild it here with `mask-train export-trt`"
                )
            self._bind(trt, path)
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise UserError(
                    f"{path}: TensorRT could not create an execution context (out of GPU memory?)"
                )
            self._stream = torch.cuda.Stream(self.device)
        self._in = self._out = None  # device buffers, grown to the largest batch seen
        self.runtime = f"TensorRT {trt.__version__} {torch.cuda.get_device_name(self.device)}"

    def _bind(self, trt: ModuleType, path: Path) -> None:
        """Check the plan's named I/O tensors against the contract and read its batch profile."""
        eng = self._engine
        names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        inputs = [n for n in names if eng.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if eng.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
            raise ModelFileError(
                f"{path}: engine I/O is {inputs} -> {outputs}, expected "
                f"[{INPUT_NAME!r}] -> [{OUTPUT_NAME!r}]; rebuild it with `mask-train export-trt`"
            )
        in_shape = tuple(eng.get_tensor_shape(INPUT_NAME))
        if len(in_shape) != 4 or tuple(in_shape[1:]) != (3, *self.meta.input_size):
            raise ModelFileError(
                f"{path}: engine input shape {list(in_shape)} does not match its header's input "
                f"size {self.meta.input_size}"
            )
        out_shape = tuple(eng.get_tensor_shape(OUTPUT_NAME))
        self._n_out = int(out_shape[-1])
        if self._n_out != len(self.meta.labels):
            raise ModelFileError(
                f"{path}: engine gives {self._n_out} outputs for {len(self.meta.labels)} labels"
            )
        try:
            self._in_dtype = torch_dtype(trt, eng.get_tensor_dtype(INPUT_NAME))
            self._out_dtype = torch_dtype(trt, eng.get_tensor_dtype(OUTPUT_NAME))
        except KeyError as exc:
            raise ModelFileError(f"{path}: engine I/O type {exc.args[0]} is not float32/float16") from None
        if in_shape[0] == -1:
            lo, _opt, hi = eng.get_tensor_profile_shape(INPUT_NAME, 0)
            self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        else:  # a static batch: every call runs exactly that many
            self.min_batch = self.max_batch = int(in_shape[0])

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = self._check_batch(batch)
        parts = [self._run(x[i : i + self.max_batch]) for i in range(0, len(x), self.max_batch)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def _run(self, x: np.ndarray) -> np.ndarray:
        """One call within the profile: a batch below its minimum is padded, the padding dropped again."""
        import torch

        n = len(x)
        m = max(n, self.min_batch)
        with self._lock, torch.cuda.device(self.device), torch.cuda.stream(self._stream):
            if self._in is None or len(self._in) < m:
                self._in = torch.empty(
                    (m, 3, *self.meta.input_size), dtype=self._in_dtype, device=self.device
                )
                self._out = torch.empty((m, self._n_out), dtype=self._out_dtype, device=self.device)
            inp, out = self._in[:m], self._out[:m]
            inp[:n].copy_(torch.from_numpy(x))  # casts to the engine's input type (float16 for fp16 I/O)
            if m > n:
                inp[n:].zero_()
            if not self._context.set_input_shape(INPUT_NAME, tuple(inp.shape)):
                raise RuntimeError(f"{self.path.name}: TensorRT refused input shape {list(inp.shape)}")
            self._context.set_tensor_address(INPUT_NAME, inp.data_ptr())
            self._context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(f"{self.path.name}: TensorRT execution failed")
            probs = out[:n].float().cpu()
            self._stream.synchronize()
        return probs.numpy()

    def close(self) -> None:
        import torch

        for name in ("_context", "_engine", "_trt_runtime", "_in", "_out"):
            if hasattr(self, name):
                delattr(self, name)
        torch.cuda.empty_cache()
