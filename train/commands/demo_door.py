"""`mask-train demo-door`: the demonstration that a door's own labels make the model better at that door:
collect, label (from the ground truth, through labels.csv), import, fine-tune with --init-from, and the
door's flag-or-not accuracy before / after on held-out faces (train.workflows.door)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from engines.device import set_torch_threads
from engines.errors import UserError
from engines.fileio import atomic_write_json, require_file
from train.config import Config
from train.evaluation.compare import comparison_table
from train.options import add_threads_argument
from train.progress import console
from train.workflows.door import DoorSettings, run_door

DEFAULT_BASE = "build/demo/run/best.pt"  # `make demo-model` leaves the demo model's checkpoint here
DEFAULT_PHOTOS = "build/demo/cache/imports/real/holdout.csv"  # the real photos the demo model never saw
DEFAULT_ROOT = "../shared/datasets/face-mask-real"
DEFAULT_INCORRECT = "build/demo/synth-holdout/labels.csv"  # synthetic incorrect masks over those bare faces


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--base", default=DEFAULT_BASE, metavar="MODEL.pt", help=f"model to adapt ({DEFAULT_BASE})"
    )
    p.add_argument(
        "--photos", default=DEFAULT_PHOTOS, metavar="CSV", help="the door's people: file,mask,group"
    )
    p.add_argument("--root", default=DEFAULT_ROOT, metavar="DIR", help="folder the CSV's paths are under")
    p.add_argument(
        "--incorrect",
        metavar="CSV",
        help=f"synth's labels.csv drawn over the list's bare faces: its incorrect masks join the door "
        f"(default {DEFAULT_INCORRECT} where it exists; 'none': leave them out)",
    )
    p.add_argument("--out", default="build/door", metavar="DIR", help="work folder (default build/door)")
    p.add_argument("--per-state", type=int, default=120, metavar="N", help="faces per mask state (120)")
    p.add_argument("--held-out", type=float, default=0.4, metavar="F", help="share of groups held out (0.4)")
    p.add_argument(
        "--max-confidence",
        type=float,
        default=1.0,
        metavar="P",
        help="collect's rule: keep faces whose top mask probability is under P (1.0: every face)",
    )
    p.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs (4)")
    p.add_argument("--batch-size", type=int, default=16, help="fine-tuning batch size (16)")
    p.add_argument("--lr", type=float, default=3e-4, help="fine-tuning learning rate (3e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out choice and of the fine-tune (0)")
    p.add_argument("--nice", type=int, default=10, help="lower this process's CPU priority by N (10; 0: no)")
    add_threads_argument(p)


def run(args: argparse.Namespace, cfg: Config) -> int:
    if not 0.0 < args.held_out < 1.0:
        raise UserError(f"--held-out must be in (0, 1), got {args.held_out}")
    if args.per_state < 1 or args.epochs < 1 or args.batch_size < 1:
        raise UserError("--per-state, --epochs and --batch-size must be at least 1")
    incorrect = args.incorrect or (DEFAULT_INCORRECT if Path(DEFAULT_INCORRECT).is_file() else "none")
    if incorrect != "none":
        require_file(incorrect, "--incorrect labels file")
    base = require_file(args.base, "--base checkpoint", "`make demo-model` writes build/demo/run/best.pt")
    settings = DoorSettings(
        base=Path(base),
        photos=Path(args.photos),
        root=Path(args.root),
        incorrect=None if incorrect == "none" else Path(incorrect),
        out=Path(args.out),
        per_state=args.per_state,
        held_out=args.held_out,
        max_confidence=args.max_confidence,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
    )
    if args.nice > 0:
        os.nice(args.nice)  # a demonstration on a shared machine: the others' work comes first
    set_torch_threads(cfg.train.threads)
    r = run_door(cfg, settings, show=True)
    atomic_write_json(settings.out / "door.json", r.to_dict())
    console.print(
        f"door: {r.faces} faces; fine-tuning part {r.tune_faces} (collected and labelled {r.collected}), "
        f"held out {r.held_faces} (no group on both sides)"
    )
    console.print(comparison_table(r.comparison))
    console.print(f"base {settings.base} sha256 {r.base_sha256}")
    console.print(f"new  {r.new_model}: parent_sha256 {r.parent_sha256}")
    console.print(f"report: {settings.out / 'door.json'}")
    return 0
