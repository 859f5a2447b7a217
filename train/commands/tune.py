"""`mask-train tune`: hyper-parameter search with Optuna over [tune] space; every trial is a real `fit`.

    mask-train tune --data DIR --trials 30 [--timeout S] [--study NAME] [--storage URL] [--out DIR] [--resume]

The folder (--out, default tune.out_dir) gets study.db (the SQLite study, unless --storage names another),
trials/<n>/ (one fit run per trial, with its fit.log), and at the end best.toml, trials.csv, history.png and
importance.png. A killed tune continues with --resume: finished trials are kept, the interrupted one runs
again.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from engines.config import with_overrides
from engines.device import set_torch_threads
from engines.errors import UserError
from train.config import Config
from train.data.prepare import ensure_prepared
from train.options import add_training_arguments, data_given
from train.progress import console
from train.tuning.space import parse_space


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trials", dest="tune.trials", type=int, metavar="N", help="trials in all (tune.trials)")
    p.add_argument(
        "--timeout", dest="tune.timeout_s", type=float, metavar="S", help="start no trial after S s"
    )
    p.add_argument("--study", dest="tune.study", metavar="NAME", help="study name (tune.study)")
    p.add_argument(
        "--storage", dest="tune.storage", metavar="URL", help="Optuna storage (default: its SQLite)"
    )
    p.add_argument("--out", dest="tune.out_dir", metavar="DIR", help="study folder (tune.out_dir)")
    p.add_argument("--epochs-per-trial", dest="tune.epochs", type=int, metavar="N", help="default: --epochs")
    p.add_argument("--resume", action="store_true", help="continue the study stored there")
    add_training_arguments(p)


def refuse_torchrun() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError(
            "tune cannot run under torchrun: each trial is a process of its own; run `mask-train tune` alone"
        )


@dataclass(frozen=True)
class TuneOptions:
    """tune's own flags, typed (the rest are config overrides, already in the Config)."""

    resume: bool = False
    data_given: bool = False  # --data named the competition folder: the cache is refreshed from it

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TuneOptions:
        return cls(resume=args.resume, data_given=data_given(args))


def run(args: argparse.Namespace, cfg: Config) -> int:
    opts = TuneOptions.from_args(args)
    refuse_torchrun()
    params = parse_space(cfg)  # bad entries are one line before anything is written or run
    if cfg.data.val_fraction <= 0:
        raise UserError("data.val_fraction = 0: tune scores trials on validation people; set it above 0")
    cfg = with_overrides(cfg, {"train.epochs": cfg.tune.epochs or cfg.train.epochs})
    out = cfg.resolve(cfg.tune.out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder")
    # these import optuna: here, so that `mask-train --help` answers at once
    from train.tuning.report import write_outputs
    from train.tuning.study import TuneSetup, open_study, storage_url
    from train.tuning.view import run_study

    out.mkdir(parents=True, exist_ok=True)
    setup = TuneSetup(cfg, params, out, storage_url(cfg, out), cfg.tune.study)
    study = open_study(setup, opts.resume)
    set_torch_threads(cfg.train.threads)
    ensure_prepared(cfg, opts.data_given, True)  # once, not in every trial
    try:
        run_study(setup, study)
    finally:
        best = write_outputs(out, cfg, study)
    if best is None:
        console.print(f"no trial completed; see {out / 'trials.csv'}")
        return 1
    b = study.best_trial
    console.print(f"best trial #{b.number}: validation macro F1 {b.value:.4f} -> {out / 'best.toml'}")
    console.print(f"  mask-train fit --config {out / 'best.toml'}")
    return 0
