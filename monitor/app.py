"""The running monitor: capture threads (one per source) -> one inference stage (this thread) -> output
thread, joined by bounded queues.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rich.console import Console

from engines.backends.base import Engine
from engines.config import Config, with_overrides
from engines.errors import UserError
from engines.faces import FaceDetector
from engines.secrets import redact_url
from monitor.decisions.pipeline import Pipeline, run_round
from monitor.decisions.results import FrameResult
from monitor.inference.timing import StageTimer
from monitor.outputs.collect import Collector, model_sha256
from monitor.outputs.events import EventLog
from monitor.outputs.faces import FaceSaver
from monitor.outputs.mqtt import Publisher
from monitor.outputs.recording import Recorder, annotate, blur_faces
from monitor.outputs.retention import Retention, targets
from monitor.outputs.screen import (
    Dashboard,
    LiveScreen,
    MultiDashboard,
    PanelInfo,
    SourceBoard,
    Tally,
    flag_line,
    multi_summary,
    summary_text,
)
from monitor.sources.capture import Capture, Frame
from monitor.sources.kinds import Opener, Source, SourceSpec, default_name, open_cv, open_error, unique_names


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
    collect: Path | None = None  # --collect DIR: crops of the people the model was unsure of (opt-in)


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
    tallies: dict[str, Tally] = field(default_factory=dict)  # per source name
    collected: int = 0  # crops written to --collect DIR


class OutputStopped(RuntimeError):
    """The output thread died (its error is in _Outputs.error); the run stops and reports that error."""


class _Outputs:
    """The output thread and the files it owns."""

    def __init__(
        self,
        options: Options,
        dashboard: Dashboard | MultiDashboard,
        streams: dict[str, tuple[bool, float]],  # name -> (live, fps)
        multi: bool,
        out: IO[str],
        err: IO[str],
        timer: StageTimer,
        on_result: Callable[[FrameResult], None] | None = None,
        publisher: Publisher | None = None,
        collector: Collector | None = None,
        cfg: Config | None = None,
    ) -> None:
        cfg = cfg or Config()
        self.options = options
        self.blur = cfg.record.blur != "none"  # every face in the recording but flagged people's
        self.retention = Retention(
            targets(cfg, options.collect, options.save_faces, options.record, record_is_dir=multi),
            cfg.monitor.prune_every_s,
        )
        self.collector = collector
        self.on_result = on_result
        self.publisher = publisher
        self.dashboard = dashboard
        self.out, self.err = out, err
        self.streams = streams
        self.live = next(iter(streams.values()))[0]
        self.timer = timer
        self.error: BaseException | None = None
        self.events: EventLog | None = None
        self.recorders: dict[str, Recorder] = {}
        self.saver: FaceSaver | None = None
        try:
            self.events = EventLog(options.events) if options.events else None
            if options.record and multi:  # a folder: one video per source
                for name, (_, fps) in streams.items():
                    self.recorders[name] = Recorder(options.record / f"{name}.mp4", fps)
            elif options.record:
                self.recorders[""] = Recorder(options.record, next(iter(streams.values()))[1])
            self.saver = FaceSaver(options.save_faces) if options.save_faces else None
        except BaseException:
            self._close_files()  # what was opened before the one that failed leaves no temp file behind
            raise
        self.queue: queue.Queue = queue.Queue(maxsize=16 * len(streams))
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
        for f in (*self.recorders.values(), self.events, self.publisher):
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
                    if self.retention.due():  # at start and every monitor.prune_every_s, off the frame loop
                        self._retain()
                    self._handle(item)
        except BaseException as exc:
            self.error = exc

    def _note(self, message: str) -> None:
        if self.options.headless:
            print(f"mask-monitor: {message}", file=self.err, flush=True)
        else:
            self.dashboard.note(message)

    def _retain(self, only: str | None = None) -> None:
        for m in self.retention.run(only):
            self._note(m)
        if self.collector is not None and (only is None or only == "--collect"):
            self.collector.recount()

    def _handle(self, result: FrameResult) -> None:
        live = self.streams[result.source][0] if result.source in self.streams else self.live
        for ev in result.events:
            if self.events is not None:
                self.events.write(ev)
            if self.publisher is not None:
                self.publisher.event(result.source or next(iter(self.streams)), ev)
            if ev.event != "flag":
                continue
            if self.saver is not None and ev.track_id in result.crops:
                before = self.saver.written_bytes
                self.saver.save(ev, result.crops[ev.track_id])
                if self.retention.wrote("--save-faces", self.saver.written_bytes - before):
                    self._retain("--save-faces")  # over [save_faces] max_mb: the oldest crops go now
            if self.options.headless:
                print(flag_line(ev, live), file=self.out, flush=True)
            if self.options.bell:
                self.out.write("\a")
                self.out.flush()
        if self.options.headless:
            for m in result.messages:
                where = f"{result.source}: " if result.source else ""
                print(f"mask-monitor: {where}{m}", file=self.err, flush=True)
        if self.collector is not None:
            for c in result.collect:
                for m in self.collector.offer(c, result.source or next(iter(self.streams))):
                    self._note(m)
        recorder = self.recorders.get(result.source)
        if recorder is not None and not (result.skipped or result.final):
            boxes = [(t.number, t.box, t.settled or t.state, t.fresh) for t in result.tracks]
            image = result.frame.image
            if self.blur:
                image = blur_faces(image, [t.box for t in result.tracks if not t.flagged])
            recorder.write(annotate(image, boxes))
        self.dashboard.update(result)
        if self.on_result is not None:
            self.on_result(result)


@dataclass
class Stream:
    """One source of a running monitor: its capture thread, its pipeline (tracker, votes), its clock."""

    source: Source
    capture: Capture
    pipeline: Pipeline
    timer: StageTimer
    done: bool = False
    last: Frame | None = None  # the last frame processed: its time stamps the departures at the end

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def live(self) -> bool:
        return self.source.spec.live

    def describe(self) -> str:
        return self.source.spec.describe()


def board_for(st: Stream) -> SourceBoard:
    return SourceBoard(
        st.name,
        st.live,
        st.timer,
        status=lambda: st.capture.status,
        dropped=lambda: st.capture.dropped,
    )


def as_sources(spec: SourceSpec | Sequence[Source]) -> list[Source]:
    if isinstance(spec, SourceSpec):
        return [Source(default_name(spec), spec)]
    if not spec:
        raise UserError("no source given: --camera N, --video FILE, --url URL or [[sources]] in the config")
    return unique_names(list(spec))


class Monitor:
    """Watches one source, or several with one inference stage: each round takes the frame that is ready
    from every source (never waiting for a slow or broken one), runs MTCNN on those due as one batch and
    classifies the crops of all of them in one engine call."""

    def __init__(
        self,
        cfg: Config,
        spec: SourceSpec | Sequence[Source],
        engine: Engine | None,
        detector: FaceDetector,
        options: Options = Options(),
        *,
        opener: Opener = open_cv,
        console: Console | None = None,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        on_result: Callable[[FrameResult], None] | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        """`on_result` sees every FrameResult in the output thread (for embedding the monitor, and tests)."""
        self.cfg = cfg
        self.options = options
        self.timer = StageTimer()  # the inference rounds (and, with one source, everything)
        self.wake = threading.Event()
        sources = as_sources(spec)
        self.multi = len(sources) > 1
        self.streams = [self._stream(s, engine, detector, opener) for s in sources]
        self.spec = self.streams[0].source.spec
        self.capture, self.pipeline = self.streams[0].capture, self.streams[0].pipeline
        self.console = console
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.publisher = publisher
        if self.multi:
            self.dashboard: Dashboard | MultiDashboard = MultiDashboard(
                [board_for(s) for s in self.streams], self.timer, cfg.ui.max_flags
            )
        else:
            st = self.streams[0]
            self.dashboard = Dashboard(
                st.describe(),
                st.live,
                self.timer,
                cfg.ui.max_rows,
                cfg.ui.max_flags,
                status=lambda: st.capture.status,
                dropped=lambda: st.capture.dropped,
                detect_every=cfg.monitor.detect_every,
            )
        self.on_result = on_result
        self.collector = (
            Collector(options.collect, cfg.collect, model_sha256(getattr(engine, "path", None)))
            if options.collect is not None
            else None
        )
        self._stop = threading.Event()
        self.started = threading.Event()  # set once the source is open and frames flow
        if publisher is not None:
            publisher.attach(self.panels)

    def panels(self) -> list[PanelInfo]:
        """Each source as its panel (and its MQTT status) shows it."""
        d = self.dashboard
        if isinstance(d, MultiDashboard):
            return d.panels()
        st = self.streams[0]
        link = st.capture.status or "starting"
        up = not any(w in link for w in ("reconnect", "fail", "ended", "starting"))
        in_view = sum(t.confirmed for t in d.tracks)
        counts = tuple(d.tally.counts())
        return [PanelInfo(st.name, self.timer.fps(), in_view, counts, link, up, st.capture.dropped)]  # type: ignore[arg-type]

    def _stream(
        self, source: Source, engine: Engine | None, detector: FaceDetector, opener: Opener
    ) -> Stream:
        cfg = self.cfg
        if source.monitor:
            cfg = with_overrides(cfg, {f"monitor.{k}": v for k, v in source.monitor.items()})
        timer = StageTimer() if self.multi else self.timer
        capture = Capture(
            source.spec,
            opener=opener,
            realtime=self.options.realtime or source.realtime,
            reconnect_initial_s=cfg.monitor.reconnect_initial_s,
            reconnect_max_s=cfg.monitor.reconnect_max_s,
            timer=timer,
        )
        capture.wake = self.wake
        keep = self.options.save_faces is not None
        name = source.name if self.multi else ""  # one source: events and lines exactly as before
        collect = self.options.collect is not None
        pipeline = Pipeline(cfg, engine, detector, timer, keep_crops=keep, name=name, collect=collect)
        return Stream(source, capture, pipeline, timer)

    def stop(self) -> None:
        """Ask the run to end (from any thread or a signal handler); run() then shuts down cleanly. (No
        wake.set() here: a signal handler must not take a lock the interrupted main thread may hold; the loop
        looks at _stop at least every 0.1 s.)"""
        self._stop.set()

    def run(self) -> RunReport:
        self.streams[0].pipeline.warm_up()
        pipeline = self.streams[0].pipeline
        unknown = [t for t in ("gender", "age") if t not in pipeline.model_known]
        if unknown:  # said once: the model's file says it never learnt these from real labels
            self._note(
                f"the model was not trained on real {' or '.join(unknown)} labels: shown as '-' (null)"
            )
        hidden = [
            t for t in ("gender", "age") if t in pipeline.model_known and t not in pipeline.decider.known
        ]
        if hidden:
            self._note(
                f"{' and '.join(hidden)} not estimated (monitor.show_gender_age = false): shown as '-' (null)"
            )
        outputs = None
        started = []
        # a source that will not open: one UserError, nothing else left running; with several sources a live
        # one that is down waits for its link (reconnecting) while the others run
        try:
            for st in self.streams:
                started.append(st.capture.start(wait_if_down=self.multi))
                if st.capture.down_at_start:
                    print(
                        f"mask-monitor: warning: {open_error(st.capture.spec)}; retrying with back-off while "
                        f"the other sources run",
                        file=self.err,
                        flush=True,
                    )
        except BaseException:
            for c in started:
                c.stop()
            raise
        t0 = time.perf_counter()
        interrupted = False
        try:
            outputs = _Outputs(
                self.options,
                self.dashboard,
                {st.name: (st.live, st.capture.fps) for st in self.streams},
                self.multi,
                self.out,
                self.err,
                self.timer,
                self.on_result,
                self.publisher,
                self.collector,
                self.cfg,
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
            for st in self.streams:
                st.capture.stop()
            if outputs is not None:
                self._finish(outputs)
        if outputs.error is not None:
            raise outputs.failure()
        return self._report(outputs, time.perf_counter() - t0, interrupted)

    def _finish(self, outputs: _Outputs) -> None:
        """Departures of everyone still in view, then every file closed."""
        for st in self.streams:
            with contextlib.suppress(OutputStopped):
                outputs.put(
                    FrameResult(
                        st.last or Frame(-1, 0.0, None),
                        st.pipeline.seq,
                        events=st.pipeline.finish(st.last),
                        final=True,
                        source=st.pipeline.name,
                        collect=st.pipeline.take_collected(),
                    )
                )
        outputs.close()

    def _report(self, outputs: _Outputs, wall: float, interrupted: bool) -> RunReport:
        d = self.dashboard
        tallies = d.tallies() if isinstance(d, MultiDashboard) else {self.streams[0].name: d.tally}
        if self.multi:
            summary = multi_summary(
                [
                    (
                        st.name,
                        st.describe(),
                        tallies[st.name],
                        st.live,
                        st.capture.dropped,
                        st.pipeline.faults,
                    )
                    for st in self.streams
                ],
                wall,
            )
        else:
            st = self.streams[0]
            summary = summary_text(
                tallies[st.name], st.describe(), wall, st.live, st.capture.dropped, st.pipeline.faults
            )
        return RunReport(
            tallies[self.streams[0].name],
            sum(st.pipeline.seq + 1 for st in self.streams),
            wall,
            sum(st.capture.dropped for st in self.streams),
            sum(st.capture.reconnects for st in self.streams),
            summary,
            sum(r.frames for r in outputs.recorders.values()),
            self._signal if self._signal is not None else (signal.SIGINT if interrupted else None),
            tallies,
            self.collector.written if self.collector is not None else 0,
        )

    _signal: int | None = None

    def _take(self, opts: Options) -> list[tuple[Stream, Frame]]:
        """The frame that is ready from each source (none from a slow or broken one: no waiting)."""
        items = []
        for st in self.streams:
            for status in st.capture.status_changes():
                self._say(st, status)
            if st.done:
                continue
            if opts.max_frames is not None and st.pipeline.seq + 1 >= opts.max_frames:
                st.done = True
                continue
            frame = st.capture.get(0)
            if frame is not None:
                items.append((st, frame))
            elif st.capture.error is not None:
                self._say(st, f"capture failed: {st.capture.error}")
                st.done = True
            elif st.capture.finished:
                st.done = True
        return items

    def _loop(self, outputs: _Outputs, t0: float) -> None:
        opts = self.options
        for st in self.streams:
            st.capture.status_changes()  # "live" / "playing": nothing to report
        while not self._stop.is_set():
            if opts.duration is not None and time.perf_counter() - t0 >= opts.duration:
                break
            self.wake.clear()
            items = self._take(opts)
            if not items:
                if all(st.done for st in self.streams):
                    break
                self.wake.wait(0.1)
                continue
            results = run_round([(st.pipeline, frame) for st, frame in items], self.timer)
            for (st, frame), result in zip(items, results):
                st.last = frame
                outputs.put(result)
        for st in self.streams:
            for status in st.capture.status_changes():
                self._say(st, status)

    def _note(self, message: str) -> None:
        """A note about the whole run (not one source)."""
        if self.options.headless:
            print(f"mask-monitor: {message}", file=self.err, flush=True)
        else:
            self.dashboard.note(message)

    def _say(self, st: Stream, message: str) -> None:
        message = redact_url(message)
        if self.publisher is not None:
            self.publisher.note(st.name, message)
        if self.options.headless:
            print(f"mask-monitor: {st.describe()}: {message}", file=self.err, flush=True)
        else:
            self.dashboard.note(f"{st.name}: {message}" if self.multi else message)

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
