"""Prometheus metrics: `mask-monitor --metrics [HOST:PORT]` and `mask-monitor site --metrics`.

One `MetricsSink` owns its own CollectorRegistry (never the library's global one) and serves it over HTTP
at http://HOST:PORT/metrics (loopback unless an address is given). What it exports, per source:

| metric | type | from |
| --- | --- | --- |
| mask_monitor_frames_total{source,machine} | counter | every processed frame (frame()) |
| mask_monitor_frames_per_second{source,machine} | gauge | the source's panel (the screen's frames/s) |
| mask_monitor_dropped_frames_total{source,machine} | counter | the panel: frames a live source dropped |
| mask_monitor_people_in_view{source,machine} | gauge | the panel |
| mask_monitor_people_seen{source,machine,mask} | gauge | the panel: people seen per mask state |
| mask_monitor_link_up{source,machine} | gauge | the panel: 1 up, 0 down or reconnecting |
| mask_monitor_flags_total{source,machine,mask} | counter | every flag event |
| mask_monitor_noncompliant_share{source,machine} | gauge | compliance: people without a correct mask |
| mask_monitor_alert{source,machine} | gauge | compliance: 1 while the alert is on |
| mask_monitor_site_noncompliant_share, mask_monitor_site_alert | gauge | the same for the whole site |
| mask_monitor_alerts_total{source,machine} | counter | alerts raised (source "" = the site) |
| mask_monitor_stage_seconds{stage} | histogram | detect and classify time per inference round |
| process_resident_memory_bytes, process_cpu_seconds_total, ... | | the process (Linux) |

The panel values are read at each scrape from `attach(snapshot)`, the same snapshot the screen and the MQTT
status show: a running monitor's sources, or in `mask-monitor site` every source of every machine (its
machine label then names the machine it runs on). Detection and classification run once per inference
round for all sources together (one batch), so their histograms are per round, not per source.
"""

from __future__ import annotations

import errno
import re
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engines.errors import UserError

if TYPE_CHECKING:
    from monitor.decisions.compliance import Alert, Compliance
    from monitor.decisions.results import Event, FrameResult
    from monitor.outputs.screen import PanelInfo

MASKS = ("wear", "incorrect", "not_wear")
STAGES = ("detect", "classify")
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\[\]]*))(?::(?P<port>[^:]*))?$")


def parse_address(text: str | None, host: str = "127.0.0.1", port: int = 9108) -> tuple[str, int]:
    """`--metrics` value -> (host, port): HOST:PORT, :PORT, PORT, HOST, [V6]:PORT; what it leaves out comes
    from [metrics] (`host`, `port`). Bad input is one line naming the flag and the value."""
    text = (text or "").strip()
    if text.isdigit():
        text = f":{text}"
    m = _HOST_PORT.match(text)
    if not m:
        raise UserError(f"--metrics {text!r}: expected HOST:PORT (e.g. 127.0.0.1:9108), :PORT or PORT")
    h = m.group("v6") or m.group("host") or host
    p = m.group("port")
    if p is not None:
        if not p.isdigit() or not 0 <= int(p) <= 65535:
            raise UserError(f"--metrics {text!r}: port {p!r} is not a number in 0-65535")
        port = int(p)
    return h, port


class _Panels:
    """A collector reading the panels (and compliance) at each scrape."""

    def __init__(self, sink: MetricsSink) -> None:
        self.sink = sink

    def describe(self) -> list[Any]:
        return []  # collected at each scrape only (their label sets come and go with the sources)

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.sink
        lab = ["source", "machine"]
        fps = GaugeMetricFamily("mask_monitor_frames_per_second", "Frames processed per second", labels=lab)
        dropped = CounterMetricFamily(
            "mask_monitor_dropped_frames",
            "Frames a live source dropped (the monitor kept the newest)",
            labels=lab,
        )
        in_view = GaugeMetricFamily("mask_monitor_people_in_view", "Confirmed people in view now", labels=lab)
        seen = GaugeMetricFamily(
            "mask_monitor_people_seen", "People seen per settled mask state", labels=[*lab, "mask"]
        )
        up = GaugeMetricFamily("mask_monitor_link_up", "1 while the source delivers frames", labels=lab)
        for p in s.panels():
            key = [p.name, p.machine or s.machine]
            fps.add_metric(key, float(p.fps))
            dropped.add_metric(key, float(p.dropped))
            in_view.add_metric(key, float(p.in_view))
            for mask, n in zip(MASKS, p.counts, strict=True):
                seen.add_metric([*key, mask], float(n))
            up.add_metric(key, 1.0 if p.up else 0.0)
        yield from (fps, dropped, in_view, seen, up)
        c = s.compliance
        if c is None:
            return
        share = GaugeMetricFamily(
            "mask_monitor_noncompliant_share",
            "Share of the people in the rolling window without a correct mask (incorrect or none)",
            labels=lab,
        )
        alert = GaugeMetricFamily("mask_monitor_alert", "1 while the compliance alert is on", labels=lab)
        for name in c.sources():
            st = c.standing(name)
            key = s.split(name)
            if st.share is not None:
                share.add_metric(key, st.share)
            alert.add_metric(key, 1.0 if st.alert else 0.0)
        site = c.standing()
        site_share = GaugeMetricFamily(
            "mask_monitor_site_noncompliant_share", "The same share over every source of the site"
        )
        if site.share is not None:
            site_share.add_metric([], site.share)
        site_alert = GaugeMetricFamily("mask_monitor_site_alert", "1 while the site's compliance alert is on")
        site_alert.add_metric([], 1.0 if site.alert else 0.0)
        yield from (share, alert, site_share, site_alert)


class MetricsSink:
    """A Sink exporting the metrics above from its own registry; `start(host, port)` serves them."""

    def __init__(self, machine: str | None = None, compliance: Compliance | None = None, site: bool = False):
        """`site`: `mask-monitor site` (compliance keys are SOURCE@MACHINE there: compliance.site_event)."""
        from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector

        self.machine = socket.gethostname() if machine is None else machine
        self.compliance, self.site = compliance, site
        self.registry = CollectorRegistry()
        lab = ["source", "machine"]
        self._frames = Counter("mask_monitor_frames", "Frames processed", lab, registry=self.registry)
        self._flags = Counter("mask_monitor_flags", "Flags raised", [*lab, "mask"], registry=self.registry)
        self._alerts = Counter(
            "mask_monitor_alerts",
            "Compliance alerts raised (source '' = the site)",
            lab,
            registry=self.registry,
        )
        self._stage = Histogram(
            "mask_monitor_stage_seconds",
            "Detection and classification time per inference round (all sources of the round)",
            ["stage"],
            buckets=BUCKETS_S,
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes and the rest (Linux)
        self.registry.register(_Panels(self))
        self.snapshot: Callable[[], list[PanelInfo]] = list
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.address = ""

    def attach(self, snapshot: Callable[[], list[PanelInfo]]) -> None:
        """The panels to read at each scrape (the app's panels(), or the site view's)."""
        self.snapshot = snapshot

    def panels(self) -> list[PanelInfo]:
        try:
            return list(self.snapshot())
        except Exception:  # a scrape must never take the monitor down; the panels come back next time
            return []

    def split(self, key: str) -> list[str]:
        """A compliance key as (source, machine) labels."""
        if self.site and "@" in key:
            source, machine = key.rsplit("@", 1)
            return [source, machine]
        return [key, self.machine]

    # --- the Sink interface -----------------------------------------------------------------------------
    def frame(self, result: FrameResult) -> None:
        if not result.final and not result.skipped:
            self._frames.labels(result.source, self.machine).inc()

    def event(self, event: Event) -> None:
        if event.event == "flag":
            self.flag(event.source, event.state.mask_name)

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # --- fed by the wiring --------------------------------------------------------------------------------
    def flag(self, source: str, mask: str, machine: str = "") -> None:
        """A flag (the site view calls this with each flag event it receives)."""
        self._flags.labels(source, machine or self.machine, mask).inc()

    def alert(self, alert: Alert) -> None:
        if alert.event == "alert":
            self._alerts.labels(*self.split(alert.source)).inc()

    def stage(self, name: str, ms: float) -> None:
        """One run of a stage (monitor.timing.StageTimer.add's name and ms); only detect and classify kept."""
        if name in STAGES:
            self._stage.labels(name).observe(ms / 1000.0)

    def start(self, host: str, port: int) -> str:
        """Serve http://HOST:PORT/metrics on a thread of its own; the address (the port is the real one when 0
        was asked). A port in use is one line."""
        from prometheus_client import start_http_server

        where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        try:
            self._server, self._thread = start_http_server(port, host, self.registry)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(
                    f"--metrics {where}: port {port} on {host} is already in use (another monitor?); "
                    "pass --metrics HOST:PORT"
                ) from None
            raise UserError(f"--metrics {where}: cannot listen there ({exc.strerror or exc})") from None
        real = self._server.server_port
        shown = host if ":" not in host else f"[{host}]"
        self.address = f"http://{shown}:{real}/metrics"
        return self.address


def sink_for(ctx: Any) -> MetricsSink | None:
    """--metrics: the sink the app started (it serves from the start); it takes the compliance alerts too."""
    if ctx.metrics is not None:
        ctx.alert_to.append(ctx.metrics.alert)
    return ctx.metrics
