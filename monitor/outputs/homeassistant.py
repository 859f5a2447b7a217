"""Home Assistant over MQTT: discovery messages (a site shows up with no YAML) and each source's states.

For each source, retained config messages under `DISCOVERY/COMPONENT/mask_monitor_MACHINE/SOURCE_KEY/config`
(`[homeassistant] discovery_prefix`, "homeassistant" by default) describe these entities, all of one device
per machine (`mask-monitor MACHINE`), all read from one retained JSON state, `PREFIX/SOURCE/ha/state`:

| entity | component | state |
| --- | --- | --- |
| People in view | sensor | confirmed people in view now |
| Masked / Incorrect mask / No mask seen | sensor | people seen per settled mask state, since the start |
| Compliance | sensor (%) | people with a correct mask among those in the rolling window (unknown: none) |
| Link | binary_sensor (connectivity) | the source delivers frames |
| Compliance alert | binary_sensor (problem) | the compliance alert is on |
| Last flag | sensor | "person #2: no mask (frame 96)" |
| Pause, Resume | button | publish `pause` / `resume` on `PREFIX/SOURCE/ha/command` |

Every entity is available while its machine is: the availability topic is the machine's status
(`PREFIX/_machines/MACHINE/status`, `{"up": true|false}`), which the monitor's MQTT publisher keeps and its
last will marks down. States go out when they change, at most every `min_interval_s` per source (a flag, a
change of link or alert at once). Publishing goes through a `publish(topic, payload, retain)` callable (the
monitor's MQTT publisher); commands come back through `handle(topic, payload)`.

Wired (`sink_for`) with `--mqtt` and `[homeassistant] enabled = true`: the publisher's `publish`, its
subscription to the command topics, and its periodic status (`status(panels)`: each source's link, and what
changed with time alone); a button press pauses or resumes the source (`Context.pause`).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.decisions.compliance import Compliance
    from monitor.decisions.results import Event, FrameResult

Publish = Callable[[str, str, bool], None]
COMMANDS = ("pause", "resume")
SHOWN = {"wear": "mask", "incorrect": "incorrect mask", "not_wear": "no mask"}

# (component, key, name, template or None (buttons), extra config)
ENTITIES: tuple[tuple[str, str, str, str | None, dict[str, Any]], ...] = (
    ("sensor", "in_view", "People in view", "{{ value_json.in_view }}", {"state_class": "measurement"}),
    ("sensor", "masked", "Masked seen", "{{ value_json.masked }}", {"state_class": "total_increasing"}),
    (
        "sensor",
        "incorrect",
        "Incorrect mask seen",
        "{{ value_json.incorrect }}",
        {"state_class": "total_increasing"},
    ),
    ("sensor", "no_mask", "No mask seen", "{{ value_json.no_mask }}", {"state_class": "total_increasing"}),
    (
        "sensor",
        "compliance",
        "Compliance",
        "{{ value_json.compliance }}",
        {"unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:face-mask"},
    ),
    (
        "binary_sensor",
        "link",
        "Link",
        "{{ 'ON' if value_json.link_up else 'OFF' }}",
        {"device_class": "connectivity"},
    ),
    (
        "binary_sensor",
        "alert",
        "Compliance alert",
        "{{ 'ON' if value_json.alert else 'OFF' }}",
        {"device_class": "problem"},
    ),
    ("sensor", "last_flag", "Last flag", "{{ value_json.last_flag }}", {"icon": "mdi:alert"}),
    ("button", "pause", "Pause", None, {"payload_press": "pause", "icon": "mdi:pause"}),
    ("button", "resume", "Resume", None, {"payload_press": "resume", "icon": "mdi:play"}),
)


def slug(text: str) -> str:
    """What Home Assistant allows in a node or object id."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text)


def _topic(prefix: str, source: str, kind: str) -> str:
    return f"{prefix}/{source}/{kind}" if prefix else f"{source}/{kind}"


def machine_topic(prefix: str, machine: str) -> str:
    """The machine's status, kept by monitor.mqtt.MqttPublisher (and its last will)."""
    return _topic(prefix, f"_machines/{machine}", "status")


def state_topic(prefix: str, source: str) -> str:
    return _topic(prefix, source, "ha/state")


def command_topic(prefix: str, source: str) -> str:
    return _topic(prefix, source, "ha/command")


def device(machine: str) -> dict[str, Any]:
    return {
        "identifiers": [f"mask_monitor_{slug(machine)}"],
        "name": f"mask-monitor {machine}",
        "manufacturer": "mask-monitor",
        "model": "entrance monitor",
    }


def discovery(
    prefix: str, source: str, machine: str, discovery_prefix: str = "homeassistant"
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, config payload) of every entity of one source."""
    node = f"mask_monitor_{slug(machine)}"
    availability = [
        {
            "topic": machine_topic(prefix, machine),
            "value_template": "{{ 'online' if value_json.up else 'offline' }}",
        }
    ]
    out = []
    for component, key, name, template, extra in ENTITIES:
        object_id = f"{slug(source)}_{key}"
        payload: dict[str, Any] = {
            "name": f"{source} {name}",
            "unique_id": f"{node}_{object_id}",
            "object_id": f"mask_monitor_{object_id}",
            "device": device(machine),
            "availability": availability,
            **extra,
        }
        if template is None:
            payload["command_topic"] = command_topic(prefix, source)
        else:
            payload["state_topic"] = state_topic(prefix, source)
            payload["value_template"] = template
        out.append((f"{discovery_prefix}/{component}/{node}/{object_id}/config", payload))
    return out


@dataclass
class _Source:
    people: dict[int, int] = field(default_factory=dict)  # person number -> last settled mask state
    in_view: int = 0
    link_up: bool = True
    last_flag: str = ""
    sent: dict[str, Any] | None = None
    sent_at: float = -float("inf")


class HomeAssistantSink:
    """A Sink publishing each source's discovery (once) and states for Home Assistant."""

    def __init__(
        self,
        publish: Publish,
        prefix: str,
        sources: list[str] | None = None,
        *,
        machine: str | None = None,
        discovery_prefix: str = "homeassistant",
        min_interval_s: float = 1.0,
        compliance: Compliance | None = None,
        on_command: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`on_command(source, "pause" | "resume")`: what a button press does (the wiring pauses the source's
        capture)."""
        self.publish, self.prefix = publish, prefix
        self.machine = socket.gethostname() if machine is None else machine
        self.discovery_prefix, self.min_interval_s = discovery_prefix, min_interval_s
        self.compliance, self.on_command, self.clock = compliance, on_command, clock
        self._sources: dict[str, _Source] = {}
        self._lock = threading.RLock()  # the output thread (frame), the MQTT status thread (status)
        self._closed = False
        for s in sources or []:
            self._add(s)

    def _add(self, source: str) -> _Source:
        if source not in self._sources:
            self._sources[source] = _Source()
            for topic, payload in discovery(self.prefix, source, self.machine, self.discovery_prefix):
                self.publish(topic, json.dumps(payload), True)
            self._send(source, force=True)
        return self._sources[source]

    def state(self, source: str) -> dict[str, Any]:
        st = self._sources[source]
        counts = [0, 0, 0]
        for mask in st.people.values():
            counts[mask] += 1
        standing = self.compliance.standing(source) if self.compliance is not None else None
        compliance = standing.compliance if standing is not None else None
        return {
            "in_view": st.in_view,
            "masked": counts[0],
            "incorrect": counts[1],
            "no_mask": counts[2],
            "compliance": None if compliance is None else round(100.0 * compliance, 1),
            "alert": bool(standing and standing.alert),
            "link_up": st.link_up,
            "last_flag": st.last_flag,
        }

    def _send(self, source: str, force: bool = False) -> None:
        st = self._sources[source]
        now = self.clock()
        state = self.state(source)
        urgent = st.sent is None or any(state[k] != st.sent[k] for k in ("alert", "link_up", "last_flag"))
        if state == st.sent or not (force or urgent or now - st.sent_at >= self.min_interval_s):
            return
        self.publish(state_topic(self.prefix, source), json.dumps(state), True)
        st.sent, st.sent_at = state, now

    # --- the Sink interface -----------------------------------------------------------------------------
    def frame(self, result: FrameResult) -> None:
        """The people in view and seen, and the flags of the frame (FrameResult.events)."""
        with self._lock:
            self._frame(result)

    def _frame(self, result: FrameResult) -> None:
        st = self._add(result.source)
        if not result.final:
            st.in_view = sum(t.confirmed for t in result.tracks)
        for t in result.tracks:
            if t.confirmed and t.number and t.settled is not None:
                st.people[t.number] = t.settled.mask
        for ev in result.events:
            if ev.event == "left" and ev.state.settled and ev.track_id:
                st.people[ev.track_id] = ev.state.mask
            elif ev.event == "flag":
                st.last_flag = f"person #{ev.track_id}: {SHOWN[ev.state.mask_name]} (frame {ev.frame})"
        if result.final:
            st.in_view = 0
        self._send(result.source)

    def event(self, event: Event) -> None:
        """Events come with their frame (FrameResult.events), where they are taken."""

    def close(self) -> None:
        """Every source's link down (before the publisher closes: SINKS has this sink before MQTT's)."""
        with self._lock:
            self._closed = True
            for source, st in self._sources.items():
                st.link_up, st.in_view = False, 0
                self._send(source, force=True)

    # --- fed by the wiring --------------------------------------------------------------------------------
    def link(self, source: str, up: bool) -> None:
        """The source's link (its panel's `up`), sent at once when it changes."""
        with self._lock:
            if self._closed:
                return
            st = self._add(source)
            if st.link_up != up:
                st.link_up = up
                self._send(source, force=True)

    def refresh(self) -> None:
        """Send what changed since (compliance moves with time alone): call it with the MQTT status."""
        with self._lock:
            if self._closed:
                return
            for source in self._sources:
                self._send(source)

    def status(self, panels: list[Any]) -> None:
        """The MQTT publisher's periodic status (PanelInfo each): each link, then refresh()."""
        with self._lock:
            for p in panels:
                if p.name in self._sources:
                    self.link(p.name, p.up)
            self.refresh()

    def command_topics(self) -> list[str]:
        """The topics to subscribe to (QoS 1) for the buttons."""
        return [command_topic(self.prefix, s) for s in self._sources]

    def handle(self, topic: str, payload: bytes | str) -> str | None:
        """A message on a command topic: calls on_command(source, command); the command, or None where the
        topic or payload is not one of ours (ignored: whoever can publish may send anything)."""
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        text = text.strip().lower()
        for source in self._sources:
            if topic == command_topic(self.prefix, source) and text in COMMANDS:
                if self.on_command is not None:
                    self.on_command(source, text)
                return text
        return None


def sink_for(ctx: Any) -> HomeAssistantSink | None:
    """With --mqtt and `[homeassistant] enabled = true`: discovery and states through the MQTT publisher, the
    buttons through its subscription (they pause and resume the source: ctx.pause)."""
    pub, ha_cfg = ctx.publisher, ctx.cfg.homeassistant
    if pub is None or not ha_cfg.enabled or not hasattr(pub, "subscribe"):
        return None
    pause = ctx.pause

    def on_command(source: str, command: str) -> None:
        if pause is not None:
            pause(source, command == "pause")

    ha = HomeAssistantSink(
        pub.publish,
        pub.url.prefix,
        [s.name for s in ctx.sources],
        machine=pub.machine,
        discovery_prefix=ha_cfg.discovery_prefix,
        min_interval_s=ha_cfg.min_interval_s,
        compliance=ctx.compliance,
        on_command=on_command,
    )
    pub.subscribe(ha.command_topics(), ha.handle)
    pub.on_status(ha.status)
    return ha
