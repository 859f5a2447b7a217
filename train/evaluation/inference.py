"""Model files at inference for evaluate / predict / eda: any format through engines.formats.load_engine,
an ensemble (mean of the models' probabilities) and test-time augmentation (mean over views)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engines.errors import UserError
from engines.fileio import require_file
from engines.formats import load_engine


def load_models(paths: Sequence[str | Path], device: str = "auto", threads: int = 0) -> list:
    if not paths:
        raise UserError("give at least one model file (--checkpoint)")
    engines = []
    for p in paths:
        require_file(p, "model file")
        engines.append(load_engine(p, device=device, threads=threads))
    return engines


def views(crops: Sequence[np.ndarray], tta: bool) -> list[list[np.ndarray]]:
    """The crops as the model sees them: as is, and mirrored (a face at a door is left-right symmetric)."""
    out = [list(crops)]
    if tta:
        out.append([np.ascontiguousarray(c[:, ::-1]) for c in crops])
    return out


def model_probs(engine, crops: Sequence[np.ndarray], tta: bool, batch_size: int = 32) -> np.ndarray:
    """[N, 18] probabilities of one model, averaged over the TTA views."""
    per_view = [engine.classify(v, batch_size) for v in views(crops, tta)]
    return np.mean(per_view, axis=0)


def ensemble_probs(
    engines: Sequence, crops_per_model: Sequence[Sequence[np.ndarray]], tta: bool, batch_size: int = 32
) -> np.ndarray:
    """Mean over models of each model's (TTA-averaged) probabilities. Each model gets its own crops
    (models trained with another crop geometry get crops of that geometry)."""
    return np.mean([model_probs(e, c, tta, batch_size) for e, c in zip(engines, crops_per_model)], axis=0)


def geometry_warnings(engines: Sequence, crop_cfg) -> list[str]:
    return [
        f"{e.path.name} was trained on crops with other geometry ({e.meta.crop}) "
        f"than the cache's ({crop_cfg})"
        for e in engines
        if e.meta.crop != crop_cfg
    ]
