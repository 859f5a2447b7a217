"""--headless: one line per flag on stdout and one per note (faults, link changes) on stderr, for services
and logs; --bell: the terminal bell on a flag (with or without the screen)."""

from __future__ import annotations

from monitor.decisions.results import Event, FrameResult
from monitor.outputs.base import Context, NoSink
from monitor.outputs.screen import flag_line


class HeadlessLines(NoSink):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def event(self, event: Event) -> None:
        ctx = self.ctx
        if event.event == "flag":
            print(flag_line(event, ctx.source(event.source).live, ctx.named), file=ctx.out, flush=True)
        elif event.event == "link":
            described = ctx.source(event.source).described
            print(f"mask-monitor: {described}: {event.text}", file=ctx.err, flush=True)

    def frame(self, result: FrameResult) -> None:
        where = f"{result.source}: " if self.ctx.named else ""
        for m in result.messages:
            print(f"mask-monitor: {where}{m}", file=self.ctx.err, flush=True)


def sink_for(ctx: Context) -> HeadlessLines | None:
    return HeadlessLines(ctx) if ctx.options.headless else None


class Bell(NoSink):
    def __init__(self, ctx: Context) -> None:
        self.out = ctx.out

    def event(self, event: Event) -> None:
        if event.event == "flag":
            self.out.write("\a")
            self.out.flush()


def bell_for(ctx: Context) -> Bell | None:
    return Bell(ctx) if ctx.options.bell else None
