"""`mask-monitor`: watch a camera, stream or video; `mask-monitor bench`: measure the pipeline.

Heavy libraries (torch, onnxruntime, facenet-pytorch) load only after the arguments are read, so `--help`
and a bad flag answer at once: every module imported here keeps those imports inside its functions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engines.cliargs import positive_float, positive_int
from engines.config import Config, add_config_argument, choices_of, config_from_args
from engines.device import set_torch_threads
from engines.errors import run_cli
from engines.faces import FaceDetector
from engines.fileio import require_file
from monitor.app import Monitor, Options
from monitor.bench import run_bench
from monitor.classifier import load_classifier
from monitor.events import check_outputs
from monitor.sources import SOURCES, SourceSpec

DESCRIPTION = (
    "Real-time entrance monitor: finds faces, classifies mask / gender / age, flags incorrect and "
    "missing masks. `mask-monitor bench --video FILE` measures it against a naive pipeline."
)


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument(
        "--engine", metavar="PATH", help="classifier file (.onnx, .engine, .pt); default: config engine.path"
    )
    p.add_argument(
        "--device",
        dest="engine.device",
        choices=choices_of("engine.device"),
        help="where the classifier runs",
    )
    p.add_argument(
        "--threads",
        dest="engine.threads",
        type=int,
        metavar="N",
        help="CPU threads of the classifier runtime",
    )
    p.add_argument(
        "--detect-every",
        dest="monitor.detect_every",
        type=positive_int,
        metavar="N",
        help="run MTCNN on every Nth frame (config monitor.detect_every)",
    )
    p.add_argument(
        "--classify-every",
        dest="monitor.classify_every",
        type=positive_int,
        metavar="N",
        help="reclassify a settled track every Nth frame (config monitor.classify_every)",
    )
    p.add_argument(
        "--vote-window",
        dest="monitor.vote_window",
        type=positive_int,
        metavar="K",
        help="vote over a track's last K classifications (config monitor.vote_window)",
    )
    p.add_argument(
        "--min-votes",
        dest="monitor.min_votes",
        type=positive_int,
        metavar="N",
        help="classifications before a state counts as settled (config monitor.min_votes)",
    )
    p.add_argument(
        "--detect-max-side",
        dest="monitor.detect_max_side",
        type=positive_int,
        metavar="PX",
        help="MTCNN sees the frame shrunk to this longer side (config monitor.detect_max_side)",
    )
    p.add_argument("--max-frames", type=positive_int, metavar="N", help="stop after N frames")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mask-monitor",
        description=DESCRIPTION,
        epilog="mask-monitor bench --video FILE [--json OUT]: frames/s and ms per stage, "
        "against a naive baseline (see `mask-monitor bench --help`)",
    )
    src = p.add_mutually_exclusive_group(required=True)
    for kind in SOURCES.values():
        src.add_argument(kind.flag, dest=kind.name, type=kind.parse, metavar=kind.metavar, help=kind.help)
    add_engine_arguments(p)
    p.add_argument("--headless", action="store_true", help="no screen: one line per flag (services, logs)")
    p.add_argument("--bell", action="store_true", default=None, help="ring the terminal bell on a flag")
    p.add_argument(
        "--realtime",
        action="store_true",
        help="play a video file at its own fps, like a camera "
        "(frames the pipeline cannot keep up with are dropped)",
    )
    p.add_argument(
        "--events", metavar="FILE.jsonl", help="append one JSON object per flag and per person who leaves"
    )
    p.add_argument(
        "--save-faces", metavar="DIR", help="save the crop of each flagged person (off by default)"
    )
    p.add_argument("--record", metavar="OUT.mp4", help="write the annotated video")
    p.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    return p


def build_bench_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mask-monitor bench",
        description="End-to-end frames/s and ms per stage (median, p95) of the monitor's "
        "pipeline and, in the same run, of a naive one (MTCNN on every full "
        "frame, each crop classified alone in PyTorch eager).",
    )
    p.add_argument(
        "--video", metavar="FILE", required=True, help="a video (ideally 640x480 with 1-3 large faces)"
    )
    p.add_argument("--json", metavar="OUT", help="also write the numbers to this JSON file")
    p.add_argument(
        "--baseline-frames",
        type=positive_int,
        metavar="N",
        default=150,
        help="frames for the naive baseline (it is slow; default 150)",
    )
    p.add_argument(
        "--loops",
        type=positive_int,
        metavar="N",
        default=1,
        help="play the video N times through the monitor's pipeline (a long run: is memory flat?)",
    )
    add_engine_arguments(p)
    return p


def _source(args: argparse.Namespace) -> SourceSpec:
    """The one source flag given (argparse's group makes it exactly one)."""
    kind = next(k for k in SOURCES if getattr(args, k) is not None)
    return SourceSpec(kind, getattr(args, kind))


def run_monitor(args: argparse.Namespace, cfg: Config) -> int:
    spec = _source(args)
    if spec.kind == "video":
        require_file(spec.target, "video file")
    options = Options(
        headless=args.headless,
        bell=bool(cfg.ui.bell or args.bell),
        realtime=args.realtime,
        events=Path(args.events) if args.events else None,
        save_faces=Path(args.save_faces) if args.save_faces else None,
        record=Path(args.record) if args.record else None,
        max_frames=args.max_frames,
        duration=args.duration,
    )
    check_outputs(options.events, options.record, options.save_faces)
    # PyTorch's CPU threads for MTCNN (process-wide; see monitor.torch_threads in config.toml), set before the
    # classifier loads: a `.pt` classifier on the CPU then sets its own engine.threads on top (PyTorch has
    # one thread count per process, so that setting wins for MTCNN too). `mask-monitor bench` does the same.
    set_torch_threads(cfg.monitor.torch_threads)
    engine = load_classifier(args, cfg)
    monitor = Monitor(cfg, spec, engine, FaceDetector(cfg.detector), options)
    if args.headless:
        print(
            f"mask-monitor: watching {spec.describe()} with {engine.describe()}", file=sys.stderr, flush=True
        )
    report = monitor.run()
    print(report.summary, flush=True)
    return 128 + int(report.signal) if report.signal is not None else 0  # 130 after Ctrl-C, 143 after SIGTERM


def _main(argv: list[str]) -> int:
    if argv[:1] == ["bench"]:
        args = build_bench_parser().parse_args(argv[1:])
        return run_bench(args, config_from_args(args))
    args = build_parser().parse_args(argv)
    return run_monitor(args, config_from_args(args))


def main(argv: list[str] | None = None) -> None:
    run_cli(lambda: _main(list(argv if argv is not None else sys.argv[1:])), "mask-monitor")
