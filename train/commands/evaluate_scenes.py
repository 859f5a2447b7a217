"""`mask-train evaluate-scenes --checkpoint MODEL... --data VOC_DIR [--list holdout.csv] [--json FILE]`:
street and crowd scenes scaled to a 640-px-wide frame through the monitor's detect-crop-classify path
(train.evaluation.scenes); per model, faces found by height, the confusion matrix end to end and cut at the
annotated box, and issue 22's targets with pass / fail."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from engines.device import set_torch_threads
from engines.errors import UserError
from engines.faces import create_detector
from engines.fileio import atomic_write_json
from engines.labels import MASK_NAMES
from train.config import Config
from train.data.importer import read_mapping
from train.data.scenes import BoxMapping
from train.evaluation.inference import load_models
from train.evaluation.scenes import BIN_NAMES, TARGET_MIN_HEIGHT, read_scenes, run_scenes, summarise
from train.options import add_detector_arguments
from train.progress import console
from train.runfiles import check_output_file


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", nargs="+", required=True, metavar="MODEL", help="model files to compare")
    p.add_argument(
        "--data", required=True, metavar="DIR", help="the PASCAL VOC folder (annotations/, images/)"
    )
    p.add_argument(
        "--list",
        metavar="CSV",
        help="the scenes' faces: file,mask,box rows (a VOC import's holdout.csv); default: every annotation",
    )
    p.add_argument(
        "--mapping",
        metavar="JSON",
        help="the import's report.json whose box mapping cuts at the annotated box (default: report.json "
        "beside --list; none: the annotated box as it is)",
    )
    p.add_argument("--json", metavar="FILE", help="write every number to this JSON file")
    p.add_argument("--threads", dest="engine.threads", type=int, metavar="N", help="classifier CPU threads")
    g = p.add_argument_group("the detection path to measure (config.toml [monitor], [detector], [scenes])")
    g.add_argument("--detect-max-side", dest="monitor.detect_max_side", type=int, metavar="PX")
    g.add_argument("--frame-width", dest="scenes.frame_width", type=int, metavar="PX")
    add_detector_arguments(g)


def _mapping(args: argparse.Namespace) -> tuple[BoxMapping, str]:
    path = (
        Path(args.mapping)
        if args.mapping
        else (Path(args.list).parent / "report.json" if args.list else None)
    )
    if args.mapping and not path.is_file():
        raise UserError(f"--mapping {path}: no such file")
    mapping = read_mapping(path) if path is not None else None
    if mapping is None:
        if args.mapping:
            raise UserError(f"--mapping {path}: holds no voc_mapping (a VOC import's report.json)")
        return BoxMapping(), "none (the annotated box as it is)"
    return mapping, str(path)


def run(args: argparse.Namespace, cfg: Config) -> int:
    if args.json:
        check_output_file(args.json, "--json")
    set_torch_threads(max(cfg.monitor.torch_threads, 1))
    scenes = read_scenes(args.data, args.list)
    mapping, mapping_from = _mapping(args)
    engines = load_models(args.checkpoint, cfg.engine.device, cfg.engine.threads)
    detector = create_detector(cfg)
    results, unreadable = run_scenes(scenes, engines, cfg, detector, mapping, True)
    m, d = cfg.monitor, cfg.detector
    console.print(
        f"{len(scenes) - unreadable} scenes ({unreadable} unreadable) scaled to {cfg.scenes.frame_width} px "
        f"wide; MTCNN on the frame shrunk to {m.detect_max_side} px, min face {d.min_face_size} px there, "
        f"thresholds {list(d.thresholds)}, nets {detector.cfg.weights or 'facenet-pytorch'}; annotated boxes "
        f"mapped by {mapping_from}"
    )
    report = {
        "data": str(args.data),
        "list": args.list,
        "scenes": len(scenes) - unreadable,
        "unreadable": unreadable,
        "frame_width": cfg.scenes.frame_width,
        "detector": {
            "thresholds": list(d.thresholds),
            "min_face_size": d.min_face_size,
            "weights": detector.cfg.weights,
            "detect_max_side": m.detect_max_side,
        },
        "mapping": mapping.to_dict(),
        "models": {},
    }
    for engine, res in zip(engines, results):
        s = summarise(res, cfg.collect.max_confidence)
        report["models"][str(engine.path)] = s
        print_summary(engine.path.name, s, cfg.collect.max_confidence)
    if args.json:
        atomic_write_json(Path(args.json), report)
        console.print(f"numbers written to {args.json}")
    return 0


def _pct(v: float) -> str:
    return f"{v:.1%}"


def print_summary(name: str, s: dict, unsure_below: float) -> None:
    found = Table(title=f"{name}: faces found, by face height in the frame (px)")
    found.add_column("truth")
    for b in BIN_NAMES:
        found.add_column(b, justify="right")
    for state, row in s["found_by_height"].items():
        found.add_row(state, *(f"{f}/{n}" if n else "-" for f, n in row.values()))
    console.print(found)
    paths = (
        ("end_to_end", "detected and cut as the monitor does"),
        ("annotated_box", "cut at the annotated box"),
    )
    for path, title in paths:
        for sel in ("all", f"min_{TARGET_MIN_HEIGHT}px"):
            p = s[sel][path]
            faces = "all faces" if sel == "all" else f"faces >= {TARGET_MIN_HEIGHT} px"
            t = Table(title=f"{name}: {title}, {faces} ({p['faces']})")
            t.add_column("truth \\ read as")
            for col in (*MASK_NAMES, "not found"):
                t.add_column(col, justify="right")
            for i, row in enumerate(p["confusion"]):
                t.add_row(MASK_NAMES[i], *(str(v) for v in row))
            console.print(t)
            console.print(
                f"  found {_pct(p['found'])}, incorrect recall {_pct(p['incorrect_recall'])}, "
                f"bare found read as worn {_pct(p['bare_read_as_worn'])}, "
                f"masked not flagged {_pct(p['masked_not_flagged'])}, flag-or-not {_pct(p['flag_right'])}, "
                f"ECE {_pct(p['ece'])}; wrong answers {p['wrong']}, {_pct(p['wrong_confident'])} of them "
                f"at confidence >= {unsure_below} (never collected as unsure)"
            )
    console.print(f"[bold]{name}: issue 22's targets, end to end, faces >= {TARGET_MIN_HEIGHT} px tall[/]")
    for t in s["targets"]:
        mark = "[green]pass[/]" if t["pass"] else "[red]FAIL[/]"
        target = f"{t['op']} {t['target']:.0%}"
        console.print(f"  {t['what']:40s} {_pct(t['value']):>7s}  (target {target})  {mark}")
