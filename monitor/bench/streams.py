"""`mask-monitor bench --video FILE --streams N`: N copies of a video in ONE monitor (one inference stage:
MTCNN batched over the sources, one classifier call per round) against N separate single-source
`mask-monitor` processes started at the same time, in the same run.

Each copy is read as fast as the monitor takes it (a file source: every frame, in order), so frames/s per
source is what the machine can sustain for that many cameras; a camera at 25 fps needs >= 25 here.

Both sides are compared on one measure: all frames over the span from the first source's start to the last
one's end. Adding up the frames/s each separate process reports over its own run flatters them: they start
seconds apart (importing at once on a few cores) and the first to finish ran part of its time alone.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from engines.device import set_torch_threads
from engines.faces import create_detector
from engines.fileio import atomic_write_json, require_file
from monitor.app import Monitor, Options
from monitor.bench.pipeline import BenchOptions
from monitor.config import Config
from monitor.inference.classifier import engine_path, load_classifier
from monitor.sources.kinds import Source, SourceSpec

_SUMMARY = re.compile(r"(\d+) frames? in ([\d.]+) s \(([\d.]+) frames/s\)")


@dataclass
class StreamsResult:
    name: str
    processes: int
    frames: list[int]  # per source
    fps: list[float]  # per source, over its own run
    wall_s: float  # from the first start to the last end of a measured run
    stages: dict[str, dict[str, float]]

    @property
    def aggregate(self) -> float:
        """All frames over the span in which the sources ran."""
        return sum(self.frames) / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def own_sum(self) -> float:
        """The sum of each source's frames/s over its own run (flattering for separate processes)."""
        return float(sum(self.fps))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "processes": self.processes,
            "frames": self.frames,
            "fps_per_source": [round(v, 2) for v in self.fps],
            "fps_aggregate": round(self.aggregate, 2),
            "fps_sum_of_own_runs": round(self.own_sum, 2),
            "fps_min": round(min(self.fps), 2) if self.fps else 0.0,
            "wall_s": round(self.wall_s, 3),
            "stages": self.stages,
        }


def one_process(cfg: Config, args: BenchOptions, video: Path, n: int) -> StreamsResult:
    """N copies in this process, through the real Monitor (headless, no files written)."""
    set_torch_threads(cfg.monitor.torch_threads)
    engine = load_classifier(args.engine, cfg)
    sources = [Source(f"s{i + 1}", SourceSpec("video", str(video))) for i in range(n)]
    opts = Options(headless=True, max_frames=args.max_frames)
    mon = Monitor(cfg, sources, engine, create_detector(cfg), opts, out=io.StringIO(), err=io.StringIO())
    report = mon.run()
    frames = [report.tallies[s.name].frames for s in sources]
    stats = {k: v.to_dict() for k, v in mon.timer.stats().items()}
    stats["rounds"] = {
        "runs": mon.timer.frames,
        "sources_per_round": round(sum(frames) / max(mon.timer.frames, 1), 2),
    }
    return StreamsResult("one process", 1, frames, [f / report.wall_s for f in frames], report.wall_s, stats)


def separate_processes(
    args: BenchOptions, cfg: Config, video: Path, n: int, flags: tuple[str, ...]
) -> StreamsResult:
    """N `mask-monitor --video FILE --headless` processes at once (with the bench's own config and engine
    flags). Each reports its frames and frames/s (after its start-up); its end is seen here, so its start is
    the end less its run time, and the span runs from the first start to the last end."""
    cmd = [sys.executable, "-m", "monitor", "--video", str(video), "--headless"]
    cmd += ["--engine", str(engine_path(args.engine, cfg)), *flags]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        for _ in range(n)
    ]
    # one reader thread per process keeps its pipes drained; its end time is taken the moment it exits
    ends: list[float] = [0.0] * n
    outs: list[tuple[str, str]] = [("", "")] * n

    def wait(i: int) -> None:
        outs[i] = procs[i].communicate()
        ends[i] = time.perf_counter()

    readers = [threading.Thread(target=wait, args=(i,), daemon=True) for i in range(n)]
    for r in readers:
        r.start()
    for r in readers:
        r.join()
    frames, fps, starts = [], [], []
    for p, (out, err), end in zip(procs, outs, ends):
        m = _SUMMARY.search(out)
        if p.returncode != 0 or m is None:
            raise RuntimeError(f"a separate mask-monitor failed ({p.returncode}): {err.strip()[-300:]}")
        frames.append(int(m.group(1)))
        fps.append(float(m.group(3)))
        # its run time: frames / frames/s where it can (the summary rounds seconds to 0.1 s, a quarter of a
        # short run; frames/s to 0.1 of some tens)
        starts.append(end - (frames[-1] / fps[-1] if fps[-1] > 0 else float(m.group(2))))
    return StreamsResult(f"{n} processes", n, frames, fps, max(ends) - min(starts), {})


def print_streams(one: StreamsResult, sep: StreamsResult, n: int, video: str) -> None:
    table = Table(title=f"mask-monitor bench --streams {n}: {video}")
    table.add_column("")
    table.add_column("one process", justify="right")
    table.add_column(f"{n} separate processes", justify="right")
    table.add_row(
        "frames/s, all sources (all frames / span)",
        f"{one.aggregate:.1f}",
        f"{sep.aggregate:.1f}",
        style="bold",
    )
    table.add_row("sum of each one's own frames/s", f"{one.own_sum:.1f}", f"{sep.own_sum:.1f}")
    for label, fn in (("min", min), ("median", np.median), ("max", max)):
        table.add_row(f"frames/s per source, {label}", f"{fn(one.fps):.1f}", f"{fn(sep.fps):.1f}")
    table.add_row(
        "frames per source", f"{min(one.frames)}-{max(one.frames)}", f"{min(sep.frames)}-{max(sep.frames)}"
    )
    for stage in ("detect", "classify", "total", "output"):
        st = one.stages.get(stage)
        if st:
            table.add_row(
                f"{stage} ms per round, median / p95 (runs)",
                f"{st['median_ms']:.1f} / {st['p95_ms']:.1f} ({st['runs']})",
                "-",
            )
    rounds = one.stages.get("rounds", {})
    table.add_row("sources per inference round", f"{rounds.get('sources_per_round', 0):.2f}", "1")
    console = Console()
    console.print(table)
    ratio = one.aggregate / sep.aggregate if sep.aggregate else float("inf")
    flattered = one.aggregate / sep.own_sum if sep.own_sum else float("inf")
    console.print(
        f"one process / {n} processes: [bold]{ratio:.2f}x[/] aggregate frames/s ({flattered:.2f}x against "
        f"the sum of their own frames/s); slowest source [bold]{min(one.fps):.1f}[/] frames/s in one process "
        "(target >= 25)"
    )
    console.print(
        "[dim]aggregate: all frames over the span from the first start to the last end (a process's start is "
        "its end less the run time it reports). The separate processes start seconds apart and the first to "
        "finish ran part of its time alone, so the sum of their own frames/s flatters them. Round stages "
        "cover all sources of a round.[/]"
    )


def run_streams_bench(args: BenchOptions, cfg: Config) -> int:
    """`flags`: the command line's config and engine flags, passed on to the separate processes."""
    video = require_file(args.video, "video file")
    n = args.streams
    sep = separate_processes(args, cfg, video, n, args.monitor_flags)
    one = one_process(cfg, args, video, n)
    print_streams(one, sep, n, video.name)
    if args.json:
        ratio = one.aggregate / sep.aggregate if sep.aggregate else None
        atomic_write_json(
            args.json,
            {
                "video": str(video),
                "streams": n,
                "one": one.to_dict(),
                "separate": sep.to_dict(),
                "ratio": ratio,
                "ratio_to_sum_of_own_runs": one.aggregate / sep.own_sum if sep.own_sum else None,
            },
        )
    return 0
