"""How well calibrated a model's confidence is, for the mask state: ECE (15 bins) of its top probability, the
reliability bins, NLL, and the before / after report of a temperature. `fit` and `mask-train calibrate` report
them after fitting a temperature (train.fitting.calibration), `evaluate` for any model file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from engines.calibration import apply_temperature, expected_calibration_error, nll, reliability
from engines.labels import marginals
from train.data.targets import split_targets


def mask_ece(probs: np.ndarray, codes: np.ndarray) -> float:
    """ECE (15 bins) of the mask state's top probability, over the samples whose mask state is known."""
    mask = np.asarray(split_targets(np.asarray(codes, np.int64))[0])
    known = mask >= 0
    return expected_calibration_error(marginals(probs)[0][known], mask[known])


def mask_reliability(probs: np.ndarray, codes: np.ndarray) -> dict[str, np.ndarray]:
    """The 15 confidence bins of the mask state's top probability (count, confidence, accuracy)."""
    mask = np.asarray(split_targets(np.asarray(codes, np.int64))[0])
    known = mask >= 0
    return reliability(marginals(probs)[0][known], mask[known])


def mask_nll(probs: np.ndarray, codes: np.ndarray) -> float:
    mask = np.asarray(split_targets(np.asarray(codes, np.int64))[0])
    known = mask >= 0
    return nll(np.log(np.maximum(marginals(probs)[0][known], 1e-30)), mask[known])


def report(
    probs: np.ndarray, codes: np.ndarray, head: str, temperature: Mapping[str, float]
) -> dict[str, Any]:
    """Mask ECE and NLL at T = 1 (`probs`) and at `temperature`, with the temperature itself."""
    after = apply_temperature(probs, head, temperature)
    return {
        "temperature": dict(temperature),
        "ece_mask": round(mask_ece(probs, codes), 5),
        "ece_mask_calibrated": round(mask_ece(after, codes), 5),
        "nll_mask": round(mask_nll(probs, codes), 5),
        "nll_mask_calibrated": round(mask_nll(after, codes), 5),
    }


def describe(rep: Mapping[str, Any]) -> str:
    temps = ", ".join(f"{k} {v:.3g}" for k, v in rep["temperature"].items()) or "1.0 (nothing to fit)"
    before, after = 100 * rep["ece_mask"], 100 * rep["ece_mask_calibrated"]
    return (
        f"temperature {temps}; mask ECE {before:.1f}% -> {after:.1f}%, "
        f"NLL {rep['nll_mask']:.3f} -> {rep['nll_mask_calibrated']:.3f}"
    )
