"""The competition's metric (macro F1 over the 18 classes), per-task F1 and accuracy, from a confusion matrix.

Macro F1 averages over the classes present in the truth or the predictions (scikit-learn's
f1_score(average='macro') without `labels`): a class absent from both says nothing about the model.

With partial labels (train.data.targets) each task is scored on the samples that have it, and the 18-class
figures (acc, f1, confusion) on the samples that have all three; `n_task` says how many each saw.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engines.labels import NUM_CLASSES, TASK_OF, TASKS
from train.data.targets import PARTIAL_BASE, split_targets


def confusion(targets: np.ndarray, preds: np.ndarray, n: int = NUM_CLASSES) -> np.ndarray:
    """[n, n] counts, rows = truth, columns = prediction."""
    t, p = np.asarray(targets, np.int64), np.asarray(preds, np.int64)
    return np.bincount(t * n + p, minlength=n * n).reshape(n, n)


def per_class_f1(cm: np.ndarray) -> np.ndarray:
    """F1 of each class; NaN where the class is in neither the truth nor the predictions."""
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    denom = support + predicted
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * tp / denom, np.nan)
    return f1


def macro_f1(cm: np.ndarray) -> float:
    f1 = per_class_f1(cm)
    return float(np.nanmean(f1)) if np.any(~np.isnan(f1)) else 0.0


def task_confusion(cm: np.ndarray, task: str) -> np.ndarray:
    """Fold an 18x18 confusion matrix into the task's (3x3, 2x2 or 3x3)."""
    idx = TASK_OF[task]
    k = len(TASKS[task])
    out = np.zeros((k, k), dtype=cm.dtype)
    np.add.at(out, (idx[:, None], idx[None, :]), cm)
    return out


def summarize(probs: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro F1 (18 classes and each task), per-class F1 and the confusion matrix."""
    preds = np.asarray(probs).argmax(axis=1)
    targets = np.asarray(targets, np.int64)
    full = targets < PARTIAL_BASE
    cm = confusion(targets[full], preds[full])
    n = max(int(cm.sum()), 1)
    out: dict[str, Any] = {"n": int(cm.sum()), "acc": float(np.trace(cm)) / n, "f1": macro_f1(cm)}
    for task, truth in zip(TASKS, split_targets(targets)):
        known = truth >= 0
        k = len(TASKS[task])
        tcm = confusion(truth[known], TASK_OF[task][preds[known]], k)
        out[f"n_{task}"] = int(known.sum())
        out[f"f1_{task}"] = macro_f1(tcm) if known.any() else 0.0
        out[f"acc_{task}"] = float(np.trace(tcm)) / max(int(known.sum()), 1)
    out["per_class_f1"] = [None if np.isnan(v) else round(float(v), 4) for v in per_class_f1(cm)]
    out["confusion"] = cm.tolist()
    return out


def headline(m: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics, for metrics.jsonl and tables."""
    return {
        k: round(float(v), 4) for k, v in m.items() if k in ("acc", "f1", "f1_mask", "f1_gender", "f1_age")
    }
