"""`mask-train <command>`: one thin module per command in train/commands, each with add_arguments(parser) and
run(args, cfg) -> exit status.

Every command module is imported to build the parser, so none imports torch or albumentations at its top:
`mask-train --help` and a bad flag answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
from typing import NoReturn

from engines.config import add_config_argument
from engines.errors import UserError, run_cli
from train.config import config_from_args

DESCRIPTION = "Train, evaluate and export the mask / gender / age classifier that mask-monitor runs."

# name -> (module, one-line help). A new command is one row here and one module.
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": (
        "train.commands.prepare",
        "crop every face of a competition folder into a cache with a manifest",
    ),
    "import": (
        "train.commands.import_data",
        "crop a downloaded face-mask set (class folders, labels CSV, VOC boxes) into the cache",
    ),
    "eda": (
        "train.commands.eda",
        "class counts, sizes, duplicates and label checks, as tables and PNG plots",
    ),
    "fit": ("train.commands.fit", "train a classifier (DDP under torchrun), keeping best.pt and last.pt"),
    "kfold": ("train.commands.kfold", "person-grouped, class-stratified K-fold training with out-of-fold F1"),
    "fit-detector": (
        "train.commands.fit_detector",
        "teach MTCNN's three nets the faces of imported photos (masked faces above all)",
    ),
    "evaluate": (
        "train.commands.evaluate",
        "macro F1, per-task F1, accuracy and confusion matrix of a model",
    ),
    "calibrate": (
        "train.commands.calibrate",
        "fit a model file's temperature (calibrated confidence) on data it was not trained on",
    ),
    "evaluate-frames": (
        "train.commands.evaluate_frames",
        "held-out photos pasted into 640x480 frames through the monitor's detect-crop-classify path",
    ),
    "evaluate-scenes": (
        "train.commands.evaluate_scenes",
        "street and crowd scenes (PASCAL VOC) as 640-px frames through the monitor's detect-crop-classify",
    ),
    "predict": ("train.commands.predict", "ensemble + TTA predictions for eval/ as submission.csv"),
    "bench-loader": (
        "train.commands.bench_loader",
        "images/s of the data pipeline per num_workers and resize order",
    ),
    "export": (
        "train.commands.export",
        "write a model file from a checkpoint: .pt, .onnx or .engine, as the suffix of --out says",
    ),
    "export-onnx": (
        "train.commands.export_onnx",
        "export a checkpoint to ONNX (dynamic batch, metadata inside)",
    ),
    "export-trt": ("train.commands.export_trt", "build a TensorRT engine from an ONNX file or a checkpoint"),
    "bench-engines": (
        "train.commands.bench_engines",
        "classifier crops/s per backend and MTCNN ms per frame",
    ),
    "tune": (
        "train.commands.tune",
        "hyper-parameter search with Optuna: every trial a real fit, weak ones pruned",
    ),
    "synth": (
        "train.commands.synth",
        "build a competition-layout data set with synthetic masks from real photos",
    ),
    "cut-masks": (
        "train.commands.cut_masks",
        "cut masks from real photos of masked faces into a mask bank for synth --mask-bank",
    ),
    "recipe": (
        "train.commands.recipe",
        "run a data recipe (a TOML file of import, cut-masks, synth, prepare and select steps) in order",
    ),
    "label": ("train.commands.label", "label collected crops in a local web page (keys 1/2/3, g, a, x, u)"),
    "demo-door": (
        "train.commands.demo_door",
        "demonstration: collect a door's faces, label, fine-tune, and its accuracy before / after",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: one subparser per COMMANDS row, with --config and the module's own flags."""
    parser = argparse.ArgumentParser(prog="mask-train", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_config_argument(p)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    cfg = config_from_args(args)
    return int(args._run(args, cfg) or 0)


RANK_GRACE_S = 5.0


def torchrun_rank() -> int | None:
    """This process's rank when torchrun started it as one of several, else None."""
    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None


def exit_rank(exc: UserError, rank: int) -> NoReturn:
    """A user error under torchrun: rank 0 prints its one line (every rank meets the same error: the config,
    or rank 0's data check broadcast to all), and every rank leaves the process group and exits at once with
    the error's status. os._exit skips the interpreter's teardown, where live process-group threads made
    rank 0 abort ("terminate called without an active exception", SIGABRT)."""
    code = exc.exit_code
    # torchrun stops the other ranks with SIGTERM once one has exited: they exit with the error's status too
    signal.signal(signal.SIGTERM, lambda *_: os._exit(code))
    if rank == 0:
        print(f"mask-train: error: {exc}", file=sys.stderr)
    dist = sys.modules.get("torch.distributed")
    grouped = dist is not None and dist.is_available() and dist.is_initialized()
    if grouped:
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - leaving anyway; the line above is what the user needs
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    if rank != 0 and not grouped:
        time.sleep(RANK_GRACE_S)  # an error before the group exists: let rank 0 print it before torchrun
        # ends the group on this rank's exit
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    argv = argv if argv is not None else sys.argv[1:]
    rank = torchrun_rank()
    if rank is None:
        run_cli(lambda: _main(argv), "mask-train")

    def ranked() -> int:
        try:
            return _main(argv)
        except UserError as exc:
            exit_rank(exc, rank)

    run_cli(ranked, "mask-train")
