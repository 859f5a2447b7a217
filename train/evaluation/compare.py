"""`mask-train evaluate --compare OLD NEW`: two models on the same images, side by side: what a door's
fine-tune changed. Scored on the mask task (what the monitor flags): recall per mask state, mask accuracy,
and flag-or-not accuracy (is the person's state one of monitor.flag_states, as the truth says?)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from engines.labels import MASK_NAMES, marginals
from train.config import Config
from train.data.layout import COMPETITION_AGE_THRESHOLD
from train.data.prepare import ensure_prepared
from train.data.targets import is_full, split_targets
from train.evaluation.inference import load_models
from train.evaluation.scoring import score_samples, select
from train.measures.metrics import summarize


def door_metrics(probs: np.ndarray, targets: np.ndarray, flag_states: Sequence[str]) -> dict[str, Any]:
    """Mask recall per state (None where the truth has none), mask and flag-or-not accuracy, macro F1."""
    pred = marginals(probs)[0].argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    targets = np.asarray(targets, np.int64)
    truth = split_targets(targets)[0]  # partial labels (a door's mask-only labels) carry the mask too
    flagged = np.array([MASK_NAMES.index(s) for s in flag_states], np.int64)
    n = max(len(truth), 1)
    out: dict[str, Any] = {"n": int(len(truth))}
    for i, name in enumerate(MASK_NAMES):
        support = int((truth == i).sum())
        out[f"recall_{name}"] = float((pred[truth == i] == i).mean()) if support else None
        out[f"support_{name}"] = support
    out["acc_mask"] = float((pred == truth).sum()) / n
    out["acc_flag"] = float((np.isin(pred, flagged) == np.isin(truth, flagged)).sum()) / n
    full = is_full(targets)  # the 18-class F1 needs gender and age: over the samples that have them
    out["f1"] = summarize(probs[full], targets[full])["f1"] if full.any() else None
    return out


@dataclass(frozen=True)
class Comparison:
    """Both models' metrics on the same images (`images` says which)."""

    old: str
    new: str
    images: str
    before: dict[str, Any]
    after: dict[str, Any]

    def rows(self) -> list[tuple[str, float | None, float | None]]:
        keys = [(f"recall {m}", f"recall_{m}") for m in MASK_NAMES]
        keys += [("mask accuracy", "acc_mask"), ("flag-or-not accuracy", "acc_flag"), ("macro F1 (18)", "f1")]
        return [(label, self.before[k], self.after[k]) for label, k in keys]

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "images": self.images,
            "before": self.before,
            "after": self.after,
        }


def compare(
    cfg: Config,
    old: str,
    new: str,
    *,
    split: str = "auto",
    tta: bool = False,
    data_given: bool = True,
    show: bool = True,
) -> Comparison:
    """OLD and NEW on NEW's validation people (the door's labels it was not tuned on), or on all images."""
    engines = load_models([old, new], cfg.engine.device, cfg.engine.threads)
    _, samples = ensure_prepared(cfg, data_given, show)
    chosen, what = select(samples, split, [new])
    targets = np.array([s.cls(COMPETITION_AGE_THRESHOLD) for s in chosen], np.int64)
    flags = cfg.monitor.flag_states
    scores = [
        door_metrics(score_samples([e], chosen, tta, cfg.data.batch_size, show), targets, flags)
        for e in engines
    ]
    return Comparison(str(old), str(new), what, scores[0], scores[1])


def default_report_dir(old: str, new: str) -> Path:
    return Path(new).parent / f"compare-{Path(old).stem}-vs-{Path(new).stem}"


def comparison_table(cmp: Any) -> Table:
    """Before / after / change, one row per metric: what evaluate --compare and demo-door print."""
    t = Table(title=f"{Path(cmp.old).name} -> {Path(cmp.new).name} on {cmp.images}: {cmp.after['n']} images")
    t.add_column("metric")
    for col in ("before", "after", "change"):
        t.add_column(col, justify="right")
    for label, before, after in cmp.rows():
        change = "-" if before is None or after is None else f"{after - before:+.4f}"
        t.add_row(label, _num(before), _num(after), change)
    return t


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"
