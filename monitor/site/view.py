"""`mask-monitor site --mqtt URL`: every entrance of every machine on one screen, from MQTT.

Each source's retained status fills its panel (the same panels as a monitor with several sources); every
event goes into one merged list of the latest flags and, with `--events FILE`, one merged JSONL file (the
monitor's event keys, `source` and `machine`); with `--metrics [HOST:PORT]` the same Prometheus metrics as
a monitor's, for every source of every machine (monitor.outputs.metrics, `site=True`: the panels, each
flag, compliance from the events). Anyone who can publish under the prefix reaches this view:
every message is checked first (monitor.site.feed.read_site_message); one that fails is counted, said
once, and
skipped.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rich.console import Console, RenderableType

from engines.errors import UserError
from engines.fileio import open_private_append, require_dir
from engines.labels import MASK_DISPLAY, MASK_NAMES
from monitor.broker import MqttUrl
from monitor.config import ComplianceConfig
from monitor.decisions.compliance import Compliance, site_event
from monitor.outputs.screen import MASK_STYLES, LiveScreen, PanelInfo, SourcesScreen, clock
from monitor.site.feed import STATES, SiteFeed
from monitor.sources.link import LinkState


def event_line(e: dict[str, Any]) -> str:
    """A flag as the monitor's headless line reads, from its JSON."""
    t = float(e.get("time", 0.0))
    mask = str(e.get("mask", ""))
    shown = MASK_DISPLAY[MASK_NAMES.index(mask)] if mask in MASK_NAMES else mask
    return (
        f"[{clock(t, t > 1e8)}] {e.get('source', '?')} FLAG person #{e.get('track_id', '?')}: {shown} "
        f"({e.get('gender', '?')}, {e.get('age', '?')}; confidence {float(e.get('confidence', 0.0)):.2f}) "
        f"frame {e.get('frame', '?')}"
    )


def _state(s: dict[str, Any]) -> LinkState:
    """The link's state (checked by read_site_message); from `up` for a monitor that sends no state."""
    if s.get("state") in STATES:
        return LinkState(s["state"])
    return LinkState.UP if s.get("up", True) else LinkState.DOWN


def _panel(name: str, s: dict[str, Any], compliance: Compliance | None = None) -> PanelInfo:
    def num(key: str) -> float:
        v = s.get(key, 0)
        return v if isinstance(v, (int, float)) else 0

    return PanelInfo(
        name,
        float(num("fps")),
        int(num("in_view")),
        (int(num("masked")), int(num("incorrect")), int(num("no_mask"))),
        str(s.get("link", "")),
        _state(s),
        int(num("dropped")),
        str(s.get("machine", "")),
        standing=compliance.standing(f"{name}@{s['machine']}" if s.get("machine") else name)
        if compliance is not None
        else None,
    )


class SiteView:
    """The site's state, fed from paho's thread, rendered from rich's."""

    def __init__(
        self,
        events: Path | None,
        out: IO[str],
        headless: bool,
        max_flags: int = 48,
        metrics: Any = None,
        compliance: Compliance | None = None,
    ) -> None:
        """`metrics`: the started MetricsSink of --metrics (site=True), or None; `compliance`: the view's,
        fed from the events (each panel shows its source's share and alert; --metrics serves the same)."""
        self.metrics = metrics
        self.compliance = compliance if compliance is not None else getattr(metrics, "compliance", None)
        self.status: dict[str, dict[str, Any]] = {}
        self.flags: deque[dict[str, Any]] = deque(maxlen=max_flags)
        self.flag_count = self.event_count = 0
        self.link = "connecting"
        self.bad = 0  # malformed messages skipped
        self.bad_note = ""  # the first one's topic and reason, for the screen
        self.out, self.headless = out, headless
        self.err: IO[str] = sys.stderr
        self._lock = threading.Lock()
        self._fh = None
        if events is not None:
            try:
                self._fh = open(open_private_append(events), "a", encoding="utf-8")  # 0600
            except OSError as exc:
                raise UserError(f"--events {events}: cannot write ({exc.strerror})") from None

    def on_event(self, e: dict[str, Any]) -> None:
        with self._lock:
            self.event_count += 1
            if self._fh is not None:
                self._fh.write(json.dumps(e) + "\n")
                self._fh.flush()
            if e.get("event") == "flag":
                self.flag_count += 1
                self.flags.appendleft(e)
                if self.headless:
                    print(event_line(e), file=self.out, flush=True)
            m = self.metrics
            if m is not None and e.get("event") == "flag" and e.get("mask") in MASK_NAMES:
                m.flag(str(e.get("source", "")), str(e["mask"]), str(e.get("machine", "")))
            if self.compliance is not None:  # every flag and departure (the panels, --metrics)
                site_event(self.compliance, e, time.time())
                self._evaluate()

    def _evaluate(self) -> None:
        for alert in self.compliance.evaluate(time.time()):
            if self.metrics is not None:
                self.metrics.alert(alert)

    def evaluate(self) -> None:
        """Compliance moves with time alone (people leave the window): the run loop calls this."""
        if self.compliance is not None:
            with self._lock:
                self._evaluate()

    def on_status(self, source: str, s: dict[str, Any]) -> None:
        with self._lock:
            before = self.status.get(source, {}).get("up")
            self.status[source] = {**self.status.get(source, {}), **s}
            if self.headless and before != s.get("up", True):
                state = "up" if s.get("up", True) else "down"
                print(
                    f"mask-monitor site: {source}: {state} ({s.get('link', '')})", file=self.out, flush=True
                )

    def on_link(self, text: str) -> None:
        self.link = text
        if self.headless:
            print(f"mask-monitor site: {text}", file=sys.stderr, flush=True)

    def on_bad(self, topic: str, reason: str) -> None:
        """A message that is not the monitor's: counted; the first one is said (never fatal)."""
        with self._lock:
            self.bad += 1
            if self.bad > 1:
                return
            self.bad_note = f"ignored a malformed message on {topic} ({reason}); further ones are counted"
        if self.headless:
            print(f"mask-monitor site: warning: {self.bad_note}", file=self.err, flush=True)

    def panels(self) -> list[PanelInfo]:
        with self._lock:
            return [_panel(name, s, self.compliance) for name, s in sorted(self.status.items())]

    def render(self) -> RenderableType:
        panels = self.panels()
        with self._lock:
            flags = [
                (
                    event_line(e),
                    MASK_STYLES[MASK_NAMES.index(e["mask"])] if e.get("mask") in MASK_NAMES else "",
                )
                for e in self.flags
            ]
            title = f"latest flags of the site ({self.flag_count})"
            notes = [self.link] + ([f"{self.bad} malformed messages: {self.bad_note}"] if self.bad else [])
        return SourcesScreen(panels, flags, title, notes)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


@dataclass(frozen=True)
class SiteOptions:
    """`mask-monitor site`'s flags (monitor.cli builds it, the broker checked before anything connects)."""

    broker: MqttUrl
    events: Path | None = None
    headless: bool = False
    duration: float | None = None
    metrics: tuple[str, int] | None = None  # --metrics [HOST:PORT]
    compliance: ComplianceConfig = ComplianceConfig()  # [compliance], for the metrics' shares and alerts


def _start_metrics(args: SiteOptions, err: IO[str], compliance: Compliance) -> Any:
    """--metrics: serving before anything connects (a port in use is one line: UserError)."""
    if args.metrics is None:
        return None
    from monitor.outputs.metrics import MetricsSink

    metrics = MetricsSink(compliance=compliance, site=True)
    address = metrics.start(*args.metrics)
    print(f"mask-monitor site: metrics: {address}", file=err, flush=True)
    return metrics


def run_site(
    args: SiteOptions,
    console: Console | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """`stop`: set it to end the view (embedding and tests); Ctrl-C and SIGTERM set it too."""
    url = args.broker
    events = args.events
    if events is not None:
        require_dir(events.parent, f"--events {events}: folder")
    err = err or sys.stderr
    compliance = Compliance.from_config(args.compliance)  # [compliance]: the panels' and the metrics'
    metrics = _start_metrics(args, err, compliance)
    try:
        view = SiteView(events, out or sys.stdout, args.headless, metrics=metrics, compliance=compliance)
        view.err = err
        if metrics is not None:
            metrics.attach(view.panels)
        feed = SiteFeed(url, view.on_event, view.on_status, view.on_link, view.on_bad).start()
    except BaseException:
        if metrics is not None:
            metrics.close()
        raise
    stop = stop or threading.Event()
    old = (
        {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        if (threading.current_thread() is threading.main_thread())
        else {}
    )
    t0 = time.monotonic()
    try:
        screen = contextlib.nullcontext() if args.headless else LiveScreen(view, console, 4.0)  # type: ignore[arg-type]
        with screen:
            while not stop.wait(0.2):
                if args.duration is not None and time.monotonic() - t0 >= args.duration:
                    break
                view.evaluate()
    finally:
        feed.stop()
        view.close()
        if metrics is not None:
            metrics.close()
        for s, h in old.items():
            signal.signal(s, h)
    bad = f", {view.bad} malformed messages ignored" if view.bad else ""
    print(
        f"mask-monitor site: {len(view.status)} sources, {view.event_count} events, {view.flag_count} flags"
        f"{bad}",
        file=out or sys.stdout,
        flush=True,
    )
    return 0
