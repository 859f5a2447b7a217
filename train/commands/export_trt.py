"""`mask-train export-trt (--onnx FILE | --checkpoint FILE) --out model.engine`: the .engine row's exporter
of engines.formats (from a checkpoint it exports to ONNX first)."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from engines.config import Config
from engines.errors import UserError
from train.export import export, written_line
from train.export.tensorrt import default_timing_cache
from train.options import add_precision_flags, expect_suffix
from train.progress import spinner


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--onnx", type=Path, metavar="FILE", help="an .onnx file from export-onnx")
    src.add_argument(
        "--checkpoint", type=Path, metavar="FILE", help="a .pt checkpoint (exported to ONNX first)"
    )
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="the .engine file to write")
    add_precision_flags(p)
    for flag, key in (
        ("--min-batch", "min_batch"),
        ("--opt-batch", "opt_batch"),
        ("--max-batch", "max_batch"),
    ):
        p.add_argument(
            flag,
            dest=f"export.{key}",
            type=int,
            default=None,
            metavar="N",
            help=f"optimisation profile (default: [export] {key})",
        )
    p.add_argument(
        "--workspace-mb",
        dest="export.workspace_mb",
        type=int,
        default=None,
        metavar="MB",
        help="builder workspace (default: [export] workspace_mb)",
    )
    p.add_argument(
        "--timing-cache",
        dest="export.timing_cache",
        default=None,
        metavar="FILE",
        help="TensorRT timing cache, read and updated (default: [export] timing_cache, "
        "else timing.cache beside --out)",
    )


def run(args: argparse.Namespace, cfg: Config) -> int:
    expect_suffix(args.out, ".engine", "export-onnx (.onnx)")
    source = args.onnx or args.checkpoint
    expected = ".onnx" if args.onnx else ".pt"
    if source.suffix.lower() != expected:
        raise UserError(f"{'--onnx' if args.onnx else '--checkpoint'} {source}: expected a {expected} file")
    # export.timing_cache is read against the config file's folder; unset, to_tensorrt puts it beside --out
    export_cfg = cfg.export
    if cfg.export.timing_cache:
        export_cfg = replace(cfg.export, timing_cache=str(cfg.resolve(cfg.export.timing_cache)))
    t0 = time.perf_counter()
    with spinner(f"Preparing the TensorRT build of {source.name}") as status:
        meta = export(source, args.out, export_cfg, status=status)
    print(
        written_line(
            args.out, meta, time.perf_counter() - t0, f"TensorRT {meta.extra['tensorrt']['version']}"
        )
    )
    print(f"timing cache: {default_timing_cache(args.out, export_cfg)}")
    return 0
