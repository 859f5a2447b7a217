"""Issue 25's last wiring, end to end against the real MQTT broker (amqtt, in this process): Home Assistant
in the running monitor (discovery, states as people pass, the pause / resume buttons through the broker), and
`mask-monitor site --metrics` scraped over HTTP."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engines.config import MonitorConfig
from monitor.app import Monitor, Options
from monitor.broker import parse_url
from monitor.config import Config, HomeAssistantConfig
from monitor.decisions.results import Event, State
from monitor.outputs.homeassistant import command_topic, state_topic
from monitor.outputs.mqtt import MqttPublisher
from monitor.outputs.screen import PanelInfo
from monitor.site.view import SiteOptions, run_site
from monitor.sources.kinds import Source, SourceSpec
from tests.conftest import REPO
from tests.monitor.fakes import FakeCamera
from tests.monitor.sitefakes import ONE_BOX, BlobDetector, LevelEngine, door_frames
from tests.monitor.test_homeassistant import Client
from tests.monitor.test_mqtt import _wait

pytest.importorskip("amqtt")

NO_MASK, WEAR = 2, 0


def _json(payloads: list[bytes]) -> list[dict]:
    return [json.loads(p) for p in payloads]


def test_the_monitor_publishes_home_assistant_and_its_buttons_pause_and_resume_a_source(broker):
    url = parse_url(f"mqtt://127.0.0.1:{broker.port}/site1")
    watcher = Client(broker.port, "ha-watch", ("homeassistant/#", "site1/+/ha/state", "site1/+/status"))
    home = Client(broker.port, "home-assistant")
    frames = list(door_frames([[(m, ONE_BOX)] for m in (NO_MASK, WEAR, WEAR)]))
    camera = FakeCamera(frames, period=0.005)  # a camera: read for as long as the monitor runs
    pub = MqttPublisher(url, ["door"], status_every_s=0.2, err=io.StringIO())
    processed: list[int] = []
    cfg = Config(
        monitor=MonitorConfig(detect_every=1, min_votes=2, vote_window=3, track_max_missed=3),
        homeassistant=HomeAssistantConfig(enabled=True, min_interval_s=0.0),
    )
    mon = Monitor(
        cfg,
        [Source("door", SourceSpec("camera", "0"))],
        LevelEngine(),
        BlobDetector(),
        Options(headless=True),
        opener=lambda spec: camera,
        out=io.StringIO(),
        err=io.StringIO(),
        publisher=pub,
        on_result=lambda r: None if r.final else processed.append(r.seq),
    )
    th = threading.Thread(target=mon.run, daemon=True)
    assert pub.connected.wait(10)
    th.start()
    states = state_topic("site1", "door")
    status = "site1/door/status"
    try:
        # discovery: ten entities of the door, on one device of this machine, each available with it
        assert _wait(lambda: len({t for t, _, _ in watcher.messages if t.startswith("homeassistant/")}) == 10)
        with watcher.lock:
            configs = [json.loads(p) for t, p, retain in watcher.messages if t.startswith("homeassistant/")]
        for c in configs:
            assert (
                c["unique_id"].startswith("mask_monitor_")
                and c["device"]["name"] == f"mask-monitor {pub.machine}"
            )
            assert c["availability"][0]["topic"] == f"site1/_machines/{pub.machine}/status"
            assert c.get("state_topic") == states or c.get("command_topic") == command_topic("site1", "door")
        assert sum("command_topic" in c for c in configs) == 2
        late = Client(broker.port, "ha-late", ("homeassistant/#",))  # retained: Home Assistant started later
        assert _wait(lambda: len({t for t, _, _ in late.messages if t.startswith("homeassistant/")}) == 10)
        late.close()

        # the states move as people pass: someone in view, then seen per mask state
        assert _wait(lambda: any(s["in_view"] > 0 for s in _json(watcher.on(states))), 30)
        assert _wait(
            lambda: any(s["no_mask"] >= 1 and s["masked"] >= 1 for s in _json(watcher.on(states))), 60
        )
        assert any(s["last_flag"].startswith("person #") for s in _json(watcher.on(states)))

        # pause: the link says so, the camera keeps being read, nothing more is detected
        home.publish(command_topic("site1", "door"), "pause", False)
        assert _wait(lambda: any(s["link"] == "paused" for s in _json(watcher.on(status))), 20)
        paused_at, reads_at = len(processed), camera.reads
        assert _wait(lambda: camera.reads >= reads_at + 100, 30)
        assert len(processed) <= paused_at + 1  # at most the frame already handed over
        last = _json(watcher.on(status))[-1]
        assert last["state"] == "paused" and last["up"] is True

        # resume: frames are detected again
        home.publish(command_topic("site1", "door"), "resume", False)
        assert _wait(lambda: len(processed) >= paused_at + 20, 30)
        assert _json(watcher.on(status))[-1]["link"] == "live"
        home.publish(command_topic("site1", "door"), "reboot the machine", False)  # ignored
        n = len(processed)
        assert _wait(lambda: len(processed) >= n + 20, 30)
    finally:
        mon.stop()
        th.join(30)
        watcher_states = _json(watcher.on(states))
        watcher.close()
        home.close()
    assert not th.is_alive()
    assert watcher_states[-1]["link_up"] is False  # the monitor stopped: its sources' links are down


def test_home_assistant_stays_off_without_the_setting(broker):
    url = parse_url(f"mqtt://127.0.0.1:{broker.port}/site1")
    watcher = Client(broker.port, "ha-watch", ("homeassistant/#", "site1/#"))
    pub = MqttPublisher(url, ["door"], status_every_s=0.2, err=io.StringIO())
    frames = list(door_frames([[(NO_MASK, ONE_BOX)]]))
    mon = Monitor(
        Config(monitor=MonitorConfig(detect_every=1, min_votes=2, vote_window=3, track_max_missed=3)),
        [Source("door", SourceSpec("video", "door.mp4"))],
        LevelEngine(),
        BlobDetector(),
        Options(headless=True),
        opener=lambda spec: FakeCamera(frames, fail_after=len(frames)),
        out=io.StringIO(),
        err=io.StringIO(),
        publisher=pub,
    )
    assert pub.connected.wait(10)
    mon.run()
    try:
        assert _wait(lambda: len(watcher.on("site1/door/events")) == 2)  # the flag and the departure
        with watcher.lock:
            topics = {t for t, _, _ in watcher.messages}
    finally:
        watcher.close()
    assert not any(t.startswith("homeassistant/") or "/ha/" in t for t in topics)


# --- mask-monitor site --metrics -------------------------------------------------------------------------
STATE = State(2, 0, 1, 0.9, 3, True)  # no mask, settled


def _value(text: str, name: str, **labels: str) -> float | None:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def test_site_metrics_serve_every_source_of_every_machine(broker):
    url = f"mqtt://127.0.0.1:{broker.port}/site1"
    pub = MqttPublisher(parse_url(url), ["door1", "door2"], status_every_s=0.2, err=io.StringIO())
    pub.attach(
        lambda: [
            PanelInfo("door1", 25.0, 1, (2, 0, 1), "live"),
            PanelInfo("door2", 12.5, 0, (0, 0, 0), "reconnecting", state=_reconnecting()),
        ]
    )
    out, err = io.StringIO(), io.StringIO()
    args = SiteOptions(parse_url(url), headless=True, duration=60.0, metrics=("127.0.0.1", 0))
    stop = threading.Event()
    th = threading.Thread(
        target=run_site, args=(args,), kwargs={"out": out, "err": err, "stop": stop}, daemon=True
    )
    try:
        assert pub.connected.wait(10)
        th.start()
        assert _wait(lambda: "mask-monitor site: metrics: http://127.0.0.1:" in err.getvalue())
        address = err.getvalue().split("metrics: ", 1)[1].split()[0]
        assert _wait(lambda: "door1: up" in out.getvalue())  # the statuses come
        for i in range(3):
            pub.event("door1", Event("flag", float(i), i, i + 1, (1, 2, 3, 4), STATE))
        pub.event("door2", Event("left", 5.0, 5, 9, (1, 2, 3, 4), State(0, 0, 1, 0.9, 3, True)))

        def scrape() -> str:
            return urllib.request.urlopen(address, timeout=10).read().decode()

        assert _wait(lambda: _value(scrape(), "mask_monitor_flags_total", source="door1") == 3)
        assert _wait(lambda: _value(scrape(), "mask_monitor_frames_per_second", source="door1") == 25.0)
        text = scrape()
    finally:
        stop.set()
        th.join(20)
        pub.close()
    m = pub.machine
    assert _value(text, "mask_monitor_flags_total", source="door1", machine=m, mask="not_wear") == 3
    assert _value(text, "mask_monitor_frames_per_second", source="door1", machine=m) == 25.0
    assert _value(text, "mask_monitor_people_seen", source="door1", machine=m, mask="wear") == 2
    assert _value(text, "mask_monitor_link_up", source="door1", machine=m) == 1
    assert _value(text, "mask_monitor_link_up", source="door2", machine=m) == 0
    # compliance from the events: door1's three people without a mask, door2's one with
    assert _value(text, "mask_monitor_noncompliant_share", source="door1", machine=m) == 1.0
    assert _value(text, "mask_monitor_noncompliant_share", source="door2", machine=m) == 0.0
    assert _value(text, "mask_monitor_site_noncompliant_share") == 0.75
    assert not th.is_alive()
    with pytest.raises(OSError):  # closed with the view
        urllib.request.urlopen(address, timeout=2)


def _reconnecting():
    from monitor.sources.link import LinkState

    return LinkState.RECONNECTING


def test_site_metrics_on_a_port_in_use_is_one_line_and_exit_2(broker):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "monitor", "site", "--mqtt", f"mqtt://127.0.0.1:{broker.port}/site1"]
            + ["--headless", "--duration", "5", "--metrics", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "already in use" in lines[0] and f"127.0.0.1:{port}" in lines[0]
