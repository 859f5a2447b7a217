"""The classifier interface every backend implements; one backend module per row of
engines.formats.FORMATS."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engines.calibration import apply_temperature
from engines.contract import ModelMeta
from engines.preprocess import preprocess


class Engine(abc.ABC):
    """A loaded classifier: `infer(batch) -> probabilities [N, 18]`, with the file's metadata in `.meta`."""

    runtime: str = ""
    max_batch: int | None = None  # a hard limit of the runtime (TensorRT profile); None = any

    @abc.abstractmethod
    def __init__(self, path: Path, device: str = "auto", threads: int = 0) -> None:
        """Load `path` (its format's file, known to exist) on `device` ("auto", "cpu", "cuda") with `threads`
        CPU threads (0 = the runtime's default). Every backend takes exactly these; `load_engine` calls it.
        A backend reads the file's metadata with its module's `read_meta` and records both with
        `_set_file`."""

    def _set_file(self, path: Path, meta: ModelMeta) -> None:
        self.path = path
        self.meta = meta
        # the file's calibration, applied by classify; `mask-train calibrate` sets {} to read the raw network
        self.temperature: dict[str, float] = dict(meta.temperature)

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 [N, 3, H, W] normalised RGB -> float32 [N, 18] probabilities of the network itself (N >= 1,
        any size), before the file's temperature: `classify` is what every user of a model calls."""

    def classify(self, crops: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """BGR crops (any size; 384x512 from crop_face) -> [N, 18] probabilities, in as few calls as
        allowed, calibrated by the file's temperature (the one place every backend's output goes through)."""
        if len(crops) == 0:
            return np.zeros((0, len(self.meta.labels)), dtype=np.float32)
        step = min(batch_size, self.max_batch or batch_size)
        parts = []
        for i in range(0, len(crops), step):
            batch = preprocess(crops[i : i + step], self.meta.input_size, self.meta.mean, self.meta.std)
            parts.append(self.infer(batch))
        return apply_temperature(np.concatenate(parts, axis=0), self.meta.head, self.temperature)

    def _check_batch(self, batch: np.ndarray) -> np.ndarray:
        h, w = self.meta.input_size
        if batch.ndim != 4 or batch.shape[1:] != (3, h, w) or batch.shape[0] < 1:
            raise ValueError(
                f"{self.path.name}: expected a batch of shape [N, 3, {h}, {w}], got {list(batch.shape)}"
            )
        return np.ascontiguousarray(batch, dtype=np.float32)

    def describe(self) -> str:
        return (
            f"{self.path.name} ({self.runtime}, {self.meta.arch}, "
            f"input {self.meta.input_width}x{self.meta.input_height})"
        )

    def close(self) -> None:  # noqa: B027 - a no-op hook; backends with resources override it
        """Release runtime resources (GPU memory); the engine is unusable afterwards."""
