"""The k-fold training behind `mask-train kfold --folds K`: K person-grouped, class-stratified folds, one
`fit` run per fold, and the out-of-fold macro F1 (every image scored by the fold model that never saw its
person).

    OUT/folds.json        fold -> person ids (reused when the command runs again)
    OUT/fold<k>/          a complete fit run (best.pt, last.pt, metrics.jsonl, ...)
    OUT/kfold.json, OUT/oof_confusion.png, OUT/oof_predictions.npz

Safe to run again: finished folds are skipped, an interrupted fold resumes from its last.pt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import UserError
from engines.fileio import atomic_write_json
from engines.labels import class_names
from train.config import Config
from train.data.folds import kfold_people
from train.fitting.checkpoint import load_training_state
from train.fitting.distributed import Dist
from train.fitting.session import fit, load_samples, new_run_dir
from train.measures.metrics import summarize
from train.measures.plots import confusion_image, save_png
from train.progress import console
from train.runfiles import save_npz


def fold_people(out: Path, samples, k: int, seed: int, write: bool = True) -> list[set[str]]:
    """The saved folds of `out`, else new ones (deterministic: every DDP rank computes the same)."""
    path = out / "folds.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if len(saved["folds"]) != k:
            raise UserError(f"{out} was split into {len(saved['folds'])} folds, not {k}: use another --out")
        folds = [set(f) for f in saved["folds"]]
        check_same_people(path, set().union(*folds), {s.person for s in samples})
        return folds
    folds = kfold_people(samples, k, seed)
    if write:
        atomic_write_json(path, {"folds": [sorted(f) for f in folds]})
    return folds


def check_same_people(path: Path, saved: set[str], now: set[str]) -> None:
    """Folds of other people than the data's: a new person would be in no fold (trained on by every fold,
    scored by none), and the out-of-fold score would silently leave them out. Deleting folds.json alone is no
    cure: a fold folder's last.pt resumes with the split it was started with."""
    if saved == now:
        return
    added, removed = sorted(now - saved), sorted(saved - now)
    change = "; ".join(
        f"{len(ids)} {'person' if len(ids) == 1 else 'people'} {what}, e.g. {ids[0]}"
        for ids, what in ((added, "added"), (removed, "removed"))
        if ids
    )
    raise UserError(
        f"{path} splits other people than the data holds now ({change}): use another --out "
        f"(its fold runs were trained on that split)"
    )


def run_fold(cfg: Config, fold_dir: Path, people: set[str], dist: Dist, show: bool) -> None:
    """One fold's fit run; a fold interrupted earlier resumes from its last.pt."""
    state = load_training_state(fold_dir / "last.pt") if (fold_dir / "last.pt").is_file() else None
    fit(cfg, run_dir=fold_dir, state=state, val_people=people, dist=dist, data_given=False, show=show)


def out_of_fold(out: Path, k: int) -> dict[str, Any]:
    """Concatenate each fold's best-epoch validation predictions and score them together."""
    keys, targets, probs = [], [], []
    for i in range(k):
        path = out / f"fold{i}" / "val_predictions.npz"
        if not path.is_file():
            raise UserError(f"{path} is missing: fold {i} did not finish")
        with np.load(path) as z:
            keys += z["keys"].tolist()
            targets.append(z["targets"])
            probs.append(z["probs"])
    m = summarize(np.concatenate(probs), np.concatenate(targets))
    m.update(keys=keys, probs=np.concatenate(probs), targets=np.concatenate(targets))
    return m


def write_summary(out: Path, m: dict[str, Any], per_fold: list[dict[str, Any]]) -> None:
    """kfold.json, oof_confusion.png and oof_predictions.npz in the k-fold folder."""
    plain = {k: v for k, v in m.items() if k not in ("keys", "probs", "targets")}
    atomic_write_json(out / "kfold.json", {"oof": plain, "folds": per_fold})
    save_png(
        out / "oof_confusion.png",
        confusion_image(
            np.asarray(m["confusion"]), class_names(), f"{out.name}: out-of-fold, macro F1 {m['f1']:.3f}"
        ),
    )
    save_npz(out / "oof_predictions.npz", keys=np.array(m["keys"]), targets=m["targets"], probs=m["probs"])


def fold_scores(fold_dir: Path, i: int) -> dict[str, Any]:
    """The best epoch's validation scores of one finished fold (its val_metrics.json)."""
    best = json.loads((fold_dir / "val_metrics.json").read_text())
    return {
        "fold": i,
        **{key: best[key] for key in ("epoch", "n", "acc", "f1", "f1_mask", "f1_gender", "f1_age")},
    }


@dataclass
class KfoldResult:
    out: Path  # the k-fold folder
    oof: dict[str, Any]  # out-of-fold metrics (train.measures.metrics.summarize) with keys/probs/targets
    per_fold: list[dict[str, Any]]  # each fold's best-epoch scores


def run_folds(cfg: Config, dist: Dist, out: str | None = None, data_given: bool = True) -> KfoldResult | None:
    """Every fold (a DDP fit under torchrun), then the out-of-fold score, written by rank 0, which alone gets
    the result back (other ranks get None)."""
    k, base = cfg.data.folds, new_run_dir(cfg)
    folder = Path(dist.broadcast(out or str(base.with_name(base.name + "-kfold"))))
    _, samples = load_samples(cfg, dist, data_given)
    folds = fold_people(folder, samples, k, cfg.train.seed, write=dist.main)
    per_fold = []
    for i, people in enumerate(folds):
        if dist.main:
            console.rule(f"fold {i + 1}/{k}: {len(people)} validation people")
        run_fold(cfg, folder / f"fold{i}", people, dist, show=True)
        dist.barrier()
        per_fold.append(fold_scores(folder / f"fold{i}", i))
    if not dist.main:
        return None
    m = out_of_fold(folder, k)
    write_summary(folder, m, per_fold)
    return KfoldResult(folder, m, per_fold)
