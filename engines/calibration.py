"""Calibrated confidence: temperature scaling of a model's probabilities, and how well they are calibrated.

A model file carries `temperature` in its metadata: one value per softmax of its network ("classes" for the
18-way head; "mask", "gender", "age" for three heads; a missing key is 1.0, so files made before it load
unchanged). Every backend's probabilities go through `apply_temperature` in one place
(engines.backends.base.Engine.classify), so the monitor, its events, `--collect`'s unsure threshold and the
label page all read the calibrated probability.

Dividing logits by T before the softmax is the same as raising the softmax's probabilities to 1/T and
normalising again (the logits' per-row constant cancels), so this works on the probabilities a model file
outputs, whatever its format. For three heads each task's marginal is scaled, and the 18 classes are their
product again, as the network computes them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from engines.labels import NUM_CLASSES, TASK_NAMES, marginals

TEMPERATURE_KEYS = {"single": ("classes",), "multi": TASK_NAMES}
ECE_BINS = 15
_TINY = 1e-30  # a probability that underflowed to 0 in float32 stays the smallest instead of -inf


def log_probs(probs: np.ndarray, head: str) -> dict[str, np.ndarray]:
    """Per softmax of the network (TEMPERATURE_KEYS[head]): the log-probabilities, float64 [N, K]. They are
    the logits up to a per-row constant, which is all temperature scaling needs."""
    p = np.asarray(probs, np.float64)
    if head == "single":
        parts = {"classes": p}
    else:
        parts = dict(zip(TASK_NAMES, marginals(p)))
    return {k: np.log(np.maximum(v, _TINY)) for k, v in parts.items()}


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def apply_temperature(probs: np.ndarray, head: str, temperature: Mapping[str, float]) -> np.ndarray:
    """[N, 18] probabilities at T = 1 -> at the given temperatures (a missing key: 1.0); float32."""
    if not temperature or all(float(t) == 1.0 for t in temperature.values()) or len(probs) == 0:
        return probs
    parts = {k: softmax(z / float(temperature.get(k, 1.0))) for k, z in log_probs(probs, head).items()}
    if head == "single":
        out = parts["classes"]
    else:
        pm, pg, pa = (parts[t] for t in TASK_NAMES)
        out = (pm[:, :, None, None] * pg[:, None, :, None] * pa[:, None, None, :]).reshape(-1, NUM_CLASSES)
    return out.astype(np.float32)


def nll(logits: np.ndarray, targets: np.ndarray, t: float = 1.0) -> float:
    """Mean negative log-likelihood of the targets under softmax(logits / t)."""
    z = np.asarray(logits, np.float64) / t
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(z)), targets]))


def fit_temperature(logits: np.ndarray, targets: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """The T minimising the NLL of softmax(logits / T) on (logits, targets): a 1-D search on log T (a grid,
    then golden-section refinement; the NLL is smooth and unimodal enough in log T for this). 1.0 when there
    is nothing to fit."""
    targets = np.asarray(targets, np.int64)
    if len(targets) == 0:
        return 1.0
    grid = np.linspace(np.log(lo), np.log(hi), 61)
    values = [nll(logits, targets, np.exp(g)) for g in grid]
    i = int(np.argmin(values))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if nll(logits, targets, np.exp(c)) < nll(logits, targets, np.exp(d)):
            b = d
        else:
            a = c
    return float(np.exp((a + b) / 2))


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of the top probability: over `bins` equal-width confidence bins, the share of samples in a bin
    times |accuracy - mean confidence| there. `probs` [N, K] of one task, `targets` [N] its labels."""
    stats = reliability(probs, targets, bins)
    n = stats["count"].sum()
    if n == 0:
        return 0.0
    gap = np.abs(stats["accuracy"] - stats["confidence"])
    return float((stats["count"] * gap).sum() / n)


def reliability(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per confidence bin: count, mean top probability, accuracy (0 where a bin is empty)."""
    p = np.asarray(probs, np.float64)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    correct = (pred == np.asarray(targets)).astype(np.float64)
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    safe = np.maximum(count, 1)
    return {
        "count": count,
        "confidence": np.bincount(which, conf, minlength=bins) / safe,
        "accuracy": np.bincount(which, correct, minlength=bins) / safe,
    }


def check_temperature(temperature: object, head: str, source: str) -> str | None:
    """What is wrong with a model file's `temperature` for its head, or None."""
    keys = TEMPERATURE_KEYS.get(head, ())
    if not isinstance(temperature, dict):
        return f"temperature = {temperature!r} is not {{name: number}}"
    for k, v in temperature.items():
        if k not in keys:
            return f"temperature has key {k!r}; a {head} head has {list(keys)}"
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or not v > 0:
            return f"temperature[{k!r}] = {v!r} is not a positive number"
    return None
