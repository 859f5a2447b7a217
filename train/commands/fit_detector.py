"""`mask-train fit-detector --cache CACHE --import NAME... --out FILE`: MTCNN's three nets taught the faces
of `mask-train import` runs (masked faces above all), written as one file that [detector] weights names
(train.detector.fit)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engines.device import set_torch_threads
from engines.errors import UserError
from engines.faces import load_detector_weights
from train.config import Config
from train.detector.fit import (
    FitDetectorOptions,
    fit_detector,
    import_photos,
    import_scenes,
    read_backgrounds,
)
from train.options import add_threads_argument
from train.progress import console
from train.runfiles import check_output_file


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", dest="data.cache_dir", metavar="CACHE", help="crop cache the imports are in")
    p.add_argument(
        "--import", dest="imports", nargs="+", required=True, metavar="NAME", help="imports to learn from"
    )
    p.add_argument("--out", required=True, metavar="FILE", help="detector file to write (.pt)")
    p.add_argument("--frames", type=int, default=2, metavar="N", help="frames made of each photo (default 2)")
    p.add_argument(
        "--close-up-repeat",
        type=int,
        default=4,
        metavar="K",
        help="a close-up (no face box found in the photo) makes K times the frames (default 4)",
    )
    p.add_argument(
        "--scene-repeat",
        type=int,
        default=4,
        metavar="K",
        help="a scene of a PASCAL VOC import (taught as whole frames, all its faces at their own size and "
        "crowd, scaled 0.8-2x) makes K times the frames (default 4)",
    )
    p.add_argument(
        "--scene-look",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="each scene frame as another camera took it: mirrored, exposure, blur, grain, JPEG "
        "(default on; --no-scene-look: the scenes as they are)",
    )
    p.add_argument(
        "--scene-boxes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a scene face's box targets are its own box (where the monitor's detector puts it, or the "
        "annotated box mapped there), not the original nets' boxes, which lie half off a face turned aside "
        "(default on)",
    )
    p.add_argument(
        "--hard-repeat",
        type=int,
        default=1,
        metavar="K",
        help="a scene with a face at least 40 px tall (in a 640-px-wide frame) that the --finder misses "
        "makes K times the frames (default 1)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        nargs=3,
        default=(2, 4, 2),
        metavar=("P", "R", "O"),
        help="P-Net, R-Net, O-Net (default 2 4 2; 0 keeps that net as it starts)",
    )
    p.add_argument(
        "--init",
        metavar="FILE",
        default="",
        help="a fit-detector file the nets start from (a further round that adds imports); default: "
        "facenet-pytorch's nets",
    )
    p.add_argument(
        "--backgrounds",
        metavar="VIDEO|DIR",
        help="scenes without faces to paste the photos over (every 10th frame of a video, at most 40); "
        "default: plain colours. Words and shapes are drawn over either",
    )
    p.add_argument(
        "--finder",
        metavar="FILE",
        default="",
        help="a fit-detector file that places the faces the import found no box for (close-ups, thumbnails' "
        "scenes): a second round over the first round's file learns from many more of them; default: "
        "facenet-pytorch's nets",
    )
    p.add_argument(
        "--val-list",
        metavar="CSV",
        default="",
        help="also write the validation photos (never taught) as a list for `mask-train evaluate-frames "
        "--list CSV --root /`: choose the detection settings on them, not on held-out photos",
    )
    p.add_argument(
        "--val-scenes",
        metavar="CSV",
        default="",
        help="also write the validation scenes of a PASCAL VOC import (never taught) as a list for "
        "`mask-train evaluate-scenes --list CSV`",
    )
    p.add_argument("--lr", type=float, default=1e-4, help="Adam's learning rate (default 1e-4)")
    p.add_argument("--seed", type=int, default=0)
    add_threads_argument(p)


def run(args: argparse.Namespace, cfg: Config) -> int:
    repeats = (args.frames, args.close_up_repeat, args.scene_repeat, args.hard_repeat)
    if min(repeats) < 1 or min(args.epochs) < 0 or not args.lr > 0:
        raise UserError(
            "--frames, --close-up-repeat, --scene-repeat and --hard-repeat must be >= 1, --epochs >= 0 and "
            "--lr > 0"
        )
    if not any(args.epochs):
        raise UserError("--epochs 0 0 0 teaches no net: give one of P-Net, R-Net, O-Net at least one epoch")
    check_output_file(args.out, "--out")  # before minutes of work, as predict does
    for flag, given in (("--val-list", args.val_list), ("--val-scenes", args.val_scenes)):
        if given:
            check_output_file(given, flag)
    files = {}
    for flag, given in (("--finder", args.finder), ("--init", args.init)):
        files[flag] = str(Path(given).resolve()) if given else ""  # as given: from here, not the config's
        if given:
            try:
                load_detector_weights(files[flag])
            except UserError as exc:
                raise UserError(f"{flag}: {str(exc).split(': ', 1)[1]}") from None
    set_torch_threads(cfg.train.threads)
    cache = cfg.resolve(cfg.data.cache_dir)
    rows, scenes = [], []
    for name in args.imports:  # a PASCAL VOC import is taught as whole scenes, any other as photos
        found = import_scenes(cache, name)
        if found is None:
            rows += import_photos(cache, name)
        else:
            scenes += found
    if args.val_scenes and not scenes:
        raise UserError(f"--val-scenes: none of the imports {args.imports} is a PASCAL VOC import (scenes)")
    opts = FitDetectorOptions(
        frames_per_photo=args.frames,
        close_up_repeat=args.close_up_repeat,
        scene_repeat=args.scene_repeat,
        scene_look=args.scene_look,
        scene_boxes=args.scene_boxes,
        hard_repeat=args.hard_repeat,
        epochs=tuple(args.epochs),
        lr=args.lr,
        seed=args.seed,
        max_side=cfg.monitor.detect_max_side,
        min_face=cfg.detector.min_face_size,
        frame_width=cfg.scenes.frame_width,
        match_iou=cfg.scenes.match_iou,
    )
    backgrounds = read_backgrounds(args.backgrounds) if args.backgrounds else []
    meta = fit_detector(
        rows,
        args.out,
        opts,
        sources=args.imports,
        backgrounds=backgrounds,
        finder_weights=files["--finder"],
        val_list=args.val_list,
        scenes=scenes,
        init_weights=files["--init"],
        val_scenes=args.val_scenes,
    )
    console.print(
        f"photos: {meta['photos']}, scenes: {meta['scenes']} ({meta['train_photos']} train, "
        f"{meta['val_photos']} validation)"
    )
    for stage, s in meta["stages"].items():
        b, a = s["before"], s["after"]
        if b:
            console.print(
                f"{stage} on validation samples: faces kept {b['faces_kept']:.1%} -> {a['faces_kept']:.1%}, "
                f"non-faces dropped {b['non_faces_dropped']:.1%} -> {a['non_faces_dropped']:.1%}"
            )
    console.print(f'wrote {args.out}: [detector] weights = "{args.out}" runs it', markup=False)
    if args.val_list:
        console.print(f"wrote {args.val_list}: its validation photos", markup=False)
    if args.val_scenes:
        console.print(f"wrote {args.val_scenes}: its validation scenes", markup=False)
    return 0
