"""`mask-train export-trt (--onnx FILE | --checkpoint FILE) --out model.engine`: `mask-train export` held to
the .engine row of engines.formats (from a checkpoint it exports to ONNX first)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engines.errors import UserError
from engines.formats import FORMATS
from train.config import Config
from train.export import export_file
from train.export.tensorrt import default_timing_cache
from train.options import add_export_flags, expect_suffix, export_flags_given

ROW = FORMATS[".engine"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--onnx", type=Path, metavar="FILE", help="an .onnx file from export-onnx")
    src.add_argument(
        "--checkpoint", type=Path, metavar="FILE", help="a .pt checkpoint (exported to ONNX first)"
    )
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="the .engine file to write")
    add_export_flags(p, [ROW])


def run(args: argparse.Namespace, cfg: Config) -> int:
    expect_suffix(args.out, ROW.suffix, f"`mask-train export` ({', '.join(FORMATS)})")
    source = args.onnx or args.checkpoint
    expected = ".onnx" if args.onnx else ".pt"
    if source.suffix.lower() != expected:
        raise UserError(f"{'--onnx' if args.onnx else '--checkpoint'} {source}: expected a {expected} file")
    print(export_file(source, args.out, cfg, export_flags_given(args, [ROW])))
    timing = cfg.resolve(cfg.export.timing_cache) if cfg.export.timing_cache else None
    print(f"timing cache: {timing or default_timing_cache(args.out, cfg.export)}")
    return 0
