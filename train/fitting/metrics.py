"""The competition's metric (macro F1 over the 18 classes), per-task F1 and accuracy, from a confusion matrix.

Macro F1 averages over the classes present in the truth or the predictions (scikit-learn's
f1_score(average='macro') without `labels`): a class absent from both says nothing about the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engines.labels import NUM_CLASSES, TASK_OF, TASKS


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
    cm = confusion(targets, preds)
    n = max(int(cm.sum()), 1)
    out: dict[str, Any] = {"n": int(cm.sum()), "acc": float(np.trace(cm)) / n, "f1": macro_f1(cm)}
    for task in TASKS:
        tcm = task_confusion(cm, task)
        out[f"f1_{task}"] = macro_f1(tcm)
        out[f"acc_{task}"] = float(np.trace(tcm)) / n
    out["per_class_f1"] = [None if np.isnan(v) else round(float(v), 4) for v in per_class_f1(cm)]
    out["confusion"] = cm.tolist()
    return out


def headline(m: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics, for metrics.jsonl and tables."""
    return {
        k: round(float(v), 4) for k, v in m.items() if k in ("acc", "f1", "f1_mask", "f1_gender", "f1_age")
    }
