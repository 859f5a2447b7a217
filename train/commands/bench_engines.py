"""`mask-train bench-engines`: classifier crops/s per backend and MTCNN ms per frame, as tables (and JSON).

A benchmark, not a test: see train.export.bench for how the numbers are made."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from engines.cliargs import int_at_least
from engines.errors import UserError
from engines.fileio import atomic_write_json
from train.config import Config
from train.export.bench import run_benchmark
from train.progress import console


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the numbers to FILE (JSON)")
    p.add_argument(
        "--checkpoint",
        type=Path,
        metavar="FILE",
        help="time this model (default: [model] arch with random weights)",
    )
    p.add_argument(
        "--repeats", type=int_at_least(1), default=20, metavar="N", help="timed calls per case (default 20)"
    )


def run(args: argparse.Namespace, cfg: Config) -> int:
    if args.repeats < 1:
        raise UserError(f"--repeats must be at least 1, got {args.repeats}")
    result = run_benchmark(cfg, args.checkpoint, args.repeats)
    print_tables(result)
    if args.json:
        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def print_tables(result: dict[str, Any]) -> None:
    m = result["model"]
    t = Table(title=f"classifier crops/s ({m['arch']}, {m['head']} head, {m['weights']} weights, CPU)")
    names = list(result["formats"])  # the baseline first
    runtimes = result["formats"]
    for col in ("input (WxH)", "batch", *(runtimes[n] for n in names)):
        t.add_column(col, justify="right")
    for n in names[1:]:
        t.add_column(f"{runtimes[n]} / {runtimes[names[0]]}", justify="right")
    for r in result["classifier"]:
        h, w = r["input"]
        t.add_row(
            f"{w}x{h}",
            str(r["batch"]),
            *(f"{r['crops_per_s'][n]:.1f}" for n in names),
            *(f"{r['ratio'][n]:.2f}x" for n in names[1:]),
        )
    console.print(t)
    d = Table(title="MTCNN ms per frame (one face, CPU)")
    for col in ("frame", "median ms", "p95 ms", "faces found", "weak (< confirm_score)"):
        d.add_column(col, justify="right")
    for r in result["mtcnn"]:
        d.add_row(
            f"{r['frame'][0]}x{r['frame'][1]}",
            f"{r['median_ms']:.1f}",
            f"{r['p95_ms']:.1f}",
            str(r["faces"]),
            str(r["weak"]),
        )
    console.print(d)
    mach, tg = result["machine"], result["target"]
    verdict = "n/a" if tg["ratio"] is None else f"{tg['ratio']:.2f}x ({'met' if tg['met'] else 'NOT met'})"
    console.print(
        f"target: {tg['what']}: {verdict}. {mach['cpus']} CPUs, torch {mach['torch']} "
        f"({mach['torch_threads']} threads), onnxruntime {mach['onnxruntime']}, {result['repeats']} calls "
        f"per case (medians), load average {mach['load_average_before']} before, "
        f"{mach['load_average_after']} after."
    )
