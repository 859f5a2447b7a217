"""`mask-monitor bench`: the monitor's pipeline against a naive one, on the same video, in the same run.

Naive = what one writes first: MTCNN on every full frame (the detector's own settings, no shrinking),
every face cropped and classified alone in PyTorch eager. Both read frames through the same capture
thread and report through the same StageTimer, so the ratio compares like with like. Where the engine is
not a .pt file, the baseline network is the same architecture and input size built from the model file's
metadata with untrained weights: speed does not depend on the weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from engines.backends.base import Engine
from engines.device import set_torch_threads
from engines.faces import FaceDetector, create_detector, crop_face
from engines.fileio import atomic_write_json, require_file
from engines.preprocess import preprocess
from monitor.config import Config
from monitor.inference.classifier import load_classifier
from monitor.inference.stage import InferenceStage
from monitor.inference.timing import StageTimer
from monitor.sources.capture import Capture
from monitor.sources.kinds import SourceSpec, open_cv, open_error


def rss_mb() -> float | None:
    """Resident memory of this process (Linux); None elsewhere."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


@dataclass
class Measurement:
    name: str
    frames: int
    wall_s: float
    stages: dict[str, dict[str, float]]
    extra: dict[str, Any] = field(default_factory=dict)
    cpu_s: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_ms_per_frame(self) -> float:
        return 1000.0 * self.cpu_s / self.frames if self.frames else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "frames": self.frames,
            "wall_s": round(self.wall_s, 3),
            "fps": round(self.fps, 2),
            "cpu_ms_per_frame": round(self.cpu_ms_per_frame, 2),
            "stages": self.stages,
            **self.extra,
        }


@dataclass
class Drive:
    wall_s: float
    cpu_s: float  # CPU time of the whole process (all threads): robust to other programs' load
    video_fps: float
    rss_mb: list[float | None]  # after each pass over the video


def _drive(spec: SourceSpec, timer: StageTimer, limit: int, step, loops: int = 1) -> Drive:
    """Feed up to `limit` frames, `loops` passes over the video, through the capture thread to `step`.
    The clocks start at the first frame (after the warm-up)."""
    n, t0, c0, fps, rss = 0, None, 0.0, 30.0, []
    for _ in range(loops):
        cap = Capture(spec, timer=timer).start()
        fps = cap.fps
        try:
            while n < limit:
                frame = cap.get(0.5)
                if frame is None:
                    if cap.finished or cap.error is not None:
                        break
                    continue
                if t0 is None:
                    t0, c0 = time.perf_counter(), time.process_time()
                step(frame)
                n += 1
        finally:
            cap.stop()
        rss.append(rss_mb())
        if n >= limit:
            break
    if t0 is None:
        return Drive(0.0, 0.0, fps, rss)
    return Drive(time.perf_counter() - t0, time.process_time() - c0, fps, rss)


def _stages(timer: StageTimer) -> dict[str, dict[str, float]]:
    return {k: v.to_dict() for k, v in timer.stats().items()}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def measure_pipeline(
    cfg: Config, engine: Engine, detector: FaceDetector, spec: SourceSpec, limit: int, loops: int = 1
) -> Measurement:
    """The monitor's pipeline, as `mask-monitor --video FILE --headless` runs it (without writing files)."""
    timer = StageTimer(window=None)
    stage = InferenceStage(cfg, engine, detector, timer)
    source = stage.source()
    started: dict[int, int] = {}  # track id -> first frame seq
    settle: dict[int, int] = {}  # track id -> frames from its first detection to a settled state
    flags = 0

    def step(frame) -> None:
        nonlocal flags
        result = stage.process(source, frame)
        flags += sum(ev.event == "flag" for ev in result.events)
        for tv in result.tracks:
            started.setdefault(tv.id, result.seq - tv.frames)
            if tv.settled is not None and tv.id not in settle:
                settle[tv.id] = result.seq - started[tv.id]

    rss0 = rss_mb()
    drive = _drive(spec, timer, limit, step, loops)
    lat = np.array(list(settle.values()), dtype=float) / drive.video_fps
    extra = {
        "tracks": len(started),
        "settled_tracks": len(settle),
        "flags": flags,
        "settle_s_median": round(float(np.median(lat)), 3) if lat.size else None,
        "settle_s_max": round(float(lat.max()), 3) if lat.size else None,
        "passes": len(drive.rss_mb),
        "rss_mb_start": _round(rss0),
        "rss_mb_after_first_pass": _round(drive.rss_mb[0]),
        "rss_mb_end": _round(drive.rss_mb[-1]),
        "rss_mb_per_pass": [_round(v) for v in drive.rss_mb],
        "detector_counts": dict(source.counts),
    }
    return Measurement("monitor", timer.frames, drive.wall_s, _stages(timer), extra, drive.cpu_s)


def baseline_model(engine: Engine) -> tuple[Any, str]:
    """PyTorch eager network of the engine's architecture (its own weights if the engine is a .pt file)."""
    # here, not at the top: these import torch, and `mask-monitor --help` imports this module
    import torch

    from engines.backends.torch_backend import TorchEngine
    from engines.models import InferenceModel, create_model, realistic_batchnorm

    if isinstance(engine, TorchEngine):
        return engine.model.to("cpu").eval(), "the engine's own weights"
    torch.manual_seed(0)
    model = create_model(engine.meta.arch, engine.meta.head, pretrained=False)
    # Untrained weights shrink activations into denormal floats, which x86 computes many times slower:
    # BatchNorm statistics of a few batches keep the baseline as fast as a trained network (a fair
    # comparison), without flushing denormals for the whole process (other code in it computes with them).
    realistic_batchnorm(model, engine.meta.input_size)
    return InferenceModel(model, engine.meta.head).eval(), "same architecture, untrained weights"


class NaiveRun:
    """The naive pipeline. Measured in two halves, one before and one after the monitor's run, so a load
    that drifts during the bench (other programs) weighs on both sides alike."""

    def __init__(self, engine: Engine, detector: FaceDetector, spec: SourceSpec) -> None:
        self.model, self.weights = baseline_model(engine)
        self.meta = engine.meta
        self.detector = detector
        self.spec = spec
        self.timer = StageTimer(window=None)
        self.wall_s = self.cpu_s = 0.0

    def _step(self, frame) -> None:
        import torch  # not at the top: `mask-monitor --help` imports this module

        meta, timer = self.meta, self.timer
        with timer.stage("total"):
            with timer.stage("detect"):
                faces = self.detector.detect(frame.image)
            with timer.stage("classify"), torch.inference_mode():
                for face in faces:
                    x = preprocess(
                        [crop_face(frame.image, face.box, meta.crop)], meta.input_size, meta.mean, meta.std
                    )
                    self.model(torch.from_numpy(x))
        timer.frame_done()

    def run(self, limit: int) -> None:
        drive = _drive(self.spec, self.timer, limit, self._step)
        self.wall_s += drive.wall_s
        self.cpu_s += drive.cpu_s

    def measurement(self) -> Measurement:
        return Measurement(
            "naive baseline",
            self.timer.frames,
            self.wall_s,
            _stages(self.timer),
            {"baseline_weights": self.weights},
            self.cpu_s,
        )


def warm_up(engine: Engine, detector: FaceDetector, spec: SourceSpec) -> None:
    """First calls load MTCNN's nets and let the runtimes plan; keep them out of the numbers."""
    dev = open_cv(spec)
    ok, image = dev.read()
    dev.release()
    if not ok:
        raise open_error(spec)
    detector.detect(image)
    geom = engine.meta.crop  # the crop the pipeline will hand over
    engine.classify([np.zeros((geom.height, geom.width, 3), np.uint8)] * 2)


def print_table(results: list[Measurement], ratio: float, video: str, engine_desc: str) -> None:
    table = Table(title=f"mask-monitor bench: {video}\nengine {engine_desc}")
    table.add_column("")
    for m in results:
        table.add_column(m.name, justify="right")
    table.add_row("frames", *(str(m.frames) for m in results))
    table.add_row("frames/s (end to end)", *(f"{m.fps:.1f}" for m in results), style="bold")
    table.add_row("CPU ms per frame", *(f"{m.cpu_ms_per_frame:.1f}" for m in results))
    for stage in ("capture", "detect", "classify", "total"):
        cells = []
        for m in results:
            st = m.stages.get(stage)
            cells.append(f"{st['median_ms']:.1f} / {st['p95_ms']:.1f} ({st['runs']})" if st else "-")
        table.add_row(f"{stage} ms median / p95 (runs)", *cells)
    console = Console()
    console.print(table)
    mon = results[0]
    console.print(
        f"speed-up monitor / naive: [bold]{ratio:.2f}x[/] (target >= 4x); end-to-end "
        f"[bold]{mon.fps:.1f}[/] frames/s (target >= 60 on 640x480 with 1-3 faces)"
    )
    e = mon.extra
    if e.get("settle_s_median") is not None:
        console.print(
            f"tracks {e['tracks']}, settled {e['settled_tracks']}, flags {e['flags']}; time from first "
            f"detection to a settled state: median {e['settle_s_median']} s, max {e['settle_s_max']} s "
            f"of video"
        )
    if e.get("rss_mb_start") is not None:
        line = (
            f"resident memory: {e['rss_mb_start']:.0f} MB at the start, {e['rss_mb_end']:.0f} MB at the end"
        )
        if e["passes"] > 1:
            line += (
                f"; after the first of {e['passes']} passes {e['rss_mb_after_first_pass']:.0f} MB, "
                "growth since "
                f"{e['rss_mb_end'] - e['rss_mb_after_first_pass']:+.0f} MB (target <= 50 MB)"
            )
        console.print(line)
    console.print(
        "[dim]ms per stage: each stage's own runs (detect runs on every Nth frame only); CPU ms per frame: "
        "all threads of the process. Where other programs share the CPU every number here is inflated.[/]"
    )


@dataclass(frozen=True)
class BenchOptions:
    """`mask-monitor bench`'s flags (monitor.cli builds it)."""

    video: Path
    json: Path | None = None
    engine: Path | None = None  # --engine, else config engine.path
    max_frames: int | None = None
    baseline_frames: int = 150
    loops: int = 1
    streams: int | None = None  # --streams N: monitor.bench.streams
    monitor_flags: tuple[str, ...] = ()  # the flags a separate `mask-monitor` process takes too (--streams)


def run_bench(args: BenchOptions, cfg: Config) -> int:
    video = require_file(args.video, "video file")
    # PyTorch's CPU threads for MTCNN before the classifier loads, as `mask-monitor` sets them (see
    # monitor.cli): the baseline runs with the same PyTorch threads, a fair, conservative ratio
    set_torch_threads(cfg.monitor.torch_threads)
    engine = load_classifier(args.engine, cfg)
    detector = create_detector(cfg)
    spec = SourceSpec("video", str(video))
    limit = args.max_frames or 10**9
    warm_up(engine, detector, spec)
    naive_run = NaiveRun(engine, detector, spec)
    n_naive = min(limit, args.baseline_frames)
    naive_run.run(n_naive - n_naive // 2)
    mon = measure_pipeline(cfg, engine, detector, spec, limit, args.loops)
    if n_naive // 2:
        naive_run.run(n_naive // 2)
    naive = naive_run.measurement()
    ratio = mon.fps / naive.fps if naive.fps > 0 else float("inf")
    print_table([mon, naive], ratio, video.name, engine.describe())
    if args.json:
        atomic_write_json(
            args.json,
            {
                "video": str(video),
                "engine": engine.describe(),
                "config": {"monitor": cfg.to_dict()["monitor"], "detector": cfg.to_dict()["detector"]},
                "monitor": mon.to_dict(),
                "naive": naive.to_dict(),
                "speedup": round(ratio, 3),
            },
        )
    return 0
