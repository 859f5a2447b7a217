"""`mask-train prepare --data DIR --out CACHE`: crop every face of a competition folder into a cache with a
manifest (train.data.prepare does the work; running it again only crops what changed)."""

from __future__ import annotations

import argparse

from rich.table import Table

from engines.device import set_torch_threads
from train.config import Config
from train.data import prepare as preparing
from train.data.prepare import PrepareReport
from train.options import add_detector_arguments, add_threads_argument
from train.progress import console, print_counts
from train.runfiles import check_output_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", dest="data.data_dir", metavar="DIR", help="competition folder (train/, eval/)")
    p.add_argument(
        "--out", dest="data.cache_dir", metavar="CACHE", help="cache folder for crops and manifest"
    )
    p.add_argument("--force", action="store_true", help="crop everything again")
    p.add_argument("--no-eval", action="store_true", help="skip eval/ (only the training images)")
    p.add_argument("--margin", dest="crop.margin", type=float, help="crop margin around the face box")
    add_threads_argument(p)
    g = p.add_argument_group(
        "MTCNN in the photos (config.toml [detector]; a cache joined to an import's must use its settings)"
    )
    add_detector_arguments(g)


def run(args: argparse.Namespace, cfg: Config) -> int:
    data_dir, cache_dir = (
        cfg.resolve(cfg.data.data_dir),
        check_output_dir(cfg.resolve(cfg.data.cache_dir), "--out"),
    )
    set_torch_threads(cfg.train.threads)
    report = preparing.prepare(data_dir, cache_dir, cfg, force=args.force, include_eval=not args.no_eval)
    print_report(report)
    return 0


def print_report(report: PrepareReport, limit: int = 15) -> None:
    print_counts(f"prepare: {report.cache}", report.counts)
    if report.problems:
        problems = Table(title=f"problems ({len(report.problems)}; all in {report.cache / 'report.json'})")
        for col in ("kind", "path", "detail"):
            problems.add_column(col, overflow="fold")
        for p in report.problems[:limit]:
            problems.add_row(p.kind, p.path, p.detail)
        console.print(problems)
