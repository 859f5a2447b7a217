"""One stage timer for the whole monitor, so the UI and `mask-monitor bench` report the same numbers.

A stage (capture, detect, classify, output, total) is timed each time it runs. Statistics are kept over a
bounded window for a live run (memory stays flat however long it runs), or over everything for a bench.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

STAGES = ("capture", "detect", "classify", "output", "total")


@dataclass(frozen=True)
class StageStats:
    runs: int  # times the stage ran (all time, not just the window)
    median_ms: float  # over the window
    p95_ms: float
    mean_ms_per_frame: float  # all-time total / frames processed: the stage's share of a frame's cost

    def to_dict(self) -> dict[str, float]:
        return {
            "runs": self.runs,
            "median_ms": round(self.median_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "ms_per_frame": round(self.mean_ms_per_frame, 3),
        }


class StageTimer:
    """Thread-safe: the capture thread, the pipeline and the output thread all report here."""

    def __init__(self, window: int | None = 2048) -> None:
        self._lock = threading.Lock()
        self._window = window
        self._samples: dict[str, deque[float]] = {}
        self._runs: dict[str, int] = {}
        self._sums: dict[str, float] = {}
        self._frame_times: deque[float] = deque(maxlen=256)
        self.frames = 0
        self.started = time.perf_counter()
        self.on_add: Callable[[str, float], None] | None = None  # every add(name, ms) too (--metrics)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - t0) * 1000.0)

    def add(self, name: str, ms: float) -> None:
        with self._lock:
            if name not in self._samples:
                self._samples[name] = deque(maxlen=self._window)
                self._runs[name], self._sums[name] = 0, 0.0
            self._samples[name].append(ms)
            self._runs[name] += 1
            self._sums[name] += ms
        if self.on_add is not None:
            self.on_add(name, ms)

    def frame_done(self) -> None:
        with self._lock:
            self.frames += 1
            self._frame_times.append(time.perf_counter())

    def fps(self) -> float:
        """Frames/s over the last few seconds (the UI's number)."""
        with self._lock:
            now = time.perf_counter()
            recent = [t for t in self._frame_times if now - t <= 3.0]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)

    def stats(self) -> dict[str, StageStats]:
        with self._lock:
            out = {}
            for name in sorted(self._samples, key=lambda n: (STAGES.index(n) if n in STAGES else 99, n)):
                arr = np.fromiter(self._samples[name], dtype=np.float64)
                out[name] = StageStats(
                    self._runs[name],
                    float(np.median(arr)),
                    float(np.percentile(arr, 95)),
                    self._sums[name] / max(self.frames, 1),
                )
            return out
