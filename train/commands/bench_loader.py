"""`mask-train bench-loader`: images/s of the training data pipeline per num_workers and resize order, on
the prepared cache or on synthetic crops (train.data.loader_bench measures)."""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from engines.cliargs import int_at_least
from engines.device import set_torch_threads
from engines.fileio import atomic_write_json
from train.config import Config
from train.options import add_data_arguments, add_threads_argument, cache_given
from train.progress import console


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p)
    p.add_argument(
        "--max-workers",
        type=int_at_least(0),
        default=None,
        metavar="N",
        help="try 0..N workers (default: CPUs)",
    )
    p.add_argument(
        "--batches",
        type=int_at_least(1),
        default=20,
        metavar="N",
        help="batches timed per setting (after one warm-up)",
    )
    p.add_argument(
        "--synthetic",
        type=int_at_least(0),
        default=0,
        metavar="N",
        help="use N synthetic crops even when a cache exists",
    )
    p.add_argument("--batch-size", dest="data.batch_size", type=int, metavar="N")
    p.add_argument("--input-height", dest="model.input_height", type=int, metavar="PX")
    p.add_argument("--input-width", dest="model.input_width", type=int, metavar="PX")
    add_threads_argument(p)
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def print_results(r: dict[str, Any], what: str, cfg: Config) -> None:

    base = r["workers"][0]
    t = Table(
        title=f"training pipeline, {what}, batch {cfg.data.batch_size}, "
        f"input {cfg.model.input_width}x{cfg.model.input_height}, "
        f"augment {'on' if cfg.augment.enabled else 'off'}"
    )
    for col in ("setting", "images/s", "vs 0 workers"):
        t.add_column(col, justify="left" if col == "setting" else "right")
    for w, ips in r["workers"].items():
        t.add_row(f"num_workers={w}, resize then augment", f"{ips:.0f}", f"{ips / base:.2f}x")
    console.print(t)
    o = Table(title="resize order (num_workers=0: the cost per image)")
    for col in ("order", "images/s", "vs augment then resize"):
        o.add_column(col, justify="left" if col == "order" else "right")
    ref = r["order"]["augment_first"]
    for order, ips in r["order"].items():
        o.add_row(
            order.replace("_first", " first")
            .replace("resize first", "resize, then augment")
            .replace("augment first", "augment, then resize"),
            f"{ips:.0f}",
            f"{ips / ref:.2f}x",
        )
    console.print(o)
    console.print(
        f"best num_workers on this machine: {r['best_workers']} ({r['workers'][r['best_workers']]:.0f} "
        f"images/s, {os.cpu_count()} CPUs); set it as data.num_workers in config.toml"
    )


@dataclass(frozen=True)
class BenchLoaderOptions:
    """bench-loader's own flags, typed (the rest are config overrides, already in the Config)."""

    max_workers: int
    batches: int = 20
    synthetic: int = 0
    cache_given: bool = False  # --cache named the crop cache: a missing one is an error, not synthetic crops
    json: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BenchLoaderOptions:
        return cls(
            max_workers=args.max_workers if args.max_workers is not None else (os.cpu_count() or 1),
            batches=args.batches,
            synthetic=args.synthetic,
            cache_given=cache_given(args),
            json=args.json,
        )


def run(args: argparse.Namespace, cfg: Config) -> int:
    opts = BenchLoaderOptions.from_args(args)
    # train.data.loader_bench imports torch (the DataLoader): here, so that `mask-train --help` answers at
    # once
    from train.data.loader_bench import crop_paths, run_bench

    set_torch_threads(cfg.train.threads)
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        paths, what = crop_paths(cfg, opts.synthetic, Path(tmp), opts.cache_given)
        results = run_bench(cfg, paths, opts.max_workers, opts.batches)
    print_results(results, what, cfg)
    if opts.json:
        atomic_write_json(opts.json, {"data": what, **results})
    return 0
