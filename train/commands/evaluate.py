"""`mask-train evaluate`: macro F1 (18 classes and per task), accuracy and the confusion matrix of one model
or an ensemble (any model file: .pt, .onnx, .engine), on the prepared training images;
train.evaluation.scoring says which images are scored."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from engines.device import set_torch_threads
from engines.fileio import atomic_write_json
from engines.labels import class_names
from train.config import Config
from train.evaluation import scoring
from train.evaluation.compare import compare, comparison_table, default_report_dir
from train.evaluation.scoring import write_report
from train.options import (
    add_data_arguments,
    add_engine_device_argument,
    add_threads_argument,
    data_given,
)
from train.progress import console
from train.runfiles import check_output_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--checkpoint",
        nargs="+",
        metavar="MODEL",
        help="model file(s): .pt, .onnx or .engine; several = an ensemble",
    )
    which.add_argument(
        "--compare",
        nargs=2,
        metavar=("OLD", "NEW"),
        help="two models side by side on the same images (NEW's validation people, or --split all): "
        "recall per mask state, mask and flag-or-not accuracy",
    )
    add_data_arguments(p)
    p.add_argument(
        "--split",
        choices=("auto", "val", "all"),
        default="auto",
        help="auto: the validation people of the checkpoint(s) if they carry them (an ensemble: "
        "those every model held out), else all images",
    )
    p.add_argument("--tta", action="store_true", help="average over the crop and its mirror image")
    p.add_argument(
        "--report",
        metavar="DIR",
        help="where metrics.json, confusion.png and reliability.png go (default: <model "
        "folder>/evaluate-<model name>)",
    )
    add_engine_device_argument(p)
    p.add_argument("--batch-size", dest="data.batch_size", type=int, metavar="N")
    add_threads_argument(p)


@dataclass(frozen=True)
class EvaluateOptions:
    """evaluate's own flags, typed (the rest are config overrides, already in the Config)."""

    checkpoints: tuple[str, ...] = ()  # --checkpoint: one model or an ensemble
    compare: tuple[str, str] | None = None  # --compare OLD NEW
    split: str = "auto"
    tta: bool = False
    report: str | None = None
    data_given: bool = False  # --data named the competition folder: the cache is refreshed from it

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EvaluateOptions:
        return cls(
            checkpoints=tuple(args.checkpoint or ()),
            compare=tuple(args.compare) if args.compare else None,
            split=args.split,
            tta=args.tta,
            report=args.report,
            data_given=data_given(args),
        )


def print_result(result: dict[str, Any]) -> None:

    t = Table(
        title=f"{', '.join(Path(m).name for m in result['models'])} on {result['images']}"
        f"{' with TTA' if result['tta'] else ''}: {result['n']} images"
    )
    for col in ("metric", "value"):
        t.add_column(col, justify="right" if col == "value" else "left")
    for key in ("acc", "f1", "f1_mask", "f1_gender", "f1_age", "acc_mask", "acc_gender", "acc_age"):
        t.add_row(
            key.replace("f1", "macro F1").replace("acc", "accuracy").replace("_", " "), f"{result[key]:.4f}"
        )
    console.print(t)
    per = Table(title="F1 per class (- = not in truth or predictions)")
    per.add_column("class")
    per.add_column("F1", justify="right")
    per.add_column("support", justify="right")
    support = np.asarray(result["confusion"]).sum(axis=1)
    for i, (name, f1) in enumerate(zip(class_names(), result["per_class_f1"])):
        per.add_row(f"{i:2d} {name}", "-" if f1 is None else f"{f1:.3f}", str(int(support[i])))
    console.print(per)
    line = f"calibration (mask state, 15 bins): ECE {100 * result['ece_mask']:.2f}%"
    if "ece_mask_uncalibrated" in result:
        temps = ", ".join(f"{k} {v:.3g}" for k, v in result["temperature"].items())
        line += f"; before the file's temperature ({temps}): {100 * result['ece_mask_uncalibrated']:.2f}%"
    console.print(line)


def run_compare(opts: EvaluateOptions, cfg: Config) -> int:
    old, new = opts.compare
    report_dir = check_output_dir(opts.report or default_report_dir(old, new), "--report")
    set_torch_threads(cfg.train.threads)
    cmp = compare(cfg, old, new, split=opts.split, tta=opts.tta, data_given=opts.data_given)
    atomic_write_json(report_dir / "comparison.json", cmp.to_dict())
    console.print(comparison_table(cmp))
    console.print(f"report: {report_dir / 'comparison.json'}")
    return 0


def run(args: argparse.Namespace, cfg: Config) -> int:
    opts = EvaluateOptions.from_args(args)
    if opts.compare:
        return run_compare(opts, cfg)
    first = Path(opts.checkpoints[0])
    report_dir = check_output_dir(opts.report or first.parent / f"evaluate-{first.stem}", "--report")
    set_torch_threads(cfg.train.threads)
    result = scoring.evaluate(
        cfg, list(opts.checkpoints), split=opts.split, tta=opts.tta, data_given=opts.data_given
    )
    write_report(report_dir, result)
    print_result(result)
    console.print(f"report: {report_dir}")
    return 0
