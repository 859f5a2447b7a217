"""`mask-train kfold --folds K`: K person-grouped, class-stratified folds, one `fit` run per fold, and the
out-of-fold macro F1 (every image scored by the fold model that never saw its person).

    OUT/folds.json        fold -> person ids (reused when the command runs again)
    OUT/fold<k>/          a complete fit run (best.pt, last.pt, metrics.jsonl, ...)
    OUT/kfold.json, OUT/oof_confusion.png, OUT/oof_predictions.npz

Safe to run again: finished folds are skipped, an interrupted fold resumes from its last.pt.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from engines.device import set_torch_threads
from train.config import Config
from train.options import add_training_arguments, data_given
from train.progress import console
from train.runfiles import check_output_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--folds", dest="data.folds", type=int, metavar="K", help="number of folds (data.folds)")
    p.add_argument("--out", metavar="DIR", help="k-fold folder (default: train.out_dir/<time>-<arch>-kfold)")
    add_training_arguments(p)


@dataclass(frozen=True)
class KfoldOptions:
    """kfold's own flags, typed (the rest are config overrides, already in the Config)."""

    out: str | None = None
    data_given: bool = False  # --data named the competition folder: the cache is refreshed from it

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> KfoldOptions:
        return cls(out=args.out, data_given=data_given(args))


def run(args: argparse.Namespace, cfg: Config) -> int:
    """Also runs under torchrun: every fold is a DDP fit; rank 0 alone writes and reports."""
    opts = KfoldOptions.from_args(args)
    # train.fitting imports torch: here, not at the top, so that `mask-train --help` answers at once
    from train.fitting import kfold
    from train.fitting.distributed import setup

    if opts.out:
        check_output_dir(opts.out, "--out")
    set_torch_threads(cfg.train.threads)
    dist = setup(cfg.train.device)
    try:
        result = kfold.run_folds(cfg, dist, opts.out, opts.data_given)
    finally:
        dist.close()
    if result is not None:
        print_summary(result.oof, result.per_fold)
        console.print(
            f"out-of-fold macro F1 {result.oof['f1']:.4f} over {result.oof['n']} images; "
            f"models: {result.out}/fold*/best.pt"
        )
    return 0


def print_summary(m: dict[str, Any], per_fold: list[dict[str, Any]]) -> None:
    """The per-fold table with the out-of-fold row in bold."""
    t = Table(title="k-fold: best epoch of each fold, and out-of-fold over all images")
    for col in ("fold", "best epoch", "val images", "acc", "macro F1", "F1 mask", "F1 gender", "F1 age"):
        t.add_column(col, justify="right")
    for f in per_fold:
        t.add_row(
            str(f["fold"]),
            str(f["epoch"]),
            str(f["n"]),
            *(f"{f[k]:.4f}" for k in ("acc", "f1", "f1_mask", "f1_gender", "f1_age")),
        )
    t.add_row(
        "OOF",
        "",
        str(m["n"]),
        *(f"{m[k]:.4f}" for k in ("acc", "f1", "f1_mask", "f1_gender", "f1_age")),
        style="bold",
    )
    console.print(t)
