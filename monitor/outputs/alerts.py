"""Compliance alerts of a running monitor: the share of people without a correct mask per source and for the
site (monitor.decisions.compliance), fed from every frame, its alerts to the screen (or stderr when
headless) and to whoever took them in `Context.alert_to` (the events file, MQTT, metrics).

The clock is the frames' own (seconds into a video file, Unix time for a camera or stream), so a video run
gives the same alerts however fast it is processed.
"""

from __future__ import annotations

from monitor.decisions.compliance import Alert, Compliance, ComplianceSink
from monitor.decisions.results import FrameResult
from monitor.outputs.base import Context


class AlertsSink(ComplianceSink):
    """ComplianceSink on the time of the frame it is given."""

    def __init__(self, compliance: Compliance, ctx: Context) -> None:
        self.ctx = ctx
        self._now = 0.0
        super().__init__(compliance, self._emit, clock=lambda: self._now)

    def frame(self, result: FrameResult) -> None:
        self._now = float(result.frame.time)
        super().frame(result)

    def _emit(self, alert: Alert) -> None:
        self.ctx.note(alert.line())
        for take in self.ctx.alert_to:
            take(alert)


def sink_for(ctx: Context) -> AlertsSink | None:
    return AlertsSink(ctx.compliance, ctx) if ctx.compliance is not None else None
