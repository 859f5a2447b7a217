"""Classifier backends: one class per row of engines.contract.FORMATS, imported only when used."""
from __future__ import annotations

import abc
import importlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from engines.contract import ModelFileError, ModelMeta, format_for
from engines.preprocess import preprocess


class Engine(abc.ABC):
    """A loaded classifier: `infer(batch) -> probabilities [N, 18]`, with the file's metadata in `.meta`."""

    runtime: str = ""
    max_batch: int | None = None  # a hard limit of the runtime (TensorRT profile); None = any

    def __init__(self, path: Path, meta: ModelMeta) -> None:
        self.path = path
        self.meta = meta

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 [N, 3, H, W] normalised RGB -> float32 [N, 18] probabilities (N >= 1, any size)."""

    def classify(self, crops: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """BGR crops (any size; 384x512 from crop_face) -> [N, 18] probabilities, in as few calls as allowed."""
        if len(crops) == 0:
            return np.zeros((0, len(self.meta.labels)), dtype=np.float32)
        step = min(batch_size, self.max_batch or batch_size)
        parts = []
        for i in range(0, len(crops), step):
            batch = preprocess(crops[i:i + step], self.meta.input_size, self.meta.mean, self.meta.std)
            parts.append(self.infer(batch))
        return np.concatenate(parts, axis=0)

    def _check_batch(self, batch: np.ndarray) -> np.ndarray:
        h, w = self.meta.input_size
        if batch.ndim != 4 or batch.shape[1:] != (3, h, w) or batch.shape[0] < 1:
            raise ValueError(f"{self.path.name}: expected a batch of shape [N, 3, {h}, {w}], got {list(batch.shape)}")
        return np.ascontiguousarray(batch, dtype=np.float32)

    def describe(self) -> str:
        return f"{self.path.name} ({self.runtime}, {self.meta.arch}, input {self.meta.input_width}x{self.meta.input_height})"

    def close(self) -> None:
        """Release runtime resources (GPU memory); the engine is unusable afterwards."""


def load_engine(path: str | os.PathLike[str], device: str = "auto", threads: int = 0) -> Engine:
    """Pick the backend from the file's suffix (engines.contract.FORMATS) and load the file."""
    p = Path(path)
    fmt = format_for(p)
    if not p.is_file():
        raise ModelFileError(f"model file {p} does not exist")
    module_name, _, cls_name = fmt.backend.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(p, device=device, threads=threads)
