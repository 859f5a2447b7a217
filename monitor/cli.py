"""`mask-monitor`: watch a camera, stream or video; `mask-monitor bench`: measure the pipeline.

Heavy libraries (torch, onnxruntime, facenet-pytorch) load only after the arguments are read, so `--help`
and a bad flag answer at once: every module imported here keeps those imports inside its functions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engines.cliargs import positive_float, positive_int
from engines.config import add_config_argument
from engines.device import set_torch_threads
from engines.errors import UserError, run_cli
from engines.faces import create_detector
from engines.fileio import require_file
from engines.secrets import MQTT_PASSWORD_ENV
from monitor.app import Monitor, Options
from monitor.bench.pipeline import BenchOptions, run_bench
from monitor.bench.streams import run_streams_bench
from monitor.broker import broker_from_args
from monitor.config import Config, choices_of, config_from_args
from monitor.decisions.zones import Zone
from monitor.inference.classifier import load_classifier
from monitor.outputs.events import check_outputs
from monitor.outputs.evidence import check_evidence_dir
from monitor.outputs.metrics import MetricsSink, parse_address
from monitor.outputs.mqtt import connect_publisher
from monitor.outputs.recording import check_record_dir
from monitor.outputs.retention import PruneOptions, run_prune
from monitor.site.view import SiteOptions, run_site
from monitor.sources.kinds import SOURCES, Source, SourceSpec, default_name, sources_from_config, unique_names

DESCRIPTION = (
    "Real-time entrance monitor: finds faces, classifies mask / gender / age, flags incorrect and "
    "missing masks. `mask-monitor bench --video FILE` measures it against a naive pipeline."
)


def add_broker_arguments(p: argparse.ArgumentParser, help: str, required: bool = False) -> None:
    """--mqtt URL, --mqtt-password-file FILE, --mqtt-ca FILE (the monitor's and `site`'s)."""
    p.add_argument("--mqtt", metavar="URL", required=required, help=help)
    p.add_argument(
        "--mqtt-password-file",
        metavar="FILE",
        help=f"the MQTT password: the first line of FILE (or set {MQTT_PASSWORD_ENV}); the URL names the "
        "user",
    )
    p.add_argument(
        "--mqtt-ca",
        metavar="FILE",
        help="the CA certificate (PEM) that signed an mqtts:// broker's (default: the system's CAs)",
    )


def add_site_arguments(p: argparse.ArgumentParser) -> None:
    add_broker_arguments(p, "mqtt[s]://[user@]host[:port][/prefix] the monitors publish to", required=True)
    p.add_argument("--events", metavar="FILE.jsonl", help="append every event of every source to this file")
    p.add_argument(
        "--headless", action="store_true", help="no screen: one line per flag and per source up/down"
    )
    p.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    p.add_argument(
        "--metrics",
        nargs="?",
        const="",
        metavar="HOST:PORT",
        help="serve Prometheus metrics of every source of every machine at http://HOST:PORT/metrics "
        "(default [metrics]: 127.0.0.1:9108)",
    )
    add_config_argument(p)  # [metrics] and [compliance] for --metrics


def add_prune_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--collect", type=Path, metavar="DIR", help="a --collect folder ([collect] limits)")
    p.add_argument(
        "--save-faces", type=Path, metavar="DIR", help="a --save-faces folder ([save_faces] limits)"
    )
    p.add_argument(
        "--record",
        type=Path,
        metavar="OUT.mp4|DIR",
        help="a --record video, or a --record folder of several sources' videos ([record] limits)",
    )
    p.add_argument(
        "--evidence",
        type=Path,
        metavar="DIR",
        help="an --evidence folder ([evidence] limits; default: [evidence] folder, if set)",
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
        "against a naive baseline (see `mask-monitor bench --help`); mask-monitor site --mqtt URL: every "
        "entrance of a site on one screen (see `mask-monitor site --help`); mask-monitor prune: delete the "
        "face files past their retention (see `mask-monitor prune --help`)",
    )
    src = p.add_argument_group(
        "sources", "give one or several, in any mix (or [[sources]] tables in the config file)"
    )
    add_source_flags(src, several=True)
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
    p.add_argument(
        "--collect",
        metavar="DIR",
        help="keep the face crops the model was unsure of, with DIR/collected.jsonl, for `mask-train label "
        "DIR` (off by default; config [collect])",
    )
    p.add_argument(
        "--record",
        metavar="OUT.mp4|DIR",
        help="write the annotated video (several sources: a folder, one NAME.mp4 per source)",
    )
    p.add_argument(
        "--evidence",
        metavar="DIR",
        help="write a snapshot of each flag (other faces blurred; a clip with [evidence] clip_s) to DIR; the "
        "flag event names it (default: [evidence] folder; off when that is empty)",
    )
    p.add_argument(
        "--metrics",
        nargs="?",
        const="",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default [metrics]: 127.0.0.1:9108)",
    )
    add_broker_arguments(
        p,
        "publish events and status to mqtt[s]://[user@]host[:port]/prefix (topics PREFIX/SOURCE/events, "
        "/status)",
    )
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
        "--streams",
        type=positive_int,
        metavar="N",
        help="N copies of the video in one monitor against N separate monitor processes at once",
    )
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


class _AddSource(argparse.Action):
    """--camera / --video / --url, repeatable, kept in the order given."""

    def __call__(self, parser, namespace, value, option_string=None):
        given = list(getattr(namespace, self.dest, None) or [])
        given.append(SourceSpec(self.const, value))
        setattr(namespace, self.dest, given)


def add_source_flags(group, several: bool) -> None:
    """One flag per row of SOURCES (--camera, --video, --url, ...), each adding a source to `source_flags`."""
    for kind in SOURCES.values():
        group.add_argument(
            kind.flag,
            dest="source_flags",
            action=_AddSource,
            const=kind.name,
            type=kind.parse,
            metavar=kind.metavar,
            help=kind.help + (" (repeat for several)" if several else ""),
        )


def _sources(args: argparse.Namespace, cfg: Config) -> list[Source]:
    """The sources named by flags, else the config's [[sources]] tables; one of them is required."""
    flags = getattr(args, "source_flags", None) or []
    if flags:
        return unique_names([Source(default_name(spec), spec) for spec in flags])
    if cfg.sources:
        return sources_from_config(cfg.sources)
    raise UserError("no source: give --camera N, --video FILE or --url URL (or [[sources]] in the config)")


def _options(args: argparse.Namespace, cfg: Config, multi: bool) -> Options:
    options = Options(
        headless=args.headless,
        bell=bool(cfg.ui.bell or args.bell),
        realtime=args.realtime,
        events=Path(args.events) if args.events else None,
        save_faces=Path(args.save_faces) if args.save_faces else None,
        record=Path(args.record) if args.record else None,
        max_frames=args.max_frames,
        duration=args.duration,
        collect=Path(args.collect) if args.collect else None,
        metrics=parse_address(args.metrics, cfg.metrics.host, cfg.metrics.port)
        if args.metrics is not None
        else None,
        evidence=evidence_folder(args.evidence, cfg),
    )
    check_outputs(options.events, None if multi else options.record, options.save_faces, options.collect)
    if options.evidence is not None:  # made and written to once, before the model loads
        given = f"--evidence {args.evidence}" if args.evidence else f"[evidence] folder {options.evidence}"
        check_evidence_dir(options.evidence, given)
    if multi and options.record is not None:
        check_record_dir(options.record)
    return options


def evidence_folder(flag: str | Path | None, cfg: Config) -> Path | None:
    """--evidence DIR, else `[evidence] folder` (relative to the config file's folder), else None (off)."""
    if flag:
        return Path(flag)
    return cfg.resolve(cfg.evidence.folder) if cfg.evidence.folder else None


def run_monitor(args: argparse.Namespace, cfg: Config) -> int:
    sources = _sources(args, cfg)
    # a bad broker address, password file or CA file is one line before the model loads
    broker = broker_from_args(args.mqtt, args.mqtt_password_file, args.mqtt_ca) if args.mqtt else None
    for s in sources:
        if s.spec.kind == "video":
            require_file(s.spec.target, "video file")
    options = _options(args, cfg, len(sources) > 1)
    zones = zones_of(cfg, sources, bool(getattr(args, "source_flags", None)))
    metrics = None
    if options.metrics is not None:  # a port in use is one line before the model loads
        metrics = MetricsSink()
        print(f"mask-monitor: metrics: {metrics.start(*options.metrics)}", file=sys.stderr, flush=True)
    # PyTorch's CPU threads for MTCNN (process-wide; see monitor.torch_threads in config.toml), set before the
    # classifier loads: a `.pt` classifier on the CPU then sets its own engine.threads on top (PyTorch has
    # one thread count per process, so that setting wins for MTCNN too). `mask-monitor bench` does the same.
    set_torch_threads(cfg.monitor.torch_threads)
    engine = load_classifier(_path(args.engine), cfg)
    publisher = connect_publisher(broker, [s.name for s in sources]) if broker is not None else None
    monitor = Monitor(
        cfg, sources, engine, create_detector(cfg), options, publisher=publisher, metrics=metrics, zones=zones
    )
    if args.headless:
        what = (
            sources[0].spec.describe()
            if len(sources) == 1
            else f"{len(sources)} sources ({', '.join(f'{s.name}: {s.spec.describe()}' for s in sources)})"
        )
        print(f"mask-monitor: watching {what} with {engine.describe()}", file=sys.stderr, flush=True)
    report = monitor.run()
    print(report.summary, flush=True)
    if options.collect is not None:
        print(
            f"mask-monitor: collected {report.collected} crops in {options.collect} "
            f"(label them: mask-train label {options.collect})",
            file=sys.stderr,
            flush=True,
        )
    return 128 + int(report.signal) if report.signal is not None else 0  # 130 after Ctrl-C, 143 after SIGTERM


def build_site_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mask-monitor site",
        description="Every entrance of every machine that publishes to an MQTT broker "
        "(mask-monitor --mqtt), on "
        "one screen; optionally one merged JSONL file of their events.",
    )
    add_site_arguments(p)
    return p


def build_prune_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mask-monitor prune",
        description="Apply the retention limits (max_age_days, max_mb of [collect], [save_faces], [record]) "
        "to the folders a monitor wrote, once: files older than the age limit go, then the oldest while "
        "a folder is over its size limit (the running monitor does the same at start and every "
        "monitor.prune_every_s). For a timer (cron, systemd) where the monitor does not run all the time.",
    )
    add_prune_arguments(p)
    return p


_BENCH_ONLY = {"--video": 1, "--json": 1, "--streams": 1, "--baseline-frames": 1, "--loops": 1, "--engine": 1}


def _monitor_flags(argv: list[str]) -> list[str]:
    """The bench's flags that a separate `mask-monitor` process takes too (config, engine settings)."""
    out, skip = [], 0
    for a in argv:
        if skip:
            skip -= 1
            continue
        name = a.split("=", 1)[0]
        if name in _BENCH_ONLY:
            skip = 0 if "=" in a else _BENCH_ONLY[name]
            continue
        out.append(a)
    return out


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def site_options(args: argparse.Namespace) -> SiteOptions:
    """`mask-monitor site`'s flags as one value; a bad broker address, password or CA file is one line."""
    cfg = config_from_args(args)
    return SiteOptions(
        broker_from_args(args.mqtt, args.mqtt_password_file, args.mqtt_ca),
        _path(args.events),
        args.headless,
        args.duration,
        parse_address(args.metrics, cfg.metrics.host, cfg.metrics.port) if args.metrics is not None else None,
        cfg.compliance,
    )


def bench_options(args: argparse.Namespace, argv: list[str]) -> BenchOptions:
    return BenchOptions(
        video=Path(args.video),
        json=_path(args.json),
        engine=_path(args.engine),
        max_frames=args.max_frames,
        baseline_frames=args.baseline_frames,
        loops=args.loops,
        streams=args.streams,
        monitor_flags=tuple(_monitor_flags(argv)),
    )


def _main(argv: list[str]) -> int:
    if argv[:1] == ["prune"]:
        args = build_prune_parser().parse_args(argv[1:])
        cfg = config_from_args(args)
        evidence = evidence_folder(args.evidence, cfg)  # --evidence DIR, else [evidence] folder
        return run_prune(PruneOptions(args.collect, args.save_faces, args.record, evidence), cfg)
    if argv[:1] == ["zones"]:
        args = build_zones_parser().parse_args(argv[1:])
        return run_zones(args, config_from_args(args))
    if argv[:1] == ["site"]:
        return run_site(site_options(build_site_parser().parse_args(argv[1:])))
    if argv[:1] == ["bench"]:
        args = build_bench_parser().parse_args(argv[1:])
        options = bench_options(args, argv[1:])
        if options.streams:
            return run_streams_bench(options, config_from_args(args))
        return run_bench(options, config_from_args(args))
    args = build_parser().parse_args(argv)
    return run_monitor(args, config_from_args(args))


def main(argv: list[str] | None = None) -> None:
    run_cli(lambda: _main(list(argv if argv is not None else sys.argv[1:])), "mask-monitor")


def zones_of(cfg: Config, sources: list[Source], from_flags: bool) -> dict[str, Zone | None]:
    """Each source's zone from its `[[sources]]` table (sources given by flags have none); a bad polygon is
    one line naming the source."""
    if from_flags or not cfg.sources:
        return {}
    return {s.name: Zone.of_source(t, s.name) for s, t in zip(sources, cfg.sources, strict=True)}


def build_zones_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mask-monitor zones",
        description="Write the first frame of a source with its zone drawn (outside dimmed) to a PNG, to "
        "check a [[sources]] zone before running. The source: --video/--camera/--url, or the [[sources]] "
        "table named by --source (its zone is used either way; else the first table's).",
    )
    src = p.add_mutually_exclusive_group()
    add_source_flags(src, several=False)
    p.add_argument("--source", metavar="NAME", help="the [[sources]] table whose zone to draw")
    p.add_argument("--out", metavar="PNG", required=True, help="where to write the picture (.png)")
    add_config_argument(p)
    return p


def run_zones(args: argparse.Namespace, cfg: Config) -> int:
    from engines.fileio import atomic_path
    from monitor.decisions.zones import zone_preview
    from monitor.sources.kinds import open_cv, open_error

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out}: give a .png file")
    tables = sources_from_config(cfg.sources) if cfg.sources else []
    pick = (
        [i for i, s in enumerate(tables) if s.name == args.source] if args.source else [0] if tables else []
    )
    if args.source and not pick:
        names = ", ".join(s.name for s in tables) or "none"
        raise UserError(
            f"--source {args.source}: no [[sources]] table of that name (the config has: {names})"
        )
    flags = getattr(args, "source_flags", None) or []
    if not flags and not pick:
        raise UserError(
            "no source: give --video FILE, --camera N or --url URL (or [[sources]] in the config)"
        )
    spec = flags[0] if flags else tables[pick[0]].spec
    name = tables[pick[0]].name if pick else default_name(spec)
    zone = Zone.of_source(cfg.sources[pick[0]], name) if pick else None
    if spec.kind == "video":
        require_file(spec.target, "video file")
    cap = open_cv(spec)
    try:
        ok, image = cap.read() if cap is not None and cap.isOpened() else (False, None)
    finally:
        if cap is not None:
            cap.release()
    if not ok or image is None:
        raise open_error(spec)
    import cv2

    ok, png = cv2.imencode(".png", zone_preview(image, zone, name))
    with atomic_path(out) as tmp:
        tmp.write_bytes(png.tobytes())
    print(f"mask-monitor: zones: {name} drawn on its first frame in {out}", flush=True)
    return 0
