"""Events and status over MQTT (paho-mqtt), for a whole site: many monitors publish, `mask-monitor site`
shows them all.

Topics under the URL's prefix: `PREFIX/SOURCE/events` (every flag and departure, the `--events` keys plus
`source`, QoS 1) and `PREFIX/SOURCE/status` (retained: up or down, link, frames/s, people in view, people
seen per mask state, machine). While the broker is away paho keeps the QoS 1 messages in a bounded queue
(`QUEUE_SIZE`) and sends them on reconnecting; beyond it events are dropped, counted, and one warning says so.
A machine's last will marks its sources down if it vanishes without saying goodbye.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from engines.errors import UserError
from monitor.events import Event
from monitor.ui import PanelInfo

QUEUE_SIZE = 10000  # events kept while the broker is away
STATUS_EVERY_S = 2.0


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    prefix: str
    username: str | None = None
    password: str | None = None

    def topic(self, source: str, kind: str) -> str:
        return f"{self.prefix}/{source}/{kind}" if self.prefix else f"{source}/{kind}"


def parse_url(url: str) -> MqttUrl:
    """mqtt://[user:password@]host[:port][/prefix] (port 1883 by default, prefix "mask-monitor")."""
    u = urlsplit(url)
    if u.scheme != "mqtt" or not u.hostname:
        raise UserError(f"--mqtt {url}: expected mqtt://host[:port][/prefix]")
    try:
        port = u.port or 1883
    except ValueError:
        raise UserError(f"--mqtt {url}: the port is not a number from 1 to 65535") from None
    prefix = u.path.strip("/") or "mask-monitor"
    if any(c in prefix for c in "+#"):
        raise UserError(f"--mqtt {url}: the prefix may not contain + or #")
    user = unquote(u.username) if u.username else None
    password = unquote(u.password) if u.password else None
    return MqttUrl(u.hostname, port, prefix, user, password)


def _client(url: MqttUrl, client_id: str, queue_size: int = 0):
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if url.username:
        client.username_pw_set(url.username, url.password)
    if queue_size:
        client.max_queued_messages_set(queue_size)
    client.reconnect_delay_set(0.25, 5)
    return client


class MqttPublisher:
    """monitor.publish.Publisher over MQTT. Never blocks the output thread: paho's own thread sends."""

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
        self.links: dict[str, str] = dict.fromkeys(self.sources, "starting")
        self.snapshot: Callable[[], list[PanelInfo]] = self._bare_panels
        self.connected = threading.Event()
        self._stop = threading.Event()
        self.client = _client(url, f"mask-monitor-{self.machine}-{uuid.uuid4().hex[:8]}", queue_size)
        will = {"machine": self.machine, "up": False, "sources": self.sources}
        self.client.will_set(self._machine_topic(), json.dumps(will), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a, **k: self.connected.clear()
        try:
            self.client.connect_async(url.host, url.port, keepalive=10)
        except (OSError, ValueError) as exc:
            raise UserError(f"--mqtt {url.host}:{url.port}: {exc}") from None
        self.client.loop_start()
        self._thread = threading.Thread(target=self._status_loop, name="mqtt-status", daemon=True)
        self._thread.start()

    def _machine_topic(self) -> str:
        return self.url.topic(f"_machines/{self.machine}", "status")

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if getattr(reason_code, "is_failure", False):
            return
        self.connected.set()
        machine = {"machine": self.machine, "up": True, "sources": self.sources}
        client.publish(self._machine_topic(), json.dumps(machine), qos=1, retain=True)
        self._publish_status()

    def _bare_panels(self) -> list[PanelInfo]:
        return [PanelInfo(s, 0.0, 0, (0, 0, 0), self.links.get(s, "")) for s in self.sources]

    # --- the Publisher interface --------------------------------------------------------------------------
    def attach(self, snapshot: Callable[[], list[PanelInfo]]) -> None:
        """Where the retained status comes from (the monitor's panels)."""
        self.snapshot = snapshot

    def event(self, source: str, event: Event) -> None:
        payload = {**event.to_dict(), "source": source, "machine": self.machine}
        info = self.client.publish(self.url.topic(source, "events"), json.dumps(payload), qos=1)
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

    def note(self, source: str, message: str) -> None:
        """A link change goes out at once (retained), not at the next periodic status."""
        self.links[source] = message
        if self.connected.is_set():
            self._publish_status()

    def close(self, timeout: float = 5.0) -> None:
        """Mark every source down (retained), deliver what is queued (at most `timeout` s), disconnect."""
        self._stop.set()
        self._thread.join(timeout)
        panels = self.snapshot()
        for p in panels:
            self._status(PanelInfo(p.name, 0.0, 0, p.counts, "down (monitor stopped)", False, p.dropped))
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


class SiteFeed:
    """`mask-monitor site`: subscribes to every source of every machine under a prefix; hands each event and
    status (decoded JSON) to the callbacks, in paho's thread."""

    def __init__(
        self,
        url: MqttUrl,
        on_event: Callable[[dict[str, Any]], None],
        on_status: Callable[[str, dict[str, Any]], None],
        on_link: Callable[[str], None] = lambda text: None,
    ) -> None:
        self.url = url
        self.on_event, self.on_status, self.on_link = on_event, on_status, on_link
        self.subscribed = threading.Event()
        self.client = _client(url, f"mask-monitor-site-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a, **k: self.subscribed.set()
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = lambda *a, **k: self._link(
            f"broker {self.url.host}:{self.url.port} unreachable: retrying"
        )
        self.client.on_message = self._on_message
        self._last_link = ""

    def start(self) -> SiteFeed:
        try:
            self.client.connect_async(self.url.host, self.url.port, keepalive=10)
        except (OSError, ValueError) as exc:
            raise UserError(f"--mqtt {self.url.host}:{self.url.port}: {exc}") from None
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _link(self, text: str) -> None:
        """Report a change of the broker link once (paho retries every few seconds while it is away)."""
        if text != self._last_link:
            self._last_link = text
            self.on_link(text)

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if getattr(reason_code, "is_failure", False):
            self._link(f"broker refused: {reason_code}")
            return
        self._link(f"connected to {self.url.host}:{self.url.port}")
        client.subscribe([(self.url.topic("+", "events"), 1), (self.url.topic("+", "status"), 1)])
        client.subscribe(self.url.topic("_machines/+", "status"), 1)

    def _on_disconnect(self, *args, **kwargs) -> None:
        self.subscribed.clear()
        self._link(f"broker {self.url.host}:{self.url.port} unreachable: reconnecting")

    def _on_message(self, client, userdata, msg) -> None:
        try:
            data = json.loads(msg.payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return  # not ours
        if not isinstance(data, dict):
            return
        parts = msg.topic.split("/")
        if msg.topic.endswith("/events"):
            self.on_event(data)
        elif "_machines" in parts:
            if not data.get("up", True):  # a machine gone: its sources are down
                for s in data.get("sources", []):
                    self.on_status(
                        str(s),
                        {"up": False, "link": "down (machine gone)", "machine": data.get("machine", "")},
                    )
        elif msg.topic.endswith("/status") and len(parts) >= 2:
            self.on_status(parts[-2], data)
