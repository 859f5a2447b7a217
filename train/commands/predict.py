"""`mask-train predict`: the eval images -> submission.csv (info.csv's columns and rows, `ans` = class 0-17),
from one model or an ensemble, with optional TTA (train.evaluation.predict says how)."""

from __future__ import annotations

import argparse

import numpy as np

from engines.device import set_torch_threads
from engines.errors import UserError
from engines.fileio import atomic_path, atomic_write_text
from engines.labels import NUM_CLASSES
from train.config import Config
from train.evaluation import predict as predicting
from train.evaluation.predict import submission_csv
from train.options import add_engine_device_argument, add_threads_argument
from train.progress import console, err_console
from train.runfiles import check_output_file


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        nargs="+",
        required=True,
        metavar="MODEL",
        help="model file(s): .pt, .onnx or .engine; several = an ensemble",
    )
    p.add_argument(
        "--eval",
        metavar="DIR",
        help="eval folder with info.csv and images/ (or the competition "
        "folder that holds eval/; default: data.data_dir)",
    )
    p.add_argument("--tta", action="store_true", help="average over the crop and its mirror image")
    p.add_argument("--out", metavar="FILE", default="submission.csv", help="default: ./submission.csv")
    p.add_argument("--probs", metavar="FILE.npy", help="also save the [N, 18] probabilities")
    p.add_argument(
        "--cache", dest="data.cache_dir", metavar="CACHE", help="cache whose eval face boxes to reuse"
    )
    add_engine_device_argument(p)
    p.add_argument("--batch-size", dest="data.batch_size", type=int, metavar="N")
    add_threads_argument(p)


def run(args: argparse.Namespace, cfg: Config) -> int:
    check_output_file(args.out, "--out")
    if args.probs:
        check_output_file(args.probs, "--probs")
    set_torch_threads(cfg.train.threads)
    scan, probs, bad = predicting.predict(
        cfg, args.checkpoint, args.eval or cfg.resolve(cfg.data.data_dir), tta=args.tta
    )
    target = args.out
    try:
        atomic_write_text(args.out, submission_csv(scan, probs))
        if args.probs:
            target = args.probs
            with atomic_path(args.probs) as tmp, open(tmp, "wb") as fh:
                np.save(fh, probs)
    except OSError as exc:  # e.g. a full disk: the file that was there is left as it was
        raise UserError(f"cannot write {target}: {exc.strerror or exc}") from None
    if bad:
        err_console.print(
            f"[yellow]warning:[/] {len(bad)} image(s) could not be read and got the most frequent "
            f"class: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}"
        )
    counts = np.bincount(probs.argmax(axis=1), minlength=NUM_CLASSES)
    console.print(
        f"{args.out}: {len(probs)} rows from {len(args.checkpoint)} model(s)"
        f"{' with TTA' if args.tta else ''}; "
        f"classes predicted: {', '.join(f'{c}:{n}' for c, n in enumerate(counts) if n)}"
    )
    return 0
