"""`mask-train calibrate`: fit the temperature of an existing model file (.pt, .onnx, .engine) on data it was
not trained on, and write it into the file's metadata (in place, atomically, or as --out)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.device import set_torch_threads
from engines.errors import UserError
from engines.fileio import atomic_write_bytes, require_file
from train.config import Config
from train.options import (
    add_data_arguments,
    add_detector_arguments,
    add_engine_device_argument,
    add_threads_argument,
    data_given,
)
from train.progress import console, task
from train.runfiles import check_output_file


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint", required=True, metavar="MODEL", help="the model file: .pt, .onnx or .engine"
    )
    add_data_arguments(p)
    p.add_argument(
        "--split",
        choices=("auto", "val", "all"),
        default="auto",
        help="auto / val: the validation people the .pt carries (a file without them needs --list or "
        "--split all); all: every prepared image",
    )
    p.add_argument(
        "--list",
        metavar="CSV",
        help="calibrate on these labelled photos instead of the cache (file,mask,... as import's "
        "holdout.csv; gender and age ignored), cut as `import` cuts them",
    )
    p.add_argument("--root", metavar="DIR", help="the folder --list's file names are relative to")
    add_detector_arguments(
        p.add_argument_group("--list: the MTCNN that finds each photo's face ([detector])")
    )
    p.add_argument("--out", metavar="MODEL", help="write the calibrated file here (default: MODEL itself)")
    p.add_argument("--batch-size", dest="data.batch_size", type=int, metavar="N")
    add_engine_device_argument(p)
    add_threads_argument(p)


@dataclass(frozen=True)
class CalibrateOptions:
    """calibrate's own flags, typed (the rest are config overrides, already in the Config)."""

    checkpoint: str
    split: str = "auto"
    photo_list: str | None = None  # --list CSV
    root: str | None = None
    out: str | None = None
    data_given: bool = False  # --data named the competition folder: the cache is refreshed from it

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> CalibrateOptions:
        return cls(
            checkpoint=args.checkpoint,
            split=args.split,
            photo_list=args.list,
            root=args.root,
            out=args.out,
            data_given=data_given(args),
        )


def list_probs(engine, path: str, root: str, cfg: Config) -> tuple[np.ndarray, np.ndarray, str]:
    """The raw probabilities and mask-only target codes of a labelled photo list, each photo cut around its
    face as `import` cuts (MTCNN, else padded into a frame, else the whole image)."""
    import cv2

    from engines.faces import create_detector, crop_face
    from train.data.importer import find_box
    from train.data.targets import encode_target
    from train.evaluation.frames import list_rows

    rows = list_rows(path, root)
    if not rows:
        raise UserError(f"{path} lists no photos")
    detector = create_detector(cfg)
    crops, codes = [], []
    with task("calibrate: cut faces", len(rows)) as t:
        for image, name, mask, _ in rows:
            img = cv2.imread(str(image))
            if img is None:
                raise UserError(f"{path}: {name}: cannot read the image {image}")
            box, _, _ = find_box(img, detector)
            crops.append(crop_face(img, box, engine.meta.crop))
            codes.append(encode_target(mask, -1, -1))
            t.advance(1)
    return (
        engine.classify(crops, cfg.data.batch_size),
        np.asarray(codes, np.int64),
        f"{len(rows)} photos of {path}",
    )


def cache_probs(
    engine, model: str, split: str, cfg: Config, data_given: bool
) -> tuple[np.ndarray, np.ndarray, str]:
    from train.data.layout import COMPETITION_AGE_THRESHOLD
    from train.data.prepare import ensure_prepared
    from train.evaluation.scoring import saved_split, score_samples, select

    if split != "all" and saved_split(model) is None:
        raise UserError(
            f"{model} carries no validation split (only .pt files from `fit` do): calibrating on the images "
            f"it was trained on would keep it overconfident; give --list CSV --root DIR (photos it never "
            f"saw), or --split all"
        )
    _, samples = ensure_prepared(cfg, data_given, True)
    chosen, what = select(samples, split, [model])
    probs = score_samples([engine], chosen, False, cfg.data.batch_size)
    return probs, np.array([s.cls(COMPETITION_AGE_THRESHOLD) for s in chosen], np.int64), what


def run(args: argparse.Namespace, cfg: Config) -> int:
    opts = CalibrateOptions.from_args(args)
    from train.evaluation.inference import load_models
    from train.fitting.calibration import fit_temperatures, rewrite_meta, with_temperature
    from train.measures.calibration import describe, report

    model = opts.checkpoint
    require_file(model, "model file")
    out = Path(opts.out) if opts.out else Path(model)
    if opts.out:
        check_output_file(out, "--out")
        if out.suffix.lower() != Path(model).suffix.lower():
            raise UserError(f"--out {out}: must have the model file's suffix ({Path(model).suffix})")
    if opts.photo_list and not opts.root:
        raise UserError("--list needs --root (the folder its file names are relative to)")
    set_torch_threads(cfg.train.threads)
    (engine,) = load_models([model], cfg.engine.device, cfg.engine.threads)
    engine.temperature = {}  # the network's own probabilities: the temperature is fitted from T = 1
    if opts.photo_list:
        probs, codes, what = list_probs(engine, opts.photo_list, opts.root, cfg)
    else:
        probs, codes, what = cache_probs(engine, model, opts.split, cfg, opts.data_given)
    meta = engine.meta
    temperature = fit_temperatures(probs, codes, meta.head, meta.knows)
    rep = report(probs, codes, meta.head, temperature)
    engine.close()
    if out != Path(model):
        atomic_write_bytes(out, Path(model).read_bytes())
    rewrite_meta(out, with_temperature(meta, temperature))
    console.print(f"{Path(model).name} on {what}: {describe(rep)}")
    console.print(f"written: {out}")
    return 0
