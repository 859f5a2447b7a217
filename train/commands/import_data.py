"""`mask-train import --data DIR --out CACHE --name NAME`: a public face-mask data set (class folders, a
labels CSV or PASCAL VOC boxes) into the crop cache, beside what `prepare` cropped (train.data.importer)."""

from __future__ import annotations

import argparse

from engines.device import set_torch_threads
from engines.errors import UserError
from train.config import Config
from train.data.importer import import_dataset, parse_exclude
from train.options import add_detector_arguments, add_threads_argument
from train.progress import console, print_counts
from train.runfiles import check_output_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="the downloaded data set's folder")
    p.add_argument("--out", dest="data.cache_dir", metavar="CACHE", help="cache folder (as prepare's --out)")
    p.add_argument("--name", required=True, help="source name: CACHE/imports/NAME, data.source_weights")
    p.add_argument("--labels", metavar="CSV", help="labels file (file,mask[,gender,age][,group])")
    p.add_argument(
        "--holdout",
        type=float,
        default=0.0,
        metavar="F",
        help="share of near-duplicate groups kept out of training, listed in holdout.csv (default 0)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="leave out the labels CSV's rows whose COLUMN is VALUE (e.g. placement=chin, mask_source=cut: "
        "a leave-one-out split of a synth set); repeatable",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out choice (default 0)")
    p.add_argument("--force", action="store_true", help="crop everything again")
    add_threads_argument(p)
    g = p.add_argument_group(
        "MTCNN in the photos (config.toml [detector]; a cache keeps the settings it was made with)"
    )
    add_detector_arguments(g)


def run(args: argparse.Namespace, cfg: Config) -> int:
    if not 0.0 <= args.holdout < 1.0:
        raise UserError(f"--holdout must be in [0, 1), got {args.holdout}")
    cache_dir = check_output_dir(cfg.resolve(cfg.data.cache_dir), "--out")
    set_torch_threads(cfg.train.threads)
    report = import_dataset(
        args.data,
        cache_dir,
        cfg,
        name=args.name,
        labels=args.labels,
        holdout=args.holdout,
        seed=args.seed,
        exclude=parse_exclude(args.exclude),
        force=args.force,
    )
    print_counts(
        f"import {report.name} ({report.layout}) -> {cache_dir}/imports/{report.name}", report.counts
    )
    for p in report.problems[:15]:
        console.print(f"  {p.kind}: {p.path} ({p.detail})")
    if len(report.problems) > 15:
        console.print(
            f"  ... {len(report.problems) - 15} more in {cache_dir}/imports/{report.name}/report.json"
        )
    return 0
