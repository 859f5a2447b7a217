"""--mqtt: events and status over MQTT (paho-mqtt, imported only when --mqtt is given), for a whole site.

Topics under the URL's prefix: `PREFIX/SOURCE/events` (every flag and departure, the `--events` keys plus
`source`, QoS 1) and `PREFIX/SOURCE/status` (retained: up or down, link, frames/s, people in view, people
seen per mask state, machine). While the broker is away paho keeps the QoS 1 messages in a bounded queue
(`QUEUE_SIZE`) and sends them on reconnecting; beyond it events are dropped, counted, and one warning says so.
A machine's last will marks its sources down if it vanishes without saying goodbye. The broker's address,
TLS and login are monitor.broker's (shared with `mask-monitor site`)."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import IO, Protocol

from monitor.broker import Login, MqttUrl, connect_client, new_client
from monitor.decisions.results import Event
from monitor.outputs.base import Context, NoSink
from monitor.outputs.events import evidence_of
from monitor.outputs.screen import PanelInfo
from monitor.sources.link import LinkState


class Publisher(Protocol):
    def attach(self, snapshot: Callable[[], list[PanelInfo]]) -> None:
        """Where the periodic status of each source comes from (the monitor's panels)."""

    def event(self, source: str, event: Event) -> None:
        """Every flag and departure of `source` (called from the output thread; must not block long)."""

    def link(self, source: str, state: LinkState, text: str) -> None:
        """A change of the source's link (its state, and in words: "reconnecting ...", "ended")."""

    def close(self) -> None:
        """Say every source is down, deliver what is queued (bounded wait), disconnect."""


def connect_publisher(broker: MqttUrl, sources: list[str]) -> Publisher:
    """The broker of --mqtt (monitor.broker.broker_from_args) -> a connected publisher (paho-mqtt is imported
    only here); a login the broker refuses is one UserError."""
    return MqttPublisher(broker, sources)


QUEUE_SIZE = 10000  # events kept while the broker is away


STATUS_EVERY_S = 2.0


class MqttPublisher:
    """monitor.outputs.mqtt.Publisher over MQTT. Never blocks the output thread: paho's own thread sends."""

    def __init__(
        self,
        url: MqttUrl,
        sources: list[str],
        *,
        queue_size: int = QUEUE_SIZE,
        status_every_s: float = STATUS_EVERY_S,
        err: IO[str] | None = None,
    ) -> None:
        self.url, self.sources = url, list(sources)
        self.machine = socket.gethostname()
        self.status_every_s = status_every_s
        self.err = err or sys.stderr
        self.dropped = 0  # events refused by the full queue
        self.published = 0
        self.unsent = 0  # messages still queued when close() gave up
        self.links: dict[str, tuple[LinkState, str]] = dict.fromkeys(
            self.sources, (LinkState.CONNECTING, "starting")
        )
        self.snapshot: Callable[[], list[PanelInfo]] = self._bare_panels
        self.connected = threading.Event()
        self._stop = threading.Event()
        self.client = new_client(url, f"mask-monitor-{self.machine}-{uuid.uuid4().hex[:8]}", queue_size)
        will = {"machine": self.machine, "up": False, "sources": self.sources}
        self.client.will_set(self._machine_topic(), json.dumps(will), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a, **k: self.connected.clear()
        self.login = Login()
        self._said_refused = ""  # a refusal after the start is said once (paho retries meanwhile)
        self._started = False
        reachable = connect_client(self.client, url)
        self.login.check(url, reachable, self._abort)
        self._started = True
        self._thread = threading.Thread(target=self._status_loop, name="mqtt-status", daemon=True)
        self._thread.start()

    def _abort(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _machine_topic(self) -> str:
        return self.url.topic(f"_machines/{self.machine}", "status")

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if not self.login.answer(reason_code):
            if self._started and self._said_refused != self.login.refused:
                self._said_refused = self.login.refused or ""
                print(
                    f"mask-monitor: MQTT broker {self.url.shown} refused the login: {self.login.refused} "
                    "(retrying)",
                    file=self.err,
                    flush=True,
                )
            return
        self._said_refused = ""
        self.connected.set()
        machine = {"machine": self.machine, "up": True, "sources": self.sources}
        client.publish(self._machine_topic(), json.dumps(machine), qos=1, retain=True)
        self._publish_status()

    def _bare_panels(self) -> list[PanelInfo]:
        out = []
        for s in self.sources:
            state, text = self.links.get(s, (LinkState.CONNECTING, ""))
            out.append(PanelInfo(s, 0.0, 0, (0, 0, 0), text, state))
        return out

    # --- the Publisher interface --------------------------------------------------------------------------
    def attach(self, snapshot: Callable[[], list[PanelInfo]]) -> None:
        """Where the retained status comes from (the monitor's panels)."""
        self.snapshot = snapshot

    def event(self, source: str, event: Event, extra: dict | None = None) -> None:
        payload = {**event.to_dict(), "source": source, "machine": self.machine, **(extra or {})}
        self._send(self.url.topic(source, "events"), payload)

    def alert(self, alert) -> None:
        """A compliance Alert: PREFIX/SOURCE/alerts, or PREFIX/_machines/MACHINE/alerts for the site (not on
        the events topics, which the site view reads as flags and departures)."""
        topic = self.url.topic(alert.source or f"_machines/{self.machine}", "alerts")
        self._send(topic, {**alert.to_dict(), "machine": self.machine})

    def _send(self, topic: str, payload: dict) -> None:
        info = self.client.publish(topic, json.dumps(payload), qos=1)
        if info.rc == _queue_full():
            self.dropped += 1
            if self.dropped == 1:
                print(
                    f"mask-monitor: MQTT broker {self.url.host}:{self.url.port} unreachable and "
                    f"{self.queued()} messages queued: further events are dropped and counted",
                    file=self.err,
                    flush=True,
                )
            return
        self.published += 1

    def queued(self) -> int:
        """Messages paho holds that the broker has not acknowledged (paho offers no public count)."""
        return len(getattr(self.client, "_out_messages", {}))

    def link(self, source: str, state: LinkState, text: str) -> None:
        """A link change goes out at once (retained), not at the next periodic status."""
        self.links[source] = (state, text)
        if self.connected.is_set():
            self._publish_status()

    def close(self, timeout: float = 5.0) -> None:
        """Mark every source down (retained), deliver what is queued (at most `timeout` s), disconnect."""
        self._stop.set()
        self._thread.join(timeout)
        panels = self.snapshot()
        for p in panels:
            self._status(
                PanelInfo(p.name, 0.0, 0, p.counts, "down (monitor stopped)", LinkState.DOWN, p.dropped)
            )
        machine = {"machine": self.machine, "up": False, "sources": self.sources}
        self.client.publish(self._machine_topic(), json.dumps(machine), qos=1, retain=True)
        end = time.monotonic() + timeout
        while self.queued() and time.monotonic() < end:  # the broker may come back meanwhile
            time.sleep(0.02)
        self.unsent = self.queued()
        self.client.disconnect()
        self.client.loop_stop()
        if self.dropped:
            print(f"mask-monitor: {self.dropped} events were not sent over MQTT (queue full)", file=self.err)
        if self.unsent:
            print(
                f"mask-monitor: {self.unsent} MQTT messages still undelivered at exit (broker unreachable)",
                file=self.err,
                flush=True,
            )

    # --- status -------------------------------------------------------------------------------------------
    def _status_loop(self) -> None:
        while not self._stop.wait(self.status_every_s):
            if self.connected.is_set():
                self._publish_status()

    def _publish_status(self) -> None:
        try:
            panels = self.snapshot()
        except Exception:  # the status is best effort; events are what must arrive
            return
        for p in panels:
            self._status(p)

    def _status(self, p: PanelInfo) -> None:
        info = {**p.to_dict(), "machine": self.machine}
        self.client.publish(self.url.topic(p.name, "status"), json.dumps(info), qos=1, retain=True)


def _queue_full() -> int:
    import paho.mqtt.client as mqtt

    return mqtt.MQTT_ERR_QUEUE_SIZE


class MqttSink(NoSink):
    """--mqtt: every flag and departure on PREFIX/SOURCE/events, every link change in the retained status."""

    def __init__(self, publisher: Publisher, evidence=None) -> None:
        self.publisher, self.evidence = publisher, evidence

    def event(self, event: Event) -> None:
        if event.person:
            extra = evidence_of(self.evidence, event)
            if extra:
                self.publisher.event(event.source, event, extra)
            else:
                self.publisher.event(event.source, event)
        elif event.link is not None:
            self.publisher.link(event.source, event.link, event.text)

    def close(self) -> None:
        self.publisher.close()


def sink_for(ctx: Context) -> MqttSink | None:
    if ctx.publisher is None:
        return None
    if hasattr(ctx.publisher, "alert"):
        ctx.alert_to.append(ctx.publisher.alert)
    return MqttSink(ctx.publisher, ctx.evidence)
