"""`mask-monitor site`'s side of MQTT: the subscription to every source of every machine under a prefix,
and what it accepts from the broker (every message checked against the monitor's schema first)."""

from __future__ import annotations

import json
import math
import threading
import unicodedata
import uuid
from collections.abc import Callable
from typing import Any

from monitor.broker import Login, MqttUrl, connect_client, new_client
from monitor.sources.link import LinkState


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
        self.client = new_client(url, f"mask-monitor-site-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a, **k: self.subscribed.set()
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = lambda *a, **k: self._link(
            f"broker {self.url.host}:{self.url.port} unreachable: retrying"
        )
        self.client.on_message = self._on_message
        self._last_link = ""
        self.login = Login()
        self._started = False

    def start(self) -> SiteFeed:
        """Connect (a login the broker refuses is one UserError with its reason)."""
        self.login.check(self.url, connect_client(self.client, self.url), self.stop)
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
                        s,
                        {
                            "up": False,
                            "state": "down",
                            "link": "down (machine gone)",
                            "machine": data["machine"],
                        },
                    )
        except BadMessage as exc:
            self._bad(msg.topic, str(exc))
        except Exception as exc:  # a bug of ours with a message we let through: counted, never fatal
            self._bad(msg.topic, f"{exc.__class__.__name__}: {exc}")

    def _bad(self, topic: object, reason: str) -> None:
        self.bad += 1
        self.on_bad(clean_text(str(topic), 200), clean_text(reason, 200))


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


STATES = tuple(s.value for s in LinkState)  # a status's "state" (monitors from before it send "up" alone)
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
        ("source", "link", "machine", "state"),
        {"fps": (0.0, 1e6, False)}
        | {k: (0, BIG, True) for k in ("in_view", "masked", "incorrect", "no_mask", "dropped")},
    )
    if "state" in out and out["state"] not in STATES:
        raise BadMessage(f"state = {_short(d['state'])} is not one of {', '.join(STATES)}")
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
