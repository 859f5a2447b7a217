"""monitor.outputs.mqtt and monitor.site against a real MQTT broker (amqtt) started in the test process:
delivery of every event, the retained status per source, a broker that goes away and comes
back, and the bounded queue."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time

import pytest

from monitor.broker import parse_url
from monitor.decisions.decide import State
from monitor.decisions.results import EVENT_KEYS, Event
from monitor.outputs.mqtt import MqttPublisher
from monitor.outputs.screen import PanelInfo
from monitor.site.feed import SiteFeed
from monitor.site.view import SiteView

pytest.importorskip("amqtt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerThread:
    """An amqtt broker on its own event loop in a thread; start() and stop() may be called again."""

    def __init__(self, port: int, listener: dict | None = None, plugins: dict | None = None) -> None:
        """`listener`: more settings of the listener (TLS); `plugins`: instead of anonymous access."""
        self.port = port
        self.listener, self.plugins = listener or {}, plugins
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.broker = None

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    def start(self) -> None:
        from amqtt.broker import Broker

        async def go():
            anonymous = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
            config = {
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}", **self.listener}},
                "plugins": self.plugins or anonymous,
            }
            self.broker = Broker(config, loop=self.loop)
            await self.broker.start()

        self._run(go())

    def stop(self) -> None:
        self._run(self.broker.shutdown())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Gate:
    """A TCP relay in front of the broker that lets connections through only while open: the publisher's way
    back to a restarted broker opens when the test says so (after the subscriber is in again)."""

    def __init__(self, target: int) -> None:
        self.target, self.port = target, _free_port()
        self.open = threading.Event()
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if not self.open.is_set():
                conn.close()
                continue
            try:
                up = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                conn.close()
                continue
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass


def _wait(cond, timeout=10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


STATE = State(2, 0, 1, 0.9, 3, True)


def _event(i: int) -> Event:
    return Event("flag", float(i), i, i, (1, 2, 3, 4), STATE)


def _site(port: int, tmp_path, name="merged.jsonl"):
    view = SiteView(tmp_path / name, io.StringIO(), headless=False)
    feed = SiteFeed(parse_url(f"mqtt://127.0.0.1:{port}/site1"), view.on_event, view.on_status).start()
    assert feed.subscribed.wait(10)
    return view, feed


def test_events_arrive_status_is_retained_and_a_broker_restart_loses_nothing(broker, tmp_path):
    gate = Gate(broker.port)
    gate.open.set()
    view, feed = _site(broker.port, tmp_path)
    pub = MqttPublisher(
        parse_url(f"mqtt://127.0.0.1:{gate.port}/site1"),
        ["door1", "door2"],
        status_every_s=0.2,
        err=io.StringIO(),
    )
    pub.attach(
        lambda: [
            PanelInfo("door1", 25.0, 1, (2, 0, 1), "live"),
            PanelInfo("door2", 12.5, 0, (0, 0, 0), "live"),
        ]
    )
    try:
        assert pub.connected.wait(10)
        for i in range(5):
            pub.event("door1", _event(i))
        assert _wait(lambda: view.event_count == 5)
        # the retained status: a viewer that comes later still sees every source at once
        assert _wait(lambda: view.status.get("door2", {}).get("fps") == 12.5)
        late, late_feed = _site(broker.port, tmp_path, "late.jsonl")
        assert _wait(lambda: {p.name for p in late.panels()} == {"door1", "door2"})
        door1 = next(p for p in late.panels() if p.name == "door1")
        assert door1.up and door1.fps == 25.0 and door1.in_view == 1 and door1.counts == (2, 0, 1)
        late_feed.stop()

        # the broker goes away; events keep coming and are queued
        gate.open.clear()
        broker.stop()
        assert _wait(lambda: not pub.connected.is_set())
        for i in range(5, 12):
            pub.event("door2", _event(i))
        broker.start()
        assert _wait(lambda: feed.subscribed.is_set(), 20)  # the viewer is back first ...
        gate.open.set()  # ... then the publisher reconnects and sends what it queued
        assert _wait(lambda: view.event_count == 12, 20), view.event_count
    finally:
        pub.close()
        feed.stop()
        view.close()
    rows = [json.loads(x) for x in (tmp_path / "merged.jsonl").read_text().splitlines()]
    assert sorted(r["frame"] for r in rows) == list(
        range(12)
    )  # every event exactly once (QoS 1 here: no dups)
    assert all(set(EVENT_KEYS) <= set(r) for r in rows)
    assert {r["source"] for r in rows} == {"door1", "door2"}
    assert pub.dropped == 0


def test_a_full_queue_drops_and_counts_events_with_one_warning():
    err = io.StringIO()
    pub = MqttPublisher(parse_url(f"mqtt://127.0.0.1:{_free_port()}/x"), ["door"], queue_size=5, err=err)
    try:
        for i in range(8):
            pub.event("door", _event(i))
        assert pub.dropped == 3 and pub.published == 5
    finally:
        pub.close(timeout=0.5)
    lines = err.getvalue().splitlines()
    assert sum("further events are dropped and counted" in x for x in lines) == 1
    assert any("3 events were not sent over MQTT (queue full)" in x for x in lines)
    assert pub.unsent >= 5 and "still undelivered at exit" in lines[-1]


@pytest.mark.parametrize(
    "url, error",
    [
        ("http://h/x", "expected mqtt://host"),
        ("mqtt://h:99999/x", "port"),
        ("mqtt://h/a+b", "may not contain"),
    ],
)
def test_bad_urls_are_one_line(url, error):
    from engines.errors import UserError

    with pytest.raises(UserError, match=error):
        parse_url(url)
    assert parse_url("mqtt://u:p@h/site/a").prefix == "site/a" and parse_url("mqtt://h").port == 1883


def test_a_monitor_of_two_sources_publishes_to_the_site_view(broker, tmp_path):
    import numpy as np

    from engines.config import MonitorConfig
    from monitor.app import Monitor, Options
    from monitor.config import Config
    from monitor.sources.kinds import Source, SourceSpec
    from tests.monitor.fakes import FakeCamera, OneFace, ScriptedEngine

    view, feed = _site(broker.port, tmp_path)
    url = parse_url(f"mqtt://127.0.0.1:{broker.port}/site1")
    pub = MqttPublisher(url, ["door1", "door2"], status_every_s=0.2, err=io.StringIO())
    frames = [np.full((120, 160, 3), 90, np.uint8)] * 30
    cams = {"a.mp4": FakeCamera(frames, fail_after=30), "b.mp4": FakeCamera(frames, fail_after=30)}
    mon = Monitor(
        Config(monitor=MonitorConfig(min_votes=2)),
        [Source("door1", SourceSpec("video", "a.mp4")), Source("door2", SourceSpec("video", "b.mp4"))],
        ScriptedEngine([2]),
        OneFace(),
        Options(headless=True),
        opener=lambda spec: cams[spec.target],
        out=io.StringIO(),
        err=io.StringIO(),
        publisher=pub,
    )
    assert pub.connected.wait(10)
    mon.run()  # closes the publisher: statuses down, queue delivered
    try:
        assert _wait(lambda: view.event_count == 4)  # a flag and a departure per source
        assert _wait(
            lambda: all(not s.get("up", True) for s in view.status.values()) and len(view.status) == 2
        )
    finally:
        feed.stop()
        view.close()
    rows = [json.loads(x) for x in (tmp_path / "merged.jsonl").read_text().splitlines()]
    assert sorted((r["source"], r["event"]) for r in rows) == [
        ("door1", "flag"),
        ("door1", "left"),
        ("door2", "flag"),
        ("door2", "left"),
    ]
    assert all(r["mask"] == "not_wear" and r["track_id"] == 1 for r in rows)


def test_site_command_headless_prints_flags_and_writes_the_merged_file(broker, tmp_path):
    from monitor.site.view import SiteOptions, run_site

    url = f"mqtt://127.0.0.1:{broker.port}/site1"
    pub = MqttPublisher(parse_url(url), ["door1"], status_every_s=0.2, err=io.StringIO())
    pub.attach(lambda: [PanelInfo("door1", 25.0, 1, (0, 0, 1), "live")])
    out = io.StringIO()
    args = SiteOptions(parse_url(url), events=tmp_path / "site.jsonl", headless=True, duration=4.0)
    th = threading.Thread(target=run_site, args=(args,), kwargs={"out": out}, daemon=True)
    try:
        assert pub.connected.wait(10)
        th.start()
        assert _wait(lambda: "door1: up" in out.getvalue())  # a retained status came: subscribed
        pub.event("door1", _event(7))
        th.join(10)
    finally:
        pub.close()
    text = out.getvalue()
    assert "door1 FLAG person #7: no mask (male, 30-59; confidence 0.90) frame 7" in text
    assert "mask-monitor site: 1 sources, 1 events, 1 flags" in text
    rows = [json.loads(x) for x in (tmp_path / "site.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["source"] == "door1" and rows[0]["frame"] == 7


def test_the_site_view_says_once_that_the_broker_cannot_be_reached():
    with socket.socket() as s:  # a free port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    links: list[str] = []
    feed = SiteFeed(parse_url(f"mqtt://127.0.0.1:{port}/p"), lambda e: None, lambda s, d: None, links.append)
    feed.start()
    try:
        deadline = time.monotonic() + 10
        while not links and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.5)  # paho retries meanwhile: the line is not repeated
    finally:
        feed.stop()
    assert links == [f"broker 127.0.0.1:{port} unreachable: retrying"]
