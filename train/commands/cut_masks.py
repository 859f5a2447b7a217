"""`mask-train cut-masks --data DIR --out BANK`: masks cut from real photos of masked faces (GrabCut seeded by
MTCNN's landmarks) into a mask bank for `mask-train synth --mask-bank` (train.synth.mask_bank says how)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from engines.device import set_torch_threads
from engines.errors import UserError
from engines.fileio import require_dir, require_file
from train.config import Config
from train.options import add_detector_arguments, add_threads_argument
from train.progress import err_console, task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="photos of masked faces: a downloaded set (its with_mask/ folder) or a folder of photos",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="the bank folder (bank.json, masks/)")
    parser.add_argument(
        "--only",
        type=Path,
        metavar="CSV",
        help="cut only the photos this labels list names in its `file` column (e.g. an import's kept.csv: "
        "photos held out for evaluation never lend their masks to training)",
    )
    parser.add_argument("--limit", type=int, default=0, metavar="N", help="cut from the first N photos only")
    parser.add_argument("--force", action="store_true", help="cut again into a bank made earlier")
    add_threads_argument(parser)
    add_detector_arguments(parser.add_argument_group("MTCNN in the photos (config.toml [detector])"))


def listed_files(path: Path, data: Path) -> set[str]:
    """The `file` column of a labels list, as paths relative to the data folder."""
    import csv

    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"--only {path}: cannot read it ({exc})") from None
    if not rows or "file" not in rows[0]:
        raise UserError(f"--only {path}: a labels list with a `file` column (e.g. an import's kept.csv)")
    return {(r["file"] or "").strip() for r in rows}


def run(args: argparse.Namespace, cfg: Config) -> int:
    import cv2

    from engines.faces import create_detector
    from train.synth.build import find_face
    from train.synth.mask_bank import Rejection, cut_mask, masked_photos, prepare_out, write_bank, write_png

    if args.limit < 0:
        raise UserError(f"--limit must be >= 0, got {args.limit}")
    data = require_dir(args.data, "--data folder").resolve()
    photos = masked_photos(data)
    if args.only:
        listed = listed_files(require_file(args.only, "--only list"), data)
        photos = [p for p in photos if p.relative_to(data).as_posix() in listed]
    photos = photos[: args.limit or None]
    out = Path(args.out)
    prepare_out(out, args.force)
    set_torch_threads(cfg.train.threads)
    detector = create_detector(cfg)
    entries, why = [], Counter()
    with task("cutting masks", len(photos), True) as bar:
        for photo in photos:
            img = cv2.imread(str(photo), cv2.IMREAD_COLOR)
            face = find_face(detector, img) if img is not None else None
            if img is None:
                why["unreadable"] += 1
            elif face is None:
                why["no face"] += 1
            else:
                cut = cut_mask(img, face.landmarks, face.box)
                if isinstance(cut, Rejection):
                    why[cut.reason.split(" (")[0].split(" ")[0]] += 1
                else:
                    name = f"{len(entries):05d}.png"
                    write_png(out / "masks" / name, cut.rgba)
                    source = photo.relative_to(data).as_posix()
                    entries.append({"file": name, "source": source, **cut.meta})
            bar.advance()
    write_bank(out, data, entries)
    refused = ", ".join(f"{n} {k}" for k, n in why.most_common())
    err_console.print(
        f"cut-masks: {len(entries)} masks from {len(photos)} photos -> {out}"
        + (f" (refused: {refused})" if refused else "")
    )
    if not entries:
        raise UserError(f"no plausible mask cut from the {len(photos)} photos of {data}")
    return 0
