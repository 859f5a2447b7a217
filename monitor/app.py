"""The running monitor: capture thread -> pipeline (this thread) -> output thread, joined by bounded queues.

The pipeline never waits on disk or the terminal: events, the recording, saved faces, headless lines and
the Live screen's model are all handled by the output thread. Stopping (end of file, --max-frames,
--duration, Ctrl-C, SIGTERM, `stop()`) always runs the same shutdown: the capture thread is joined, the
tracks still in view are logged as departures, the output queue is drained and every file is closed.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rich.console import Console

from engines.backends.base import Engine
from engines.config import Config
from engines.errors import UserError
from engines.faces import FaceDetector
from monitor.capture import Capture, Frame
from monitor.events import EventLog, FaceSaver, Recorder, annotate
from monitor.pipeline import FrameResult, Pipeline
from monitor.sources import Opener, SourceSpec, open_cv
from monitor.timing import StageTimer
from monitor.ui import Dashboard, LiveScreen, Tally, flag_line, summary_text


@dataclass(frozen=True)
class Options:
    headless: bool = False
    bell: bool = False
    realtime: bool = False
    events: Path | None = None
    save_faces: Path | None = None
    record: Path | None = None
    max_frames: int | None = None
    duration: float | None = None


@dataclass
class RunReport:
    tally: Tally
    frames: int
    wall_s: float
    dropped: int
    reconnects: int
    summary: str
    recorded: int = 0
    signal: int | None = None  # the signal that stopped the run (SIGINT, SIGTERM), if one did


class OutputStopped(RuntimeError):
    """The output thread died (its error is in _Outputs.error); the run stops and reports that error."""


class _Outputs:
    """The output thread and the files it owns."""

    def __init__(
        self,
        options: Options,
        dashboard: Dashboard,
        fps: float,
        out: IO[str],
        err: IO[str],
        live: bool,
        timer: StageTimer,
        on_result: Callable[[FrameResult], None] | None = None,
    ) -> None:
        self.options = options
        self.on_result = on_result
        self.dashboard = dashboard
        self.out, self.err = out, err
        self.live = live
        self.timer = timer
        self.error: BaseException | None = None
        self.events: EventLog | None = None
        self.recorder: Recorder | None = None
        try:
            self.events = EventLog(options.events) if options.events else None
            self.recorder = Recorder(options.record, fps) if options.record else None
            self.saver = FaceSaver(options.save_faces) if options.save_faces else None
        except BaseException:
            self._close_files()  # what was opened before the one that failed leaves no temp file behind
            raise
        self.queue: queue.Queue = queue.Queue(maxsize=16)
        self._thread = threading.Thread(target=self._run, name="outputs", daemon=True)
        self._thread.start()

    def put(self, item: FrameResult | None) -> None:
        """Hand over, never blocking forever: a dead output thread would leave a full queue full."""
        while True:
            if not self._thread.is_alive():
                raise OutputStopped(f"the output thread stopped: {self.error!r}")
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        with contextlib.suppress(OutputStopped):
            self.put(None)
        self._thread.join()
        self._close_files()

    def _close_files(self) -> None:
        """Close every file, each on its own: a full disk under the events log must not cost the video.
        The first failure becomes self.error (reported as one line by failure())."""
        for f in (self.recorder, self.events):
            if f is None:
                continue
            try:
                f.close()
            except OSError as exc:
                self.error = self.error or exc

    def failure(self) -> BaseException | None:
        """What stopped the output thread, as the user should see it (one line where it is their file)."""
        exc = self.error
        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
            where = f" {exc.filename}" if exc.filename else ""
            return UserError(f"writing the outputs{where} failed: {exc.strerror or exc}")
        return exc

    def _run(self) -> None:
        try:
            while (item := self.queue.get()) is not None:
                with self.timer.stage("output"):
                    self._handle(item)
        except BaseException as exc:
            self.error = exc

    def _handle(self, result: FrameResult) -> None:
        for ev in result.events:
            if self.events is not None:
                self.events.write(ev)
            if ev.event != "flag":
                continue
            if self.saver is not None and ev.track_id in result.crops:
                self.saver.save(ev, result.crops[ev.track_id])
            if self.options.headless:
                print(flag_line(ev, self.live), file=self.out, flush=True)
            if self.options.bell:
                self.out.write("\a")
                self.out.flush()
        if self.options.headless:
            for m in result.messages:
                print(f"mask-monitor: {m}", file=self.err, flush=True)
        if self.recorder is not None and not (result.skipped or result.final):
            boxes = [(t.id, t.box, t.settled or t.state, t.fresh) for t in result.tracks]
            self.recorder.write(annotate(result.frame.image, boxes))
        self.dashboard.update(result)
        if self.on_result is not None:
            self.on_result(result)


class Monitor:
    def __init__(
        self,
        cfg: Config,
        spec: SourceSpec,
        engine: Engine | None,
        detector: FaceDetector,
        options: Options = Options(),
        *,
        opener: Opener = open_cv,
        console: Console | None = None,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        on_result: Callable[[FrameResult], None] | None = None,
    ) -> None:
        """`on_result` sees every FrameResult in the output thread (for embedding the monitor, and tests)."""
        self.cfg = cfg
        self.spec = spec
        self.options = options
        self.timer = StageTimer()
        self.capture = Capture(
            spec,
            opener=opener,
            realtime=options.realtime,
            reconnect_initial_s=cfg.monitor.reconnect_initial_s,
            reconnect_max_s=cfg.monitor.reconnect_max_s,
            timer=self.timer,
        )
        self.pipeline = Pipeline(cfg, engine, detector, self.timer, keep_crops=options.save_faces is not None)
        self.console = console
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.dashboard = Dashboard(
            spec.describe(),
            spec.live,
            self.timer,
            cfg.ui.max_rows,
            cfg.ui.max_flags,
            status=lambda: self.capture.status,
            dropped=lambda: self.capture.dropped,
            detect_every=cfg.monitor.detect_every,
        )
        self.on_result = on_result
        self._stop = threading.Event()
        self.started = threading.Event()  # set once the source is open and frames flow

    def stop(self) -> None:
        """Ask the run to end (from any thread or a signal handler); run() then shuts down cleanly."""
        self._stop.set()

    def run(self) -> RunReport:
        self.pipeline.warm_up()
        unknown = [t for t in ("gender", "age") if t not in self.pipeline.decider.known]
        if unknown:  # said once: the model's file says it never learnt these from real labels
            self._say(f"the model was not trained on real {' or '.join(unknown)} labels: shown as '-' (null)")
        outputs = None
        self.capture.start()  # a source that will not open: one UserError, nothing else started
        t0 = time.perf_counter()
        interrupted = False
        self._last = None
        try:
            outputs = _Outputs(
                self.options,
                self.dashboard,
                self.capture.fps,
                self.out,
                self.err,
                self.spec.live,
                self.timer,
                self.on_result,
            )
            with self._signals(), self._screen():
                self.started.set()
                try:
                    self._loop(outputs, t0)
                except KeyboardInterrupt:
                    interrupted = True
                except OutputStopped:
                    pass  # its error is raised below, after the shutdown
        finally:
            self.capture.stop()
            if outputs is not None:
                last = self._last
                with contextlib.suppress(OutputStopped):
                    outputs.put(
                        FrameResult(
                            last or Frame(-1, 0.0, None),
                            self.pipeline.seq,
                            events=self.pipeline.finish(last),
                            final=True,
                        )
                    )
                outputs.close()
        if outputs.error is not None:
            raise outputs.failure()
        wall = time.perf_counter() - t0
        summary = summary_text(
            self.dashboard.tally,
            self.spec.describe(),
            wall,
            self.spec.live,
            self.capture.dropped,
            self.pipeline.faults,
        )
        return RunReport(
            self.dashboard.tally,
            self.pipeline.seq + 1,
            wall,
            self.capture.dropped,
            self.capture.reconnects,
            summary,
            outputs.recorder.frames if outputs.recorder else 0,
            self._signal if self._signal is not None else (signal.SIGINT if interrupted else None),
        )

    _signal: int | None = None
    _last: Frame | None = None  # the last frame processed: its time stamps the departures at the end

    def _loop(self, outputs: _Outputs, t0: float) -> None:
        opts = self.options
        self.capture.status_changes()  # "live" / "playing": nothing to report
        while not self._stop.is_set():
            if opts.max_frames is not None and self.pipeline.seq + 1 >= opts.max_frames:
                break
            if opts.duration is not None and time.perf_counter() - t0 >= opts.duration:
                break
            for status in self.capture.status_changes():
                self._say(status)
            frame = self.capture.get(0.1)
            if frame is None:
                if self.capture.error is not None:
                    self._say(f"capture failed: {self.capture.error}")
                    break
                if self.capture.finished:
                    break
                continue
            self._last = frame
            outputs.put(self.pipeline.process(frame))
        for status in self.capture.status_changes():
            self._say(status)

    def _say(self, message: str) -> None:
        if self.options.headless:
            print(f"mask-monitor: {self.spec.describe()}: {message}", file=self.err, flush=True)
        else:
            self.dashboard.note(message)

    def _screen(self):
        if self.options.headless:
            return contextlib.nullcontext()
        return LiveScreen(self.dashboard, self.console, self.cfg.ui.refresh_hz)

    @contextlib.contextmanager
    def _signals(self):
        """Ctrl-C / SIGTERM ask for a clean stop; a second Ctrl-C interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum, _frame):
            if self._stop.is_set() and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._signal = signum
            self.stop()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)
