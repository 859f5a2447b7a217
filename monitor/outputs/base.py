"""The one interface of every output: a Sink takes each frame's result and each event, and is closed once.

The output thread (monitor.app) makes the sinks from one list (monitor.outputs.sinks.SINKS) and hands every
item to all of them, in the list's order: for a FrameResult first each of its events to `event()`, then the
result to `frame()`; a link change (an Event of kind "link") to `event()` alone. Nothing here runs on the
frame loop: a sink may write files or talk to the network, but should not block for long.

To add an output (metrics, Home Assistant, evidence, ...):
1. one module in monitor/outputs/ with a class that has `frame`, `event` and `close` (see Sink), and a
   function `sink_for(ctx: Context) -> Sink | None` that returns None where the user did not ask for it
   (a flag of `ctx.options`, a setting of `ctx.cfg`); an error in what the user gave is one UserError;
2. one row in monitor/outputs/sinks.py: SINKS.
`result.source` and `event.source` name the source (always, one source too); `ctx.named` says whether the
monitor watches several, so that what a single-source user sees stays as it was (no names).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from monitor.config import Config
from monitor.decisions.results import Event, FrameResult
from monitor.options import Options


class Sink(Protocol):
    def frame(self, result: FrameResult) -> None:
        """Every processed frame of every source (result.source names it), and at the end one `final`
        result per source with the departures of everyone still in view."""

    def event(self, event: Event) -> None:
        """Every event: a flag, a departure, a change of a source's link (event.link)."""

    def close(self) -> None:
        """Once, at the end (also after a failure): flush and close what the sink holds."""


@dataclass(frozen=True)
class SourceInfo:
    name: str
    live: bool  # camera or stream (the clock is the time of day), else a video file
    fps: float
    described: str  # as lines name it: "video door3.mp4", "stream rtsp://***@10.0.0.5/s"


@dataclass
class Context:
    """What a sink may be made from (monitor.app fills it in once per run)."""

    options: Options
    cfg: Config
    sources: tuple[SourceInfo, ...]
    out: IO[str]  # where headless flag lines go (stdout)
    err: IO[str]  # where headless notes go (stderr)
    note: Callable[[str], None]  # one line for the person watching: the screen, or stderr when headless
    screen: Any = None  # the Live screen's model (monitor.outputs.screen), None when headless
    publisher: Any = None  # the connected MQTT publisher of --mqtt (monitor.outputs.mqtt), or None
    collector: Any = None  # the Collector of --collect (monitor.outputs.collect), or None
    retention: Any = None  # the run's Retention (monitor.outputs.retention)
    on_result: Callable[[FrameResult], None] | None = None  # embedding and tests: every FrameResult
    compliance: Any = None  # the run's Compliance (monitor.decisions.compliance): the alerts sink feeds it
    metrics: Any = None  # the started MetricsSink of --metrics (monitor.outputs.metrics), or None
    zones: dict[str, Any] = field(default_factory=dict)  # source name -> its Zone (evidence draws it)
    evidence: Any = None  # the EvidenceSink of --evidence, once made: the events file and MQTT read its paths
    alert_to: list[Callable[[Any], None]] = field(default_factory=list)  # who takes each compliance Alert
    pause: Callable[[str, bool], None] | None = (
        None  # pause (True) / resume a source by name (Home Assistant)
    )

    @property
    def named(self) -> bool:
        """Several sources: lines, files and events name theirs; one source: none (as it always was)."""
        return len(self.sources) > 1

    def source(self, name: str) -> SourceInfo:
        return next((s for s in self.sources if s.name == name), self.sources[0])


class NoSink:
    """A base for sinks that take only some of the calls."""

    def frame(self, result: FrameResult) -> None:
        pass

    def event(self, event: Event) -> None:
        pass

    def close(self) -> None:
        pass
