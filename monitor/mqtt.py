"""Events and status over MQTT (paho-mqtt), for a whole site: many monitors publish, `mask-monitor site`
shows them all.

Topics under the URL's prefix: `PREFIX/SOURCE/events` (every flag and departure, the `--events` keys plus
`source`, QoS 1) and `PREFIX/SOURCE/status` (retained: up or down, link, frames/s, people in view, people
seen per mask state, machine). While the broker is away paho keeps the QoS 1 messages in a bounded queue
(`QUEUE_SIZE`) and sends them on reconnecting; beyond it events are dropped, counted, and one warning says so.
A machine's last will marks its sources down if it vanishes without saying goodbye.

`mqtts://` speaks TLS (the system's CAs, or `--mqtt-ca FILE`); the password comes from the URL, from
`--mqtt-password-file` or from MASK_MONITOR_MQTT_PASSWORD, and is never shown: every line names the broker
as `MqttUrl.shown` (user and password as ***). A broker that refuses the login at start is one UserError with
its reason, not "unreachable".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import ssl
import sys
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from engines.errors import UserError
from engines.fileio import read_password_file, require_file
from engines.secrets import MQTT_PASSWORD_ENV, redact_address
from monitor.events import Event
from monitor.ui import PanelInfo

QUEUE_SIZE = 10000  # events kept while the broker is away
STATUS_EVERY_S = 2.0
LOGIN_WAIT_S = 5.0  # at start, how long to wait for the broker's answer to the login
PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    prefix: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False  # mqtts://
    ca: str | None = None  # --mqtt-ca: the CA file that signed the broker's certificate (None: the system's)

    def topic(self, source: str, kind: str) -> str:
        return f"{self.prefix}/{source}/{kind}" if self.prefix else f"{source}/{kind}"

    @property
    def shown(self) -> str:
        """The broker as every line names it: mqtts://***@host:port/prefix."""
        user = "***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}/{self.prefix}"


def parse_url(url: str) -> MqttUrl:
    """mqtt[s]://[user[:password]@]host[:port][/prefix] (port 1883, 8883 with TLS; prefix "mask-monitor")."""
    u = urlsplit(url)
    shown = redact_address(url)
    if u.scheme not in PORTS or not u.hostname:
        raise UserError(f"--mqtt {shown}: expected mqtt://host[:port][/prefix] or mqtts:// (TLS)")
    try:
        port = u.port or PORTS[u.scheme]
    except ValueError:
        raise UserError(f"--mqtt {shown}: the port is not a number from 1 to 65535") from None
    prefix = u.path.strip("/") or "mask-monitor"
    if any(c in prefix for c in "+#"):
        raise UserError(f"--mqtt {shown}: the prefix may not contain + or #")
    user = unquote(u.username) if u.username else None
    password = unquote(u.password) if u.password else None
    return MqttUrl(u.hostname, port, prefix, user, password, u.scheme == "mqtts")


def add_broker_arguments(p: argparse.ArgumentParser, help: str, required: bool = False) -> None:
    """--mqtt URL, --mqtt-password-file FILE, --mqtt-ca FILE (the monitor's and `site`'s)."""
    p.add_argument("--mqtt", metavar="URL", required=required, help=help)
    p.add_argument(
        "--mqtt-password-file",
        metavar="FILE",
        help=f"the MQTT password: the first line of FILE (or set {MQTT_PASSWORD_ENV}); the URL names the "
        "user",
    )
    p.add_argument(
        "--mqtt-ca",
        metavar="FILE",
        help="the CA certificate (PEM) that signed an mqtts:// broker's (default: the system's CAs)",
    )


def broker_from_args(
    url: str,
    password_file: str | None = None,
    ca: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> MqttUrl:
    """--mqtt URL, --mqtt-password-file FILE and --mqtt-ca FILE -> the broker, checked before anything
    loads. The password: the URL's, else the file's, else MASK_MONITOR_MQTT_PASSWORD (used where the URL
    names a user)."""
    broker = parse_url(url)
    if ca is not None:
        if not broker.tls:
            raise UserError(f"--mqtt-ca {ca}: the broker address {broker.shown} is not mqtts:// (TLS)")
        require_file(ca, "--mqtt-ca file")
        try:
            ssl.create_default_context(cafile=ca)
        except (ssl.SSLError, ValueError) as exc:
            raise UserError(f"--mqtt-ca {ca}: not a PEM certificate file ({exc})") from None
        broker = replace(broker, ca=ca)
    if password_file is not None:
        if broker.password:
            raise UserError(
                f"--mqtt-password-file {password_file}: the address {broker.shown} holds a password too; "
                "give it once (the file keeps it out of `ps` and the shell history)"
            )
        if not broker.username:
            raise UserError(
                f"--mqtt-password-file {password_file}: the address {broker.shown} names no user "
                "(mqtt://USER@host)"
            )
        return replace(broker, password=read_password_file(password_file, "--mqtt-password-file"))
    if broker.username and not broker.password and environ.get(MQTT_PASSWORD_ENV):
        return replace(broker, password=environ[MQTT_PASSWORD_ENV])
    return broker


def _client(url: MqttUrl, client_id: str, queue_size: int = 0):
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if url.username:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        client.tls_set(ca_certs=url.ca)  # None: the system's CAs; the host name is checked either way
    if queue_size:
        client.max_queued_messages_set(queue_size)
    client.reconnect_delay_set(0.25, 5)
    return client


def _connect(client, url: MqttUrl) -> bool:
    """Connect now (then paho's thread keeps the link): True if the broker took the connection; False if it
    cannot be reached now (paho's thread retries). A failed TLS handshake is the user's to fix: one line."""
    try:
        client.connect(url.host, url.port, keepalive=10)
        connected = True
    except ssl.SSLCertVerificationError as exc:
        raise UserError(
            f"--mqtt {url.shown}: the broker's TLS certificate was not accepted ({exc.verify_message}); "
            "give the CA that signed it with --mqtt-ca FILE"
        ) from None
    except ssl.SSLError as exc:
        raise UserError(f"--mqtt {url.shown}: the TLS handshake failed ({exc.reason or exc})") from None
    except ValueError as exc:
        raise UserError(f"--mqtt {url.shown}: {exc}") from None
    except OSError:
        client.connect_async(url.host, url.port, keepalive=10)
        connected = False
    client.loop_start()
    return connected


class _Login:
    """The broker's answer to the login: `answered` once a CONNACK came; `refused`: its reason, if it said
    no."""

    def __init__(self) -> None:
        self.answered = threading.Event()
        self.refused: str | None = None

    def answer(self, reason_code) -> bool:
        """True if the broker accepted the login."""
        failed = bool(getattr(reason_code, "is_failure", False))
        self.refused = str(reason_code) if failed else None
        self.answered.set()
        return not failed

    def check(self, url: MqttUrl, reachable: bool, stop: Callable[[], None]) -> None:
        """At start: a refused login is one UserError with the broker's reason (after `stop()`)."""
        if reachable:
            self.answered.wait(LOGIN_WAIT_S)
        if self.refused is not None:
            stop()
            raise UserError(f"--mqtt {url.shown}: the broker refused the login: {self.refused}")


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
        self.login = _Login()
        self._said_refused = ""  # a refusal after the start is said once (paho retries meanwhile)
        self._started = False
        reachable = _connect(self.client, url)
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
    status (decoded JSON, checked by read_site_message) to the callbacks, in paho's thread; a message that
    fails the check goes to on_bad(topic, reason) instead and is counted in `bad`."""

    def __init__(
        self,
        url: MqttUrl,
        on_event: Callable[[dict[str, Any]], None],
        on_status: Callable[[str, dict[str, Any]], None],
        on_link: Callable[[str], None] = lambda text: None,
        on_bad: Callable[[str, str], None] = lambda topic, reason: None,
    ) -> None:
        self.url = url
        self.on_event, self.on_status, self.on_link, self.on_bad = on_event, on_status, on_link, on_bad
        self.bad = 0  # messages refused (not JSON, not the schema), or that a callback failed on
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
        self.login = _Login()
        self._started = False

    def start(self) -> SiteFeed:
        """Connect (a login the broker refuses is one UserError with its reason)."""
        self.login.check(self.url, _connect(self.client, self.url), self.stop)
        self._started = True
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
        if not self.login.answer(reason_code):
            if self._started:  # at start it is start()'s error
                self._link(f"broker {self.url.host}:{self.url.port} refused the login: {reason_code}")
            return
        self._link(f"connected to {self.url.host}:{self.url.port}")
        client.subscribe([(self.url.topic("+", "events"), 1), (self.url.topic("+", "status"), 1)])
        client.subscribe(self.url.topic("_machines/+", "status"), 1)

    def _on_disconnect(self, *args, **kwargs) -> None:
        self.subscribed.clear()
        if self.login.refused is not None:  # the broker answered: it is reachable, and said no
            return
        self._link(f"broker {self.url.host}:{self.url.port} unreachable: reconnecting")

    def _on_message(self, client, userdata, msg) -> None:
        """Never raises: paho's network thread would end with it, and the site would see nothing more."""
        try:
            kind, source, data = read_site_message(msg.topic, msg.payload)
            if kind == "event":
                self.on_event(data)
            elif kind == "status":
                self.on_status(source, data)
            elif kind == "machine" and not data.get("up", True):  # a machine gone: its sources are down
                for s in data.get("sources", []):
                    self.on_status(
                        s, {"up": False, "link": "down (machine gone)", "machine": data["machine"]}
                    )
        except BadMessage as exc:
            self._bad(msg.topic, str(exc))
        except Exception as exc:  # a bug of ours with a message we let through: counted, never fatal
            self._bad(msg.topic, f"{exc.__class__.__name__}: {exc}")

    def _bad(self, topic: object, reason: str) -> None:
        self.bad += 1
        self.on_bad(clean_text(str(topic), 200), clean_text(reason, 200))


# --- what `site` accepts from the broker -------------------------------------------------------------------
# Anyone who can publish under the prefix can send anything, retained too: every message is checked against
# these schemas, its text freed of control characters, before the site view sees it.

MAX_PAYLOAD = 65536  # bytes; the monitor's messages are a few hundred
MAX_TEXT = 200  # characters kept of any string
MAX_SOURCES = 1000  # sources one machine message may name
MAX_TIME = 1e10  # seconds: an event's time is seconds into a file or a Unix time (before the year 2286)
EVENT_KINDS = ("flag", "left")


class BadMessage(ValueError):
    """A site message that does not fit its schema: counted and reported once, never fatal."""


def clean_text(value: str, limit: int = MAX_TEXT) -> str:
    """`value` without control, format or unassigned characters (no terminal escapes), at most `limit`."""
    return "".join(c for c in value if unicodedata.category(c)[0] != "C")[:limit]


def _text(d: dict[str, Any], key: str, required: bool = False) -> str | None:
    v = d.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str):
        raise BadMessage(f"{key} = {_short(v)} is not text")
    return clean_text(v)


def _number(d: dict[str, Any], key: str, low: float, high: float, whole: bool = False) -> float | int | None:
    v = d.get(key)
    if v is None:
        return None
    ok = isinstance(v, int) if whole else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or not (math.isfinite(v) and low <= v <= high):
        kind = "a whole number" if whole else "a number"
        raise BadMessage(f"{key} = {_short(v)} is not {kind} from {low:g} to {high:g}")
    return v


def _short(v: Any) -> str:
    return clean_text(repr(v), 40)


def _checked(
    d: dict[str, Any], texts: tuple[str, ...], numbers: dict[str, tuple[float, float, bool]]
) -> dict:
    out: dict[str, Any] = {}
    for k in texts:
        if (v := _text(d, k)) is not None:
            out[k] = v
    for k, (low, high, whole) in numbers.items():
        if (v := _number(d, k, low, high, whole)) is not None:
            out[k] = v
    return out


BIG = 2**53  # the largest count or frame number JSON carries exactly


def check_event(d: dict[str, Any]) -> dict[str, Any]:
    """An event as the monitor publishes it (engines' Event.to_dict() + source, machine); only its keys."""
    kind = _text(d, "event", required=True)
    if kind not in EVENT_KINDS:
        raise BadMessage(f"event = {_short(d.get('event'))} is not one of {', '.join(EVENT_KINDS)}")
    if "time" not in d:
        raise BadMessage("no time")
    out = {"event": kind}
    out |= _checked(
        d,
        ("mask", "gender", "age", "source", "machine"),
        {
            "time": (0.0, MAX_TIME, False),
            "frame": (0, BIG, True),
            "track_id": (0, BIG, True),
            "class": (0, 1000, True),
            "confidence": (0.0, 1.0, False),
        },
    )
    box = d.get("box")
    if box is not None:
        if not (isinstance(box, list) and len(box) == 4):
            raise BadMessage(f"box = {_short(box)} is not 4 whole numbers")
        out["box"] = [_number({"box": v}, "box", -BIG, BIG, True) for v in box]
    return out


def check_status(d: dict[str, Any]) -> dict[str, Any]:
    """A source's retained status (PanelInfo.to_dict() + machine)."""
    out = _checked(
        d,
        ("source", "link", "machine"),
        {"fps": (0.0, 1e6, False)}
        | {k: (0, BIG, True) for k in ("in_view", "masked", "incorrect", "no_mask", "dropped")},
    )
    if "up" in d:
        if not isinstance(d["up"], bool):
            raise BadMessage(f"up = {_short(d['up'])} is not true or false")
        out["up"] = d["up"]
    return out


def check_machine(d: dict[str, Any]) -> dict[str, Any]:
    """A machine's status (its last will): {"machine", "up", "sources"}."""
    out = check_status({k: d[k] for k in ("machine", "up") if k in d})
    out.setdefault("machine", "")
    sources = d.get("sources", [])
    if not (
        isinstance(sources, list) and len(sources) <= MAX_SOURCES and all(isinstance(s, str) for s in sources)
    ):
        raise BadMessage(f"sources = {_short(sources)} is not a list of names")
    out["sources"] = [clean_text(s) for s in sources]
    return out


def _depth(v: Any, limit: int) -> bool:
    """Whether a decoded JSON value nests no deeper than `limit`."""
    stack = [(v, 1)]
    while stack:
        x, n = stack.pop()
        if n > limit:
            return False
        if isinstance(x, dict):
            stack += [(y, n + 1) for y in x.values()]
        elif isinstance(x, list):
            stack += [(y, n + 1) for y in x]
    return True


def read_site_message(topic: str, payload: bytes) -> tuple[str, str, dict[str, Any]]:
    """(kind, source, checked data) of a message under the prefix: kind "event", "status" or "machine"
    (source "" for a machine); BadMessage with the reason for anything else."""
    if len(payload) > MAX_PAYLOAD:
        raise BadMessage(f"{len(payload)} bytes (at most {MAX_PAYLOAD})")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadMessage("not JSON") from None
    if not isinstance(data, dict):
        raise BadMessage("not a JSON object")
    if not _depth(data, 4):
        raise BadMessage("nested too deeply")
    parts = topic.split("/")
    if len(parts) < 2:
        raise BadMessage("not a mask-monitor topic")
    if "_machines" in parts[:-1]:
        return "machine", "", check_machine(data)
    source = clean_text(parts[-2])
    if not source:
        raise BadMessage("no source name in the topic")
    if parts[-1] == "events":
        event = check_event(data)
        event.setdefault("source", source)
        return "event", source, event
    if parts[-1] == "status":
        return "status", source, check_status(data)
    raise BadMessage("not a mask-monitor topic")
