"""What a person sees: the rich Live screen, the headless flag lines, and the closing summary.

`Dashboard` gathers everything the screen shows from the FrameResults (in the output thread), one
`SourceBoard` per source, and renders on demand (in rich's refresh thread); `Tally` is what a source saw,
for the summary at the end (`summary_text`, one source or several).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from engines.labels import MASK_DISPLAY
from monitor.decisions.compliance import Compliance, Standing
from monitor.decisions.decide import State
from monitor.decisions.results import Event, FrameResult, TrackView
from monitor.inference.timing import StageTimer
from monitor.outputs.base import Context, NoSink
from monitor.sources.link import LinkState

MASK_STYLES = ("green", "bold yellow", "bold red")  # wear, incorrect, not_wear


def clock(seconds: float, live: bool) -> str:
    """The source clock as people read it: mm:ss.ss into a file, local time of day for a camera."""
    if live:
        return time.strftime("%H:%M:%S", time.localtime(seconds))
    m, s = divmod(max(seconds, 0.0), 60)
    return f"{int(m):02d}:{s:05.2f}"


def flag_line(ev: Event, live: bool, named: bool = False) -> str:
    """A flag as people read it; `named`: with the source's name (a monitor that watches several)."""
    where = f" {ev.source}" if named and ev.source else ""
    return (
        f"[{clock(ev.time, live)}]{where} FLAG person #{ev.track_id}: {MASK_DISPLAY[ev.state.mask]} "
        f"({ev.state.gender_name}, {ev.state.age_name}; confidence {ev.state.confidence:.2f}) "
        f"frame {ev.frame}"
    )


@dataclass
class Tally:
    """Everything the run saw that the summary reports; bounded by the number of people, not frames."""

    people: dict[int, State] = field(default_factory=dict)  # track id -> last settled state
    brief: set[int] = field(default_factory=set)  # tracks that left before their state settled
    flags: list[Event] = field(default_factory=list)
    flag_count: int = 0
    frames: int = 0
    skipped: int = 0

    MAX_FLAGS_KEPT = 1000

    def update(self, result: FrameResult) -> None:
        if not result.final:
            self.frames += 1
            self.skipped += result.skipped
        for t in result.tracks:
            if t.settled is not None and t.confirmed:
                self.people[t.number] = t.settled
        for ev in result.events:
            if ev.event == "flag":
                self.flag_count += 1
                if len(self.flags) < self.MAX_FLAGS_KEPT:
                    self.flags.append(ev)
            elif ev.state.settled:
                self.people[ev.track_id] = ev.state
            elif ev.track_id not in self.people:
                self.brief.add(ev.track_id)

    def counts(self) -> list[int]:
        out = [0, 0, 0]
        for s in self.people.values():
            out[s.mask] += 1
        return out


# pipeline fault kinds shown in the summary ("corrupt" frames appear there already, as "unusable")
FAULT_NAMES = {"size": "frames of another size (resized)", "classify": "classifier failures"}


@dataclass(frozen=True)
class SummaryRow:
    """One source as the summary reports it."""

    name: str
    described: str  # "video door3.mp4", "stream rtsp://***@10.0.0.5/s"
    tally: Tally
    live: bool
    dropped: int = 0
    faults: Mapping[str, int] = field(default_factory=dict)


def _block(row: SummaryRow, wall_s: float, named: bool) -> list[str]:
    tally = row.tally
    c = tally.counts()
    fps = tally.frames / wall_s if wall_s > 0 else 0.0
    frames = f"{tally.frames} frame{'' if tally.frames == 1 else 's'}"
    source = f"{row.name} ({row.described})" if named else row.described
    lines = [
        f"mask-monitor summary: {source}: {frames} in {wall_s:.1f} s ({fps:.1f} frames/s)"
        + (f", {row.dropped} dropped" if row.dropped else "")
        + (f", {tally.skipped} unusable" if tally.skipped else ""),
        f"people seen: {len(tally.people)} (mask: {c[0]}, incorrect mask: {c[1]}, no mask: {c[2]})"
        + (f"; {len(tally.brief)} more too briefly to tell" if tally.brief else ""),
        f"flags: {tally.flag_count}",
    ]
    lines += ["  " + flag_line(ev, row.live, named) for ev in tally.flags]
    shown = {k: n for k, n in row.faults.items() if k in FAULT_NAMES and n}
    if shown:
        lines.append("faults: " + ", ".join(f"{n} {FAULT_NAMES[k]}" for k, n in sorted(shown.items())))
    if tally.flag_count > len(tally.flags):
        lines.append(f"  ... and {tally.flag_count - len(tally.flags)} more")
    return lines


def summary_text(rows: list[SummaryRow], wall_s: float) -> str:
    """The summary at the end: one block per source; with several, each names its source and a line of
    totals follows (one source: its block alone, as it always was)."""
    named = len(rows) > 1
    lines = [line for row in rows for line in _block(row, wall_s, named)]
    if named:
        frames = sum(r.tally.frames for r in rows)
        people = sum(len(r.tally.people) for r in rows)
        flags = sum(r.tally.flag_count for r in rows)
        fps = frames / wall_s if wall_s > 0 else 0.0
        lines.append(
            f"mask-monitor total: {len(rows)} sources, {frames} frames in {wall_s:.1f} s "
            f"({fps:.1f} frames/s), {people} people seen, {flags} flags"
        )
    return "\n".join(lines)


class LiveScreen:
    """rich Live around a Dashboard; a context manager so the terminal is restored on any exit."""

    def __init__(self, dashboard: Any, console: Console | None = None, refresh_hz: float = 8.0) -> None:
        """`dashboard`: anything with render() (Dashboard, the site view)."""
        from rich.live import Live

        self.dashboard = dashboard
        self.live = Live(
            get_renderable=dashboard.render,
            console=console or Console(),
            refresh_per_second=refresh_hz,
            transient=False,
            redirect_stdout=False,
        )

    def __enter__(self) -> LiveScreen:
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)


# --- several sources: one compact panel each, one merged list of flags (Dashboard.render) ---


@dataclass(frozen=True)
class PanelInfo:
    """What one source's panel shows (from a running monitor, or from its MQTT status in the site view)."""

    name: str
    fps: float
    in_view: int
    counts: tuple[int, int, int]  # people seen per mask state: masked, incorrect, none
    link: str  # the link's state in words: "live", "playing", "reconnecting ...", "ended", "down", ...
    state: LinkState = LinkState.UP
    dropped: int = 0
    machine: str = ""
    standing: Standing | None = None  # compliance, its alert (not in the MQTT status: the site has its own)

    @property
    def up(self) -> bool:
        return self.state.up

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.name,
            "up": self.up,
            "link": self.link,
            "state": self.state.value,
            "fps": round(self.fps, 2),
            "in_view": self.in_view,
            "masked": self.counts[0],
            "incorrect": self.counts[1],
            "no_mask": self.counts[2],
            "dropped": self.dropped,
            "machine": self.machine,
        }


PANEL_WIDTH = 38  # columns of one source's panel; as many side by side as the terminal holds
STALLED_S = 2.0  # a source that gave no frame for this long is shown as stalled


def source_panel(info: PanelInfo) -> Panel:
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"{info.fps:5.1f} fps", style="bold cyan")
    t.append(f"  in view {info.in_view}")
    if info.dropped:
        t.append(f"  drop {info.dropped}", style="dim")
    t.append("\n")
    t.append(f"masked {info.counts[0]}", style=MASK_STYLES[0])
    t.append("  ")
    t.append(f"incorrect {info.counts[1]}", style=MASK_STYLES[1])
    t.append("  ")
    t.append(f"none {info.counts[2]}", style=MASK_STYLES[2])
    bad = info.state.alarming or info.state is LinkState.ENDED
    t.append("\n" + info.link, style="bold magenta" if bad else "dim")
    if info.standing is not None:
        t.append("\n")
        compliance_text(t, info.standing)
    title = info.name + (f" @{info.machine}" if info.machine else "")
    alarm = bad or (info.standing is not None and info.standing.alert)
    return Panel(t, title=title, title_align="left", border_style="red" if alarm else "cyan", padding=(0, 1))


def compliance_text(t: Text, standing: Standing) -> None:
    """`compliance 83% of 12` and, while the source's alert is on, `ALERT`."""
    t.append(standing.text(), style="dim" if standing.share is None else "")
    if standing.alert:
        t.append("  ")
        t.append("ALERT", style="bold white on red")


class SourcesScreen:
    """Panels in a grid as wide as the terminal, then the latest flags in the rows that are left: readable
    at 80x24 with 4 sources and at 200x50 with 16."""

    def __init__(self, panels: list[PanelInfo], flags: list[tuple[str, str]], title: str, messages=()):
        self.panels, self.flags, self.title, self.messages = panels, flags, title, list(messages)

    def __rich_console__(self, console: Console, options):
        width = options.max_width
        height = options.height or console.size.height
        cols = max(1, min(len(self.panels), width // PANEL_WIDTH))
        grid = Table.grid(expand=True)
        for _ in range(cols):
            grid.add_column(ratio=1)
        for i in range(0, len(self.panels), cols):
            row = [source_panel(p) for p in self.panels[i : i + cols]]
            grid.add_row(*row, *([""] * (cols - len(row))))
        rows = -(-len(self.panels) // cols)
        tall = 6 if any(p.standing is not None for p in self.panels) else 5  # 3 or 4 lines and the border
        messages = self.messages[-2:]
        room = max(1, height - tall * rows - 2 - len(messages) - 1)
        t = Text(no_wrap=True, overflow="ellipsis")
        for i, (line, style) in enumerate(self.flags[:room]):
            t.append(("\n" if i else "") + line, style=style)
        if not self.flags:
            t.append("no flags yet", style="dim")
        yield grid
        yield Panel(t, title=self.title, border_style="red", padding=(0, 1))
        for m in messages:
            yield Text(m, style="yellow", no_wrap=True, overflow="ellipsis")


class SourceBoard:
    """One source's part of the Dashboard: its clock, link, people in view and what it saw."""

    def __init__(
        self,
        name: str,
        live: bool,
        timer: StageTimer,
        status: Callable[[], str] = lambda: "",
        dropped: Callable[[], int] = lambda: 0,
        link: Callable[[], LinkState] = lambda: LinkState.UP,
        described: str = "",
    ) -> None:
        """`timer`: the source's own (its capture, its frames/s)."""
        self.name, self.live, self.timer = name, live, timer
        self.described = described or name
        self.link = link
        self.status, self.dropped = status, dropped
        self.tally = Tally()
        self.tracks: list[TrackView] = []
        self.in_view = 0
        self.position = ""
        self.flagged: dict[int, int] = {}  # person number -> mask state of its latest flag (in view only)
        self.last_frame = time.monotonic()
        self.standing: Standing | None = None  # its compliance, as of its last frame (Dashboard.update)

    def update(self, result: FrameResult) -> None:
        self.tally.update(result)
        self.tracks = result.tracks
        if not result.final:
            self.in_view = sum(t.confirmed for t in result.tracks)
            self.last_frame = time.monotonic()
            self.position = f"frame {result.frame.index}, {clock(result.frame.time, self.live)}"
        for ev in result.events:
            if ev.event == "flag":
                self.flagged[ev.track_id] = ev.state.mask
            else:
                self.flagged.pop(ev.track_id, None)

    def info(self) -> PanelInfo:
        text, state = self.status() or "starting", self.link()
        idle = time.monotonic() - self.last_frame
        if self.live and idle >= STALLED_S and state is LinkState.UP:
            text, state = f"stalled: no frame for {idle:.0f} s", LinkState.DOWN
        return PanelInfo(
            self.name,
            self.timer.fps(),
            self.in_view,
            tuple(self.tally.counts()),
            text,
            state,
            self.dropped(),
            standing=self.standing,
        )


class Dashboard:
    """The Live screen's model, one source or several (a board each). update() from the output thread,
    render() from rich's refresh thread. A board of one is drawn in full (the source, its stage times, the
    people in view, the latest flags); several as one compact panel each and one merged list of flags."""

    def __init__(
        self,
        boards: list[SourceBoard],
        timer: StageTimer,
        max_rows: int = 12,
        max_flags: int = 8,
        detect_every: int = 3,
        compliance: Compliance | None = None,
    ) -> None:
        """`timer`: the inference stage's (detect, classify, total; rounds/s); `compliance`: the run's (fed by
        the alerts sink before the screen's), each source's share and alert shown on its board."""
        self.boards = {b.name: b for b in boards}
        self.compliance = compliance
        if compliance is not None:
            for b in boards:
                b.standing = compliance.standing(b.name)
        self.timer = timer
        self.max_rows = max_rows
        self.max_flags = max_flags
        self.detect_every = detect_every  # a track unseen for longer than this was missed by a detection
        self.recent_flags: deque[tuple[Event, bool]] = deque(maxlen=max(max_flags, 48))
        self.flag_count = 0
        self.messages: deque[str] = deque(maxlen=4)
        self._lock = threading.Lock()

    @property
    def named(self) -> bool:
        """Several sources: flags and messages name theirs."""
        return len(self.boards) > 1

    def board(self, name: str) -> SourceBoard:
        return self.boards.get(name) or next(iter(self.boards.values()))

    def update(self, result: FrameResult) -> None:
        with self._lock:
            board = self.board(result.source)
            board.update(result)
            if self.compliance is not None:  # read here, in the output thread that feeds it
                board.standing = self.compliance.standing(result.source)
            for ev in result.events:
                if ev.event == "flag":
                    self.flag_count += 1
                    self.recent_flags.appendleft((ev, board.live))
            self.messages.extend(f"{result.source}: {m}" if self.named else m for m in result.messages)

    def note(self, message: str) -> None:
        with self._lock:
            self.messages.append(message)

    def tallies(self) -> dict[str, Tally]:
        return {name: b.tally for name, b in self.boards.items()}

    def panels(self) -> list[PanelInfo]:
        with self._lock:
            return [b.info() for b in self.boards.values()]

    # --- rendering ----------------------------------------------------------------------------------------
    def render(self) -> RenderableType:
        if self.named:
            panels = self.panels()
            with self._lock:
                flags = [
                    (flag_line(ev, live, True), MASK_STYLES[ev.state.mask]) for ev, live in self.recent_flags
                ]
                title = f"latest flags ({self.flag_count}), {self.timer.fps():.1f} rounds/s"
                return SourcesScreen(panels, flags, title, list(self.messages))
        with self._lock:
            board = next(iter(self.boards.values()))
            return Group(self._header(board), self._people(board), self._flags(), *self._messages())

    def _header(self, board: SourceBoard) -> Panel:
        stats = {**self.timer.stats(), **board.timer.stats()}
        stage = "  ".join(
            f"{name} {stats[name].median_ms:.1f}"
            for name in ("capture", "detect", "classify", "total")
            if name in stats
        )
        status = board.status()
        t = Text()
        t.append(f"{board.described}", style="bold")
        t.append(f"   {board.position}\n")
        t.append(f"{board.timer.fps():5.1f} frames/s", style="bold cyan")
        t.append(f"   ms per stage (median): {stage or '-'}")
        drops = board.dropped()
        if drops:
            t.append(f"   dropped {drops}")
        if status:
            t.append("\n" + status, style="bold magenta" if board.link().alarming else "dim")
        c = board.tally.counts()
        t.append(f"\npeople seen {len(board.tally.people)}   ")
        t.append(f"masked {c[0]}", style=MASK_STYLES[0])
        t.append("   ")
        t.append(f"incorrect {c[1]}", style=MASK_STYLES[1])
        t.append("   ")
        t.append(f"no mask {c[2]}", style=MASK_STYLES[2])
        if board.standing is not None:
            t.append("   ")
            compliance_text(t, board.standing)
        return Panel(t, title="mask-monitor", border_style="cyan")

    def _people(self, board: SourceBoard) -> Table:
        tracks = board.tracks
        table = Table(title=f"in view: {len(tracks)}", expand=True, title_justify="left")
        for col in ("person", "mask", "gender", "age", "confidence", "votes", "seen"):
            table.add_column(col)
        for tv in sorted(tracks, key=lambda t: t.id)[: self.max_rows]:
            st = tv.settled or tv.state
            if st is None or not tv.confirmed:
                table.add_row(
                    "new" if not tv.confirmed else f"#{tv.number}",
                    "…",
                    "",
                    "",
                    "",
                    "0",
                    f"{tv.frames} fr",
                    style="dim",
                )
                continue
            style = MASK_STYLES[st.mask] if tv.settled is not None else "dim"
            mark = " FLAG" if tv.number in board.flagged else ""
            table.add_row(
                f"#{tv.number}",
                MASK_DISPLAY[st.mask] + mark,
                st.gender_name,
                st.age_name,
                f"{st.confidence:.2f}",
                str(st.votes) + ("" if st.settled else "?"),
                f"{tv.frames} fr" + (f" (lost {tv.missed})" if tv.missed >= self.detect_every else ""),
                style=style,
            )
        if len(tracks) > self.max_rows:
            table.caption = f"... {len(tracks) - self.max_rows} more"
        return table

    def _flags(self) -> Panel:
        t = Text()
        shown = list(self.recent_flags)[: self.max_flags]
        for i, (ev, live) in enumerate(shown):
            t.append(("\n" if i else "") + flag_line(ev, live), style=MASK_STYLES[ev.state.mask])
        if not shown:
            t.append("no flags yet", style="dim")
        return Panel(t, title=f"latest flags ({self.flag_count})", border_style="red")

    def _messages(self) -> list[Text]:
        return [Text(m, style="yellow") for m in self.messages]


class ScreenSink(NoSink):
    """The screen's model (Dashboard): what the Live screen, the summary and the MQTT
    status read. Fed in every run (headless too: the summary comes from it); link changes are noted on the
    screen (headless: the headless lines say them)."""

    def __init__(self, screen: Dashboard, named: bool, headless: bool) -> None:
        self.screen, self.named, self.headless = screen, named, headless

    def frame(self, result: FrameResult) -> None:
        self.screen.update(result)

    def event(self, event: Event) -> None:
        if event.event == "link" and not self.headless:
            self.screen.note(f"{event.source}: {event.text}" if self.named else event.text)


def sink_for(ctx: Context) -> ScreenSink:
    return ScreenSink(ctx.screen, ctx.named, ctx.options.headless)
