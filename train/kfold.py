"""`mask-train kfold --folds K`: K person-grouped, class-stratified folds, one `fit` run per fold, and the
out-of-fold macro F1 (every image scored by the fold model that never saw its person).

    OUT/folds.json        fold -> person ids (reused when the command runs again)
    OUT/fold<k>/          a complete fit run (best.pt, last.pt, metrics.jsonl, ...)
    OUT/kfold.json, OUT/oof_confusion.png, OUT/oof_predictions.npz

Safe to run again: finished folds are skipped, an interrupted fold resumes from its last.pt.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from engines.config import Config
from engines.errors import UserError
from train.options import add_training_arguments, apply_threads


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--folds", dest="data.folds", type=int, metavar="K", help="number of folds (data.folds)")
    p.add_argument("--out", metavar="DIR", help="k-fold folder (default: train.out_dir/<time>-<arch>-kfold)")
    add_training_arguments(p)


def fold_people(out: Path, samples, k: int, seed: int, write: bool = True) -> list[set[str]]:
    """The saved folds of `out`, else new ones (deterministic: every DDP rank computes the same)."""
    from engines.fileio import atomic_write_json
    from train.folds import kfold_people

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
    change = "; ".join(f"{len(ids)} {'person' if len(ids) == 1 else 'people'} {what}, e.g. {ids[0]}"
                       for ids, what in ((added, "added"), (removed, "removed")) if ids)
    raise UserError(f"{path} splits other people than the data holds now ({change}): use another --out "
                    f"(its fold runs were trained on that split)")


def run_fold(cfg: Config, fold_dir: Path, people: set[str], dist, show: bool) -> None:
    from train.checkpoint import load_training_state
    from train.fit import fit

    state = load_training_state(fold_dir / "last.pt") if (fold_dir / "last.pt").is_file() else None
    fit(cfg, run_dir=fold_dir, state=state, val_people=people, dist=dist, data_given=False, show=show)


def out_of_fold(out: Path, k: int) -> dict[str, Any]:
    """Concatenate each fold's best-epoch validation predictions and score them together."""
    from train.metrics import summarize

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
    from engines.fileio import atomic_write_json
    from engines.labels import class_names
    from train.plots import confusion_image, save_png
    from train.runfiles import save_npz

    plain = {k: v for k, v in m.items() if k not in ("keys", "probs", "targets")}
    atomic_write_json(out / "kfold.json", {"oof": plain, "folds": per_fold})
    save_png(out / "oof_confusion.png", confusion_image(np.asarray(m["confusion"]), class_names(),
                                                        f"{out.name}: out-of-fold, macro F1 {m['f1']:.3f}"))
    save_npz(out / "oof_predictions.npz", keys=np.array(m["keys"]), targets=m["targets"], probs=m["probs"])


def print_summary(m: dict[str, Any], per_fold: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from train.progress import console

    t = Table(title="k-fold: best epoch of each fold, and out-of-fold over all images")
    for col in ("fold", "best epoch", "val images", "acc", "macro F1", "F1 mask", "F1 gender", "F1 age"):
        t.add_column(col, justify="right")
    for f in per_fold:
        t.add_row(str(f["fold"]), str(f["epoch"]), str(f["n"]), *(f"{f[k]:.4f}" for k in
                                                                  ("acc", "f1", "f1_mask", "f1_gender", "f1_age")))
    t.add_row("OOF", "", str(m["n"]), *(f"{m[k]:.4f}" for k in ("acc", "f1", "f1_mask", "f1_gender", "f1_age")),
              style="bold")
    console.print(t)


def fold_scores(fold_dir: Path, i: int) -> dict[str, Any]:
    best = json.loads((fold_dir / "val_metrics.json").read_text())
    return {"fold": i, **{key: best[key] for key in ("epoch", "n", "acc", "f1", "f1_mask", "f1_gender", "f1_age")}}


def run(args: argparse.Namespace, cfg: Config) -> int:
    """Also runs under torchrun: every fold is a DDP fit; rank 0 alone writes and reports."""
    from train.distributed import setup
    from train.runfiles import check_output_dir

    if args.out:
        check_output_dir(args.out, "--out")
    apply_threads(cfg)
    dist = setup(cfg.train.device)
    try:
        return run_folds(args, cfg, dist)
    finally:
        dist.close()


def run_folds(args: argparse.Namespace, cfg: Config, dist) -> int:
    from train.fit import load_samples, new_run_dir
    from train.progress import console

    k, base = cfg.data.folds, new_run_dir(cfg)
    out = Path(dist.broadcast(args.out or str(base.with_name(base.name + "-kfold"))))
    _, samples = load_samples(cfg, dist, getattr(args, "data.data_dir") is not None)
    folds = fold_people(out, samples, k, cfg.train.seed, write=dist.main)
    per_fold = []
    for i, people in enumerate(folds):
        if dist.main:
            console.rule(f"fold {i + 1}/{k}: {len(people)} validation people")
        run_fold(cfg, out / f"fold{i}", people, dist, show=True)
        dist.barrier()
        per_fold.append(fold_scores(out / f"fold{i}", i))
    if dist.main:
        m = out_of_fold(out, k)
        write_summary(out, m, per_fold)
        print_summary(m, per_fold)
        console.print(f"out-of-fold macro F1 {m['f1']:.4f} over {m['n']} images; models: {out}/fold*/best.pt")
    return 0
