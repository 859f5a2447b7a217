"""The running monitor: capture threads (one per source) -> one inference stage (this thread) -> output
thread, joined by bounded queues.

The inference stage never waits on disk or the terminal: events, the recording, saved faces, headless lines
and the Live screen's model are all handled by the output thread. Stopping (end of file, --max-frames,
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
from typing import IO, Any

from rich.console import Console

from engines.backends.base import Engine
from engines.config import with_overrides
from engines.errors import UserError
from engines.faces import FaceDetector
from engines.secrets import redact_url
from monitor.config import Config
from monitor.decisions.compliance import Compliance
from monitor.decisions.pipeline import SourceDecisions
from monitor.decisions.results import Event, FrameResult
from monitor.decisions.zones import Zone
from monitor.inference.stage import InferenceStage
from monitor.inference.timing import StageTimer
from monitor.options import Options
from monitor.outputs.base import Context, SourceInfo
from monitor.outputs.collect import Collector, model_sha256
from monitor.outputs.mqtt import Publisher
from monitor.outputs.recording import RecordingSink
from monitor.outputs.retention import Retention, targets
from monitor.outputs.screen import (
    Dashboard,
    LiveScreen,
    PanelInfo,
    SourceBoard,
    SummaryRow,
    Tally,
    summary_text,
)
from monitor.outputs.sinks import make_sinks
from monitor.sources.capture import Capture, Frame
from monitor.sources.kinds import Opener, Source, SourceSpec, default_name, open_cv, open_error, unique_names
from monitor.sources.link import LinkState


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
    """The output thread: every FrameResult and link change to every sink (monitor.outputs.sinks.SINKS)."""

    def __init__(self, ctx: Context, timer: StageTimer) -> None:
        self.timer = timer
        self.error: BaseException | None = None
        self.sinks = make_sinks(ctx)
        self.queue: queue.Queue = queue.Queue(maxsize=16 * len(ctx.sources))
        self._thread = threading.Thread(target=self._run, name="outputs", daemon=True)
        self._thread.start()

    @property
    def recorded(self) -> int:
        return sum(s.frames for s in self.sinks if isinstance(s, RecordingSink))

    def put(self, item: FrameResult | Event | None) -> None:
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
        self._close_sinks()

    def _close_sinks(self) -> None:
        """Close every sink, each on its own: a full disk under the events log must not cost the video.
        The first failure becomes self.error (reported as one line by failure())."""
        for s in self.sinks:
            try:
                s.close()
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

    def _handle(self, item: FrameResult | Event) -> None:
        if isinstance(item, Event):  # a change of a source's link
            for s in self.sinks:
                s.event(item)
            return
        for s in self.sinks:  # each sink its events then the frame (evidence is written before the
            for ev in item.events:  # events file names it, alerts before they are written)
                s.event(ev)
            s.frame(item)


@dataclass
class Stream:
    """One source of a running monitor: its capture thread, its tracker and votes, its clock."""

    source: Source
    capture: Capture
    decisions: SourceDecisions
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
        link=lambda: st.capture.link,
        described=st.describe(),
    )


def as_sources(spec: SourceSpec | Sequence[Source]) -> list[Source]:
    if isinstance(spec, SourceSpec):
        return [Source(default_name(spec), spec)]
    if not spec:
        raise UserError("no source given: --camera N, --video FILE, --url URL or [[sources]] in the config")
    return unique_names(list(spec))


class Monitor:
    """Watches N sources (one is N = 1) with one inference stage: each round takes the frame that is ready
    from every source (never waiting for a slow or broken one), runs MTCNN on those due as one batch and
    classifies the crops of all of them in one engine call."""

    def __init__(
        self,
        cfg: Config,
        spec: SourceSpec | Sequence[Source],
        engine: Engine | None,
        detector: FaceDetector,
        options: Options | None = None,
        *,
        opener: Opener = open_cv,
        console: Console | None = None,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        on_result: Callable[[FrameResult], None] | None = None,
        publisher: Publisher | None = None,
        metrics: Any = None,
        zones: dict[str, Zone | None] | None = None,
    ) -> None:
        """`on_result` sees every FrameResult in the output thread (for embedding the monitor, and tests)."""
        self.cfg = cfg
        self.options = options = options or Options()
        self.timer = StageTimer()  # the inference rounds and the output thread
        self.stage = InferenceStage(cfg, engine, detector, self.timer)
        self.wake = threading.Event()
        self.streams = [self._stream(s, opener) for s in as_sources(spec)]
        self.spec = self.streams[0].source.spec
        self.capture, self.decisions = self.streams[0].capture, self.streams[0].decisions
        self.console = console
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.publisher = publisher
        # compliance alerts always (each source's share and alert on the screen); --metrics started by the
        # caller; zones per source name
        self.compliance = Compliance.from_config(cfg.compliance)
        self.dashboard = Dashboard(
            [board_for(s) for s in self.streams],
            self.timer,
            cfg.ui.max_rows,
            cfg.ui.max_flags,
            detect_every=cfg.monitor.detect_every,
            compliance=self.compliance,
        )
        self.on_result = on_result
        self.metrics, self.zones = metrics, {k: z for k, z in (zones or {}).items() if z is not None}
        for st in self.streams:
            st.decisions.zone = self.zones.get(st.name)
        if metrics is not None:
            metrics.compliance = self.compliance
            metrics.attach(self.panels)
            self.timer.on_add = metrics.stage
        self.collector = (
            Collector(options.collect, cfg.collect, model_sha256(getattr(engine, "path", None)))
            if options.collect is not None
            else None
        )
        self._stop = threading.Event()
        self.started = threading.Event()  # set once the source is open and frames flow
        if publisher is not None:
            publisher.attach(self.panels)

    @property
    def named(self) -> bool:
        """Several sources: outputs name theirs, --record takes a folder, and a live source that is down
        at the start waits for its link while the others run (one source: it is the run, so it fails)."""
        return len(self.streams) > 1

    def panels(self) -> list[PanelInfo]:
        """Each source as its panel (and its MQTT status) shows it."""
        return self.dashboard.panels()

    def pause(self, name: str, paused: bool) -> None:
        """Drop the frames of source `name` before detection (its capture keeps reading), or resume."""
        for st in self.streams:
            if st.name == name:
                st.capture.pause(paused)

    def _stream(self, source: Source, opener: Opener) -> Stream:
        cfg = self.cfg
        if source.monitor:
            cfg = with_overrides(cfg, {f"monitor.{k}": v for k, v in source.monitor.items()})
        timer = StageTimer()  # the source's own: its capture, its frames/s
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
        name = source.name
        collect = self.options.collect is not None
        decisions = self.stage.source(name, cfg, keep_crops=keep, collect=collect)
        return Stream(source, capture, decisions, timer)

    def stop(self) -> None:
        """Ask the run to end (from any thread or a signal handler); run() then shuts down cleanly. (No
        wake.set() here: a signal handler must not take a lock the interrupted main thread may hold; the loop
        looks at _stop at least every 0.1 s.)"""
        self._stop.set()

    def run(self) -> RunReport:
        self.stage.warm_up()
        model_tasks, shown = self.stage.model_tasks, self.stage.shown_tasks
        unknown = [t for t in ("gender", "age") if t not in model_tasks]
        if unknown:  # said once: the model's file says it never learnt these from real labels
            self._note(
                f"the model was not trained on real {' or '.join(unknown)} labels: shown as '-' (null)"
            )
        hidden = [t for t in ("gender", "age") if t in model_tasks and t not in shown]
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
                started.append(st.capture.start(wait_if_down=self.named))
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
            opts = self.options
            ctx = Context(
                opts,
                self.cfg,
                tuple(SourceInfo(st.name, st.live, st.capture.fps, st.describe()) for st in self.streams),
                self.out,
                self.err,
                self._note,
                screen=self.dashboard,
                publisher=self.publisher,
                collector=self.collector,
                retention=Retention(
                    targets(self.cfg, opts.collect, opts.save_faces, opts.record, self.named, opts.evidence),
                    self.cfg.monitor.prune_every_s,
                ),
                on_result=self.on_result,
                compliance=self.compliance,
                metrics=self.metrics,
                zones=self.zones,
                pause=self.pause,  # Home Assistant's pause / resume buttons
            )
            outputs = _Outputs(ctx, self.timer)
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
                        st.decisions.seq,
                        events=st.decisions.finish(st.last),
                        final=True,
                        source=st.name,
                        collect=st.decisions.take_collected(),
                    )
                )
        outputs.close()

    def _report(self, outputs: _Outputs, wall: float, interrupted: bool) -> RunReport:
        tallies = self.dashboard.tallies()
        summary = summary_text(
            [
                SummaryRow(
                    st.name, st.describe(), tallies[st.name], st.live, st.capture.dropped, st.decisions.faults
                )
                for st in self.streams
            ],
            wall,
        )
        return RunReport(
            tallies[self.streams[0].name],
            sum(st.decisions.seq + 1 for st in self.streams),
            wall,
            sum(st.capture.dropped for st in self.streams),
            sum(st.capture.reconnects for st in self.streams),
            summary,
            outputs.recorded,
            self._signal if self._signal is not None else (signal.SIGINT if interrupted else None),
            tallies,
            self.collector.written if self.collector is not None else 0,
        )

    _signal: int | None = None

    def _take(self, opts: Options, outputs: _Outputs) -> list[tuple[Stream, Frame]]:
        """The frame that is ready from each source (none from a slow or broken one: no waiting)."""
        items = []
        for st in self.streams:
            for link, text in st.capture.link_changes():
                self._say(outputs, st, link, text)
            if st.done:
                continue
            if opts.max_frames is not None and st.decisions.seq + 1 >= opts.max_frames:
                st.done = True
                continue
            frame = st.capture.get(0)
            if frame is not None:
                items.append((st, frame))
            elif st.capture.error is not None:
                self._say(outputs, st, LinkState.DOWN, f"capture failed: {st.capture.error}")
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
            items = self._take(opts, outputs)
            if not items:
                if all(st.done for st in self.streams):
                    break
                self.wake.wait(0.1)
                continue
            results = self.stage.run_round([(st.decisions, frame) for st, frame in items])
            for (st, frame), result in zip(items, results):
                st.last = frame
                st.timer.frame_done()
                outputs.put(result)
        for st in self.streams:
            for link, text in st.capture.link_changes():
                self._say(outputs, st, link, text)

    def _note(self, message: str) -> None:
        """A note about the whole run (not one source)."""
        if self.options.headless:
            print(f"mask-monitor: {message}", file=self.err, flush=True)
        else:
            self.dashboard.note(message)

    def _say(self, outputs: _Outputs, st: Stream, link: LinkState, text: str) -> None:
        """A change of a source's link, to every sink (the headless line, the screen, the MQTT status)."""
        outputs.put(Event.link_change(st.name, link, redact_url(text)))

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
