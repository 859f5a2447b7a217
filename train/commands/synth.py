"""`mask-train synth --faces DIR --labels CSV --out DIR`: a competition-layout data set with synthetic masks
drawn on real photos (train.synth.build says how)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engines.errors import UserError
from train.config import Config
from train.options import add_detector_arguments
from train.progress import err_console
from train.synth.build import build, photos_in, read_labels, texture_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--faces", required=True, metavar="DIR", help="folder of photos of people without masks"
    )
    parser.add_argument(
        "--labels",
        metavar="CSV",
        help="file[,gender,age][,race][,variants][,split] per photo ('#' lines are comments); without it "
        "every image under --faces is an identity of unknown gender and age",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="where the competition layout is written")
    parser.add_argument(
        "--variants",
        type=int,
        default=1,
        metavar="N",
        help="people made from each photo, each with its own pose, scale, light (default 1)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument(
        "--textures",
        metavar="DIR",
        default=None,
        help="optional folder of mask fabric images, used for about 30%% of the masks",
    )
    parser.add_argument(
        "--mask-bank",
        metavar="DIR",
        default=None,
        help="masks cut from real photos (`mask-train cut-masks`): a share of the masks, worn and incorrect, "
        "are these, warped onto the face; the incorrect ones also hang from an ear",
    )
    parser.add_argument(
        "--bank-share",
        type=float,
        default=0.5,
        metavar="F",
        help="share of the masks taken from --mask-bank (default 0.5; the rest are drawn)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild OUT made earlier with other settings")
    add_detector_arguments(parser.add_argument_group("MTCNN in the photos (config.toml [detector])"))


def run(args: argparse.Namespace, cfg: Config) -> int:
    if args.variants < 1:
        raise UserError(f"--variants must be >= 1, got {args.variants}")
    rows = read_labels(args.labels, args.faces) if args.labels else photos_in(args.faces)
    textures = texture_files(args.textures)
    summary = build(
        rows,
        Path(args.out),
        cfg,
        variants=args.variants,
        seed=args.seed,
        textures=textures,
        mask_bank=args.mask_bank,
        bank_share=args.bank_share,
        force=args.force,
        show=True,
    )
    err_console.print(
        f"synth: {summary['people']} people ({summary['train']} train, {summary['eval']} eval), "
        f"{summary['made']} made, {summary['kept']} already there, {summary['no_face']} photos without a "
        f"face skipped -> {args.out} ({summary['layout']} layout)"
    )
    return 0
