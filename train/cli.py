"""`mask-train <command>`: one small module per command, each with add_arguments(parser) and run(args, cfg).

Command modules keep heavy imports (torch, albumentations) inside their functions so that
`mask-train --help` and a bad flag answer at once.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from engines.config import add_config_argument, config_from_args
from engines.errors import run_cli

DESCRIPTION = "Train, evaluate and export the mask / gender / age classifier that mask-monitor runs."

# name -> (module, one-line help). A new command is one row here and one module.
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("train.prepare", "crop every face of a competition folder into a cache with a manifest"),
    "eda": ("train.eda", "class counts, sizes, duplicates and label checks, as tables and PNG plots"),
    "fit": ("train.fit", "train a classifier (DDP under torchrun), keeping best.pt and last.pt"),
    "kfold": ("train.kfold", "person-grouped, class-stratified K-fold training with out-of-fold F1"),
    "evaluate": ("train.evaluate", "macro F1, per-task F1, accuracy and confusion matrix of a model"),
    "predict": ("train.predict", "ensemble + TTA predictions for eval/ as submission.csv"),
    "bench-loader": ("train.bench_loader", "images/s of the data pipeline per num_workers and resize order"),
    "export-onnx": ("train.export", "export a checkpoint to ONNX (dynamic batch, metadata inside)"),
    "export-trt": ("train.export", "build a TensorRT engine from an ONNX file or a checkpoint"),
    "bench-engines": ("train.bench_engines", "classifier crops/s per backend and MTCNN ms per frame"),
    "synth": ("train.synth", "build a competition-layout data set with synthetic masks from real photos"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mask-train", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        suffix = name.replace("-", "_")
        adder = getattr(module, f"add_arguments_{suffix}", None) or module.add_arguments
        runner = getattr(module, f"run_{suffix}", None) or module.run
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_config_argument(p)
        adder(p)
        p.set_defaults(_run=runner)
    return parser


def _main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    cfg = config_from_args(args)
    return int(args._run(args, cfg) or 0)


def main(argv: list[str] | None = None) -> None:
    run_cli(lambda: _main(argv if argv is not None else sys.argv[1:]), "mask-train")
