"""SINKS: every output of a running monitor, one row each, in the order each item reaches them.

A row is (name, factory): the factory takes the run's Context and returns the Sink, or None where the user
did not ask for that output. Adding an output is one module with its Sink and factory (monitor.outputs.base
says how) and one row here.
"""

from __future__ import annotations

from collections.abc import Callable

from monitor.decisions.results import FrameResult
from monitor.outputs import (
    alerts,
    collect,
    events,
    evidence,
    faces,
    headless,
    metrics,
    mqtt,
    recording,
    retention,
    screen,
)
from monitor.outputs.base import Context, NoSink, Sink


class CallbackSink(NoSink):
    """Every FrameResult to a function (embedding the monitor, and tests)."""

    def __init__(self, on_result: Callable[[FrameResult], None]) -> None:
        self.on_result = on_result

    def frame(self, result: FrameResult) -> None:
        self.on_result(result)


def callback_for(ctx: Context) -> CallbackSink | None:
    return CallbackSink(ctx.on_result) if ctx.on_result is not None else None


SINKS: tuple[tuple[str, Callable[[Context], Sink | None]], ...] = (
    ("retention", retention.sink_for),  # first: pruning at start, before anything is written
    ("alerts", alerts.sink_for),  # compliance: the alerts of each frame, before the outputs that write them
    ("evidence", evidence.sink_for),  # --evidence DIR: before the events file and MQTT, which name its files
    ("metrics", metrics.sink_for),  # --metrics [HOST:PORT]
    ("events", events.sink_for),  # --events FILE.jsonl
    ("mqtt", mqtt.sink_for),  # --mqtt URL
    ("headless", headless.sink_for),  # --headless: flag lines, notes
    ("bell", headless.bell_for),  # --bell
    ("faces", faces.sink_for),  # --save-faces DIR
    ("collect", collect.sink_for),  # --collect DIR
    ("record", recording.sink_for),  # --record OUT.mp4|DIR
    ("screen", screen.sink_for),  # the screen's model (the summary and the MQTT status read it too)
    ("callback", callback_for),  # Monitor(on_result=...)
)


def make_sinks(ctx: Context) -> list[Sink]:
    """The sinks this run asked for; if one cannot be made (a file it may not write), those made before it
    are closed (no temp file left behind) and the error is raised."""
    made: list[Sink] = []
    try:
        for _, factory in SINKS:
            sink = factory(ctx)
            if sink is not None:
                made.append(sink)
    except BaseException:
        for s in made:
            try:
                s.close()
            except OSError:
                pass
        raise
    return made
