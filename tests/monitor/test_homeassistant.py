"""monitor.outputs.homeassistant against the real MQTT broker the MQTT tests start (amqtt, in this process):
the retained discovery payloads, the states as people pass the door, the pause / resume buttons."""

from __future__ import annotations

import json
import threading

import pytest

from monitor.decisions.compliance import Compliance, ComplianceSink
from monitor.outputs.homeassistant import HomeAssistantSink, command_topic, machine_topic, state_topic
from tests.monitor.sitefakes import door_run
from tests.monitor.test_mqtt import _wait

pytest.importorskip("amqtt")


class Client:
    """A paho client on the test broker: publishes (QoS 1) and records what its subscriptions receive."""

    def __init__(self, port: int, name: str, topics: tuple[str, ...] = ()) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
        self.c.on_message = lambda c, u, m: self._got(m)
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        for t in topics:
            self.c.subscribe(t, 1)
        if topics:
            assert self.subscribed.wait(10)

    def _got(self, m) -> None:
        with self.lock:
            self.messages.append((m.topic, m.payload, bool(m.retain)))

    def publish(self, topic: str, payload: str, retain: bool) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain)

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_discovery_payloads_and_states_change_as_people_pass(broker):
    watcher = Client(broker.port, "ha-watch", ("homeassistant/#", "site1/#"))
    monitor = Client(broker.port, "ha-monitor")
    comp = Compliance(window_s=600.0, threshold=0.5, clear_below=0.3, hold_s=0.0, min_people=3)
    csink = ComplianceSink(comp, lambda a: None, clock=lambda: 0.0)
    ha = HomeAssistantSink(
        monitor.publish, "site1", ["door"], machine="hq.one", min_interval_s=0.0, compliance=comp
    )
    try:
        for r in door_run([0, 2, 1]):
            csink.frame(r)
            ha.frame(r)
        st = state_topic("site1", "door")
        assert _wait(lambda: any(json.loads(p)["incorrect"] == 1 for p in watcher.on(st)))
        configs = {t: json.loads(p) for t, p, _ in watcher.messages if t.startswith("homeassistant/")}
        assert len(configs) == 10
        assert "homeassistant/sensor/mask_monitor_hq_one/door_in_view/config" in configs
        assert "homeassistant/binary_sensor/mask_monitor_hq_one/door_link/config" in configs
        assert "homeassistant/button/mask_monitor_hq_one/door_pause/config" in configs
        ids = set()
        for topic, cfg in configs.items():
            ids.add(cfg["unique_id"])
            assert cfg["device"]["identifiers"] == ["mask_monitor_hq_one"]
            assert cfg["device"]["name"] == "mask-monitor hq.one"
            assert cfg["availability"][0]["topic"] == machine_topic("site1", "hq.one")
            if "/button/" in topic:
                assert cfg["command_topic"] == command_topic("site1", "door")
            else:
                assert cfg["state_topic"] == st and "value_json" in cfg["value_template"]
        assert len(ids) == 10  # one per entity
        states = [json.loads(p) for p in watcher.on(st)]
        assert states[0] == {
            "in_view": 0,
            "masked": 0,
            "incorrect": 0,
            "no_mask": 0,
            "compliance": None,
            "alert": False,
            "link_up": True,
            "last_flag": "",
        }
        assert max(s["in_view"] for s in states) == 1 and states[-1]["in_view"] == 0
        last = states[-1]
        assert (last["masked"], last["incorrect"], last["no_mask"]) == (1, 1, 1)
        assert last["compliance"] == pytest.approx(33.3) and last["alert"] is True
        assert last["last_flag"] == "person #3: incorrect mask (frame 37)"
        assert [s["no_mask"] for s in states] == sorted(s["no_mask"] for s in states)  # counts only rise
        ha.link("door", False)
        assert _wait(lambda: json.loads(watcher.on(st)[-1])["link_up"] is False)
    finally:
        watcher.close()
        monitor.close()
    # retained: a Home Assistant that connects later finds every config and the last state
    late = Client(broker.port, "ha-late", ("homeassistant/#", "site1/#"))
    try:
        assert _wait(
            lambda: len({t for t, _, r in late.messages if r and t.startswith("homeassistant/")}) == 10
        )
        assert _wait(
            lambda: len(late.on(st)) >= 1
        )  # (amqtt may hand a retained message to each subscription)
        assert {json.loads(p)["link_up"] for p in late.on(st)} == {False}
    finally:
        late.close()


def test_pause_and_resume_buttons_call_back_and_anything_else_is_ignored(broker):
    pressed = []
    monitor = Client(broker.port, "ha-monitor")
    ha = HomeAssistantSink(
        monitor.publish,
        "site1",
        ["front", "back"],
        machine="m",
        on_command=lambda s, c: pressed.append((s, c)),
    )
    # the monitor's side: subscribed to its command topics, every message handed to the sink
    commands = Client(broker.port, "ha-commands", tuple(ha.command_topics()))
    home = Client(broker.port, "home-assistant")
    try:
        home.publish(command_topic("site1", "back"), "pause", False)
        home.publish(command_topic("site1", "back"), "explode", False)
        home.publish(command_topic("site1", "front"), "resume", False)
        assert _wait(lambda: len(commands.messages) == 3)
        handled = [ha.handle(t, p) for t, p, _ in commands.messages]
        assert handled == ["pause", None, "resume"]
        assert pressed == [("back", "pause"), ("front", "resume")]
        assert ha.handle("site1/other/ha/command", b"pause") is None
    finally:
        for c in (monitor, commands, home):
            c.close()
