"""`mask-train export-onnx --checkpoint best.pt --out model.onnx`: the .onnx row's exporter of
engines.formats."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from engines.config import Config
from train.export import export, written_line
from train.options import add_precision_flags, expect_suffix
from train.progress import spinner


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, type=Path, metavar="FILE", help="a .pt checkpoint")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="the .onnx file to write")
    add_precision_flags(p)


def run(args: argparse.Namespace, cfg: Config) -> int:
    expect_suffix(args.out, ".onnx", "export-trt (.engine)")
    t0 = time.perf_counter()
    with spinner(f"Exporting {args.checkpoint.name} to ONNX (opset {cfg.export.opset})"):
        meta = export(args.checkpoint, args.out, cfg.export)
    print(written_line(args.out, meta, time.perf_counter() - t0, f"ONNX opset {cfg.export.opset}"))
    return 0
