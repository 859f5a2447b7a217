"""`mask-train fit`: train one classifier; `--resume` continues a run; runs unchanged under torchrun (DDP).

    mask-train fit --data DIR [--cache CACHE] [--epochs N] [--out RUN_DIR] [--resume [CKPT]]
    torchrun --nproc_per_node 2 -m train fit --data DIR ...

The run folder gets config.toml (the resolved config; `--config` reads it back), split.json,
metrics.jsonl, best.pt (highest validation macro F1), last.pt (every epoch, and on Ctrl-C),
confusion.png, val_metrics.json and val_predictions.npz. Only rank 0 writes.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.device import set_torch_threads
from train.config import Config
from train.options import add_training_arguments, config_given, data_given, overrides_of
from train.progress import console
from train.runfiles import check_output_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="RUN_DIR", help="run folder (default: train.out_dir/<time>-<arch>)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="CKPT",
        help="continue a run: its last.pt (from --out RUN_DIR) or the checkpoint given",
    )
    p.add_argument(
        "--init-from",
        metavar="MODEL.pt",
        help="start from this checkpoint's weights (fine-tuning; same arch, head and input size); "
        "its SHA-256 goes into the new model's metadata as parent_sha256",
    )
    add_training_arguments(p)


@dataclass(frozen=True)
class FitOptions:
    """fit's own flags, typed (the rest are config overrides, already in the Config)."""

    out: Path | None = None
    resume: bool = False
    resume_from: Path | None = None  # --resume CKPT or RUN_DIR; None with --resume alone: --out's last.pt
    init_from: str | None = None
    data_given: bool = False  # --data named the competition folder: the cache is refreshed from it
    config_given: bool = False  # --config named a file: a resumed run reads it, not its own config.toml
    overrides: Mapping[str, Any] = field(default_factory=dict)  # the section.key flags given

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FitOptions:
        return cls(
            out=Path(args.out) if args.out else None,
            resume=args.resume is not None,
            resume_from=Path(args.resume) if args.resume else None,
            init_from=args.init_from,
            data_given=data_given(args),
            config_given=config_given(args),
            overrides=overrides_of(args),
        )


def run(args: argparse.Namespace, cfg: Config) -> int:
    opts = FitOptions.from_args(args)
    # train.fitting imports torch: here, not at the top, so that `mask-train --help` answers at once
    from train.fitting import session
    from train.fitting.distributed import setup

    if opts.out:
        check_output_dir(opts.out, "--out")
    run_dir, state = opts.out, None
    if opts.resume:
        resume = session.Resume(opts.resume_from, opts.out, opts.config_given, opts.overrides)
        cfg, run_dir, state = session.resume_target(resume, cfg)
    set_torch_threads(cfg.train.threads)
    dist = setup(cfg.train.device)
    try:
        result = session.fit(
            cfg,
            run_dir=run_dir,
            state=state,
            dist=dist,
            data_given=opts.data_given,
            init_from=opts.init_from,
        )
    finally:
        dist.close()
    if dist.main:
        print_summary(result)
    return 0


def print_summary(result: Any) -> None:
    """One line: epochs, seconds per epoch, the best epoch and where best.pt is."""
    secs = [h["seconds"] for h in result.history]
    best = result.best
    score = "-" if best.get("score") is None else f"{best['score']:.4f}"
    console.print(
        f"run {result.run_dir}: {len(result.history)} epochs, "
        f"{sum(secs) / max(len(secs), 1):.1f} s/epoch; best epoch {best.get('epoch')} "
        f"({best.get('metric')} {score}) -> {result.run_dir / 'best.pt'}"
    )
    if best.get("calibration"):
        from train.measures.calibration import describe

        console.print(f"calibrated on the validation data: {describe(best['calibration'])}")
