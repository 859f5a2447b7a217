"""One table, one row per model-file format: which backend loads a file, which function reads its metadata
and which exporter writes it. `mask-train export-*` and `mask-monitor --engine` both go through it, so a
file that one writes the other can read.

A row names its three parts as "module:attribute" strings, imported only when a file of that format is
used: a CPU machine never imports tensorrt, and `engines` never imports `train` (the exporters live there).
Adding a format is one backend module (an Engine subclass and a `read_meta(path)`), one exporter, one row:
the row also says what the format is exported from and which [export] settings its exporter reads, and
`mask-train export` builds its flags from that, so a new format needs no new command.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from engines.backends.base import Engine
from engines.config import ExportConfig
from engines.contract import ModelFileError, ModelMeta

_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_EXPORT_KEYS = {f.name: f.type for f in fields(ExportConfig)}


@dataclass(frozen=True)
class ExportOption:
    """One [export] setting an exporter reads, and the `mask-train export` flag that sets it for one run."""

    flag: str  # e.g. "--opset"
    key: str  # the ExportConfig field it sets
    help: str
    metavar: str = ""

    def __post_init__(self) -> None:
        if self.key not in _EXPORT_KEYS or not self.flag.startswith("--"):
            raise ValueError(f"export option {self.flag!r}: {self.key!r} is not an [export] key")

    @property
    def kind(self) -> str:
        """ "bool", "int" or "str": the field's type, as the CLI parses it."""
        return str(_EXPORT_KEYS[self.key])


FP16 = ExportOption("--fp16", "fp16", "half precision")
OPSET = ExportOption("--opset", "opset", "ONNX opset", "N")


@dataclass(frozen=True)
class ModelFormat:
    """One model-file format. A malformed reference is refused when the row is made (import time), not
    when a user first opens a file of that format."""

    name: str  # what export and errors call it
    suffix: str
    runtime: str  # what the user reads
    backend: str  # "module:Class", an engines.backends.base.Engine subclass
    read_meta: str  # "module:function", path -> ModelMeta without loading the runtime
    exporter: str  # "module:function", (source, out, ExportConfig, status=callable(str)) -> ModelMeta
    needs_gpu: bool = False
    sources: tuple[str, ...] = (".pt",)  # the suffixes it is exported from
    options: tuple[ExportOption, ...] = ()  # the [export] settings its exporter reads

    def __post_init__(self) -> None:
        if not self.name or not self.suffix.startswith("."):
            raise ValueError(f"model format {self.name!r}: needs a name and a suffix starting with '.'")
        for part in ("backend", "read_meta", "exporter"):
            ref = getattr(self, part)
            if not isinstance(ref, str) or not _REF.match(ref):
                raise ValueError(
                    f"model format {self.name!r}: {part} must name 'module:attribute', got {ref!r}"
                )

    def load(self, part: str) -> Any:
        """The backend class, metadata reader or exporter this row names, imported now."""
        module, _, attr = getattr(self, part).partition(":")
        return getattr(importlib.import_module(module), attr)


def _table(*rows: ModelFormat) -> dict[str, ModelFormat]:
    return {row.suffix: row for row in rows}


FORMATS: dict[str, ModelFormat] = _table(
    ModelFormat(
        "pytorch",
        ".pt",
        "PyTorch",
        "engines.backends.torch_backend:TorchEngine",
        "engines.backends.torch_backend:read_meta",
        "train.export.pytorch:to_pytorch",
    ),
    ModelFormat(
        "onnx",
        ".onnx",
        "ONNX Runtime",
        "engines.backends.onnx_backend:OnnxEngine",
        "engines.backends.onnx_backend:read_meta",
        "train.export.onnx:to_onnx",
        options=(FP16, OPSET),
    ),
    ModelFormat(
        "tensorrt",
        ".engine",
        "TensorRT",
        "engines.backends.tensorrt_backend:TensorRTEngine",
        "engines.backends.tensorrt_backend:read_meta",
        "train.export.tensorrt:to_tensorrt",
        needs_gpu=True,
        sources=(".pt", ".onnx"),
        options=(
            FP16,
            OPSET,
            ExportOption("--min-batch", "min_batch", "optimisation profile: smallest batch", "N"),
            ExportOption("--opt-batch", "opt_batch", "optimisation profile: the batch tuned for", "N"),
            ExportOption("--max-batch", "max_batch", "optimisation profile: largest batch", "N"),
            ExportOption("--workspace-mb", "workspace_mb", "builder workspace", "MB"),
            ExportOption(
                "--timing-cache",
                "timing_cache",
                "TensorRT timing cache, read and updated (unset: timing.cache beside the engine)",
                "FILE",
            ),
        ),
    ),
)


def format_for(path: str | os.PathLike[str]) -> ModelFormat:
    """The row of the file's suffix (case-blind); an unknown suffix is one line naming the known ones."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ModelFileError(
            f"model file {path}: unknown suffix {suffix or '(none)'!r}; expected one of {', '.join(FORMATS)}"
        )
    return FORMATS[suffix]


def _existing(path: str | os.PathLike[str]) -> tuple[Path, ModelFormat]:
    """The format first: a wrong suffix is the more useful error, whether or not the file exists."""
    p = Path(path)
    fmt = format_for(p)
    if not p.is_file():
        raise ModelFileError(f"model file {p} does not exist")
    return p, fmt


def read_meta(path: str | os.PathLike[str]) -> ModelMeta:
    """The metadata of any model file, through its format's reader (no runtime session is started)."""
    p, fmt = _existing(path)
    reader: Callable[[Path], ModelMeta] = fmt.load("read_meta")
    return reader(p)


def load_engine(path: str | os.PathLike[str], device: str = "auto", threads: int = 0) -> Engine:
    """Load the file with the backend its format's row names (no branching on formats anywhere else)."""
    p, fmt = _existing(path)
    return fmt.load("backend")(p, device=device, threads=threads)
