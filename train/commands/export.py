"""`mask-train export --checkpoint best.pt --out model.onnx`: any model file from a checkpoint; the suffix of
--out picks the engines.formats row (its exporter, what it is exported from, the settings it reads), and the
flags below come from those rows. export-onnx and export-trt are this command held to one suffix."""

from __future__ import annotations

import argparse
from pathlib import Path

from engines.formats import FORMATS
from train.config import Config
from train.export import export_file
from train.options import add_export_flags, export_flags_given


def add_arguments(p: argparse.ArgumentParser) -> None:
    sources = sorted({s for fmt in FORMATS.values() for s in fmt.sources})
    p.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        metavar="FILE",
        help=f"the model file to export from ({' or '.join(sources)}, as the format allows)",
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="FILE",
        help=f"the file to write; its suffix picks the format ({', '.join(FORMATS)})",
    )
    add_export_flags(p, list(FORMATS.values()))


def run(args: argparse.Namespace, cfg: Config) -> int:
    given = export_flags_given(args, FORMATS.values())
    print(export_file(args.checkpoint, args.out, cfg, given))
    return 0
