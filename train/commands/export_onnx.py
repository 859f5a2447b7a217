"""`mask-train export-onnx --checkpoint best.pt --out model.onnx`: `mask-train export` held to the .onnx row
of engines.formats."""

from __future__ import annotations

import argparse
from pathlib import Path

from engines.formats import FORMATS
from train.config import Config
from train.export import export_file
from train.options import add_export_flags, expect_suffix, export_flags_given

ROW = FORMATS[".onnx"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, type=Path, metavar="FILE", help="a .pt checkpoint")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="the .onnx file to write")
    add_export_flags(p, [ROW])


def run(args: argparse.Namespace, cfg: Config) -> int:
    expect_suffix(args.out, ROW.suffix, f"`mask-train export` ({', '.join(FORMATS)})")
    print(export_file(args.checkpoint, args.out, cfg, export_flags_given(args, [ROW])))
    return 0
