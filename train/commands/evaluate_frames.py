"""`mask-train evaluate-frames --checkpoint MODEL... --list CSV --root DIR [--incorrect CSV]`:
held-out photos pasted into 640x480 frames and run through the monitor's detect-crop-classify path
(train.evaluation.frames); prints the issue's target numbers per model and the detection cost in frames/s."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.table import Table

from engines.device import set_torch_threads
from engines.faces import FaceDetector, create_detector
from train.config import Config
from train.evaluation.frames import (
    BASELINE_MAX_SIDE,
    REFERENCE_DETECTOR,
    detection_only,
    prepare_frames,
    read_list,
    run_frames,
    scores,
)
from train.evaluation.inference import load_models
from train.options import add_detector_arguments
from train.progress import console


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", nargs="+", required=True, metavar="MODEL", help="model files to compare")
    p.add_argument(
        "--list", required=True, metavar="CSV", help="held-out photos: file,mask,... (import's holdout.csv)"
    )
    p.add_argument("--root", required=True, metavar="DIR", help="folder the list's paths are relative to")
    p.add_argument(
        "--incorrect", metavar="CSV", help="synthetic set over held-out identities (synth's labels.csv)"
    )
    p.add_argument("--incorrect-root", metavar="DIR", help="its folder (default: the CSV's folder)")
    p.add_argument(
        "--limit", type=int, default=0, metavar="N", help="at most N photos per mask state (0: all)"
    )
    p.add_argument("--seed", type=int, default=0, help="face heights and places (default 0)")
    p.add_argument("--threads", dest="engine.threads", type=int, metavar="N", help="classifier CPU threads")
    g = p.add_argument_group("the detection path to measure (config.toml [monitor], [detector])")
    g.add_argument("--detect-max-side", dest="monitor.detect_max_side", type=int, metavar="PX")
    add_detector_arguments(g)
    g.add_argument(
        "--baseline-detection",
        action="store_true",
        help=f"also run the first demo's detection path (MTCNN {list(REFERENCE_DETECTOR.thresholds)}, "
        f"min face {REFERENCE_DETECTOR.min_face_size} px, frame shrunk to {BASELINE_MAX_SIDE} px) on the "
        "same frames: its yield and frames/s beside this one's",
    )


def run(args: argparse.Namespace, cfg: Config) -> int:
    set_torch_threads(max(cfg.monitor.torch_threads, 1))
    engines = load_models(args.checkpoint, cfg.engine.device, cfg.engine.threads)
    photos = read_list(args.list, args.root)
    if args.incorrect:
        root = Path(args.incorrect_root or Path(args.incorrect).parent)
        photos += [p for p in read_list(args.incorrect, root) if p.mask == 1]
    if args.limit:
        photos = _limit(photos, args.limit)
    detector = create_detector(cfg)
    reference = FaceDetector(dataclasses.replace(REFERENCE_DETECTOR, device=cfg.detector.device))
    frames = prepare_frames(photos, reference, args.seed, True)
    tallies = run_frames(frames, engines, cfg, detector, True)
    m, d = cfg.monitor, cfg.detector
    console.print(
        f"detection path: MTCNN on the frame shrunk to {m.detect_max_side} px, min face {d.min_face_size} px "
        f"there, thresholds {list(d.thresholds)}; second look {list(m.recheck_thresholds)}; nets: "
        f"{detector.cfg.weights or 'facenet-pytorch'}"  # the file create_detector located and loads
    )
    for engine, tally in zip(engines, tallies):
        print_tally(engine.path.name, tally, scores(tally))
    if args.baseline_detection:
        found, faces, fps = detection_only(frames, reference, BASELINE_MAX_SIDE, True)
        ours = scores(tallies[0])
        masked, bare = found[0] / max(faces[0], 1), found[2] / max(faces[2], 1)
        console.print(
            f"baseline detection (MTCNN {list(REFERENCE_DETECTOR.thresholds)}, min face "
            f"{REFERENCE_DETECTOR.min_face_size} px, frame shrunk to {BASELINE_MAX_SIDE} px): masked found "
            f"{masked:.1%}, bare found {bare:.1%}, {fps:.1f} frames/s; "
            f"this path: {ours['masked_found']:.1%}, "
            f"{ours['bare_found']:.1%}, {ours['detect_fps']:.1f} frames/s "
            f"(it costs {fps / max(ours['detect_fps'], 1e-9):.2f}x the baseline)"
        )
    return 0


def _limit(photos, n: int):
    by_mask: dict[int, list] = {}
    for p in photos:
        by_mask.setdefault(p.mask, []).append(p)
    return [p for group in by_mask.values() for p in group[:n]]


def print_tally(name: str, tally, s: dict[str, float]) -> None:
    from train.evaluation.frames import MASK_COLUMNS

    table = Table(title=f"{name}: faces pasted into 640x480 frames, face height 60-200 px")
    table.add_column("truth \\ read as")
    for col in MASK_COLUMNS:
        table.add_column(col, justify="right")
    for i, row in enumerate(tally.predicted):
        if tally.faces[i]:
            table.add_row(MASK_COLUMNS[i], *(str(int(v)) for v in row))
    console.print(table)
    targets = [
        ("masked faces found (first look)", s["masked_found"], 0.95),
        ("masked faces found (with the second look)", s["masked_found_second_look"], None),
        ("  found confidently (starts a person)", s["masked_found_confident"], None),
        (
            f"  photos whose face MTCNN found ({int(tally.faces_box_known[0])} of {int(tally.faces[0])})",
            s["masked_found_box_known"],
            None,
        ),
        ("bare faces found", s["bare_found"], None),
        ("flag-or-not right (masked + bare)", s["flag_right"], 0.95),
        ("  masked not flagged", s["masked_not_flagged"], 0.95),
        ("  bare flagged", s["bare_flagged"], 0.95),
        ("incorrect recall (synthetic, held-out people)", s["incorrect_recall"], 0.90),
    ]
    for label, value, target in targets:
        if "incorrect" in label and not tally.faces[1]:
            continue
        mark = (
            "" if target is None else ("  [green]ok[/]" if value >= target else f"  [red]< {target:.0%}[/]")
        )
        console.print(f"{label:48s} {value:6.1%}{mark}")
    console.print(
        f"detection: {s['detect_fps']:.1f} frames/s (first look), "
        f"{s['detect_fps_with_second_look']:.1f} frames/s with the second look where the first missed"
    )
