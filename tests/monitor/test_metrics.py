"""monitor.outputs.metrics: a real prometheus_client server on 127.0.0.1, scraped over HTTP and read with the
client library's own parser, while the real pipeline runs people past a door."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engines.errors import UserError
from monitor.decisions.compliance import Compliance, ComplianceSink, site_event
from monitor.outputs.metrics import MetricsSink, parse_address
from monitor.outputs.screen import PanelInfo, Tally
from monitor.sources.link import LinkState
from tests.monitor.sitefakes import door_run


def scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(address, timeout=10) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def value(samples, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def sink():
    c = Compliance(window_s=600.0, threshold=0.5, clear_below=0.3, hold_s=0.0, min_people=2)
    s = MetricsSink(machine="m1", compliance=c)
    yield s
    s.close()


def test_the_metrics_parse_and_move_with_a_run(sink):
    tally = Tally()
    in_view = [0]
    sink.attach(
        lambda: [PanelInfo("door", 12.5, in_view[0], tuple(tally.counts()), "playing", LinkState.UP, 3)]
    )
    comp = ComplianceSink(sink.compliance, sink.alert, clock=lambda: 0.0)
    address = sink.start("127.0.0.1", 0)
    assert address.startswith("http://127.0.0.1:") and address.endswith("/metrics")
    before = scrape(address)
    assert value(before, "mask_monitor_frames_total", source="door", machine="m1") is None
    assert value(before, "mask_monitor_people_in_view", source="door", machine="m1") == 0.0
    assert value(before, "process_resident_memory_bytes") > 10e6  # this Python with numpy and cv2 loaded
    mid = None
    for r in door_run([0, 2, 2, 1]):
        tally.update(r)
        in_view[0] = sum(t.confirmed for t in r.tracks)
        for s in (sink, comp):
            s.frame(r)
        for e in r.events:
            sink.event(e)
        if not r.final:  # one inference round per frame here
            sink.stage("detect", 20.0)
            sink.stage("classify", 3.0)
            sink.stage("capture", 1.0)  # not exported
        if mid is None and in_view[0]:
            mid = scrape(address)
            assert value(mid, "mask_monitor_people_in_view", source="door", machine="m1") == 1.0
    after = scrape(address)
    key = {"source": "door", "machine": "m1"}
    frames = sum(1 for _ in door_run([0, 2, 2, 1])) - 1  # the final result is not a frame
    assert value(after, "mask_monitor_frames_total", **key) == frames
    assert value(after, "mask_monitor_frames_per_second", **key) == 12.5
    assert value(after, "mask_monitor_dropped_frames_total", **key) == 3.0
    assert value(after, "mask_monitor_link_up", **key) == 1.0
    assert value(after, "mask_monitor_people_in_view", **key) == 0.0
    seen = {
        m: value(after, "mask_monitor_people_seen", **key, mask=m) for m in ("wear", "incorrect", "not_wear")
    }
    assert seen == {"wear": 1.0, "incorrect": 1.0, "not_wear": 2.0}
    assert value(after, "mask_monitor_flags_total", **key, mask="not_wear") == 2.0
    assert value(after, "mask_monitor_flags_total", **key, mask="incorrect") == 1.0
    assert value(after, "mask_monitor_stage_seconds_count", stage="detect") == frames
    assert value(after, "mask_monitor_stage_seconds_bucket", stage="detect", le="0.04") == frames
    assert value(after, "mask_monitor_stage_seconds_bucket", stage="detect", le="0.01") == 0.0
    assert value(after, "mask_monitor_stage_seconds_count", stage="capture") is None
    assert value(after, "mask_monitor_noncompliant_share", **key) == 0.75
    assert value(after, "mask_monitor_alert", **key) == 1.0
    assert value(after, "mask_monitor_site_alert") == 1.0
    assert value(after, "mask_monitor_alerts_total", **key) == 1.0
    assert value(after, "mask_monitor_alerts_total", source="", machine="m1") == 1.0  # the site's


def test_the_site_view_serves_every_source_of_every_machine():
    c = Compliance(window_s=600.0, threshold=0.5, clear_below=0.3, hold_s=0.0, min_people=1)
    s = MetricsSink(machine="viewer", compliance=c, site=True)
    panels = [
        PanelInfo("front", 25.0, 2, (5, 1, 0), "live", LinkState.UP, 0, "hq-1"),
        PanelInfo("front", 0.0, 0, (1, 0, 0), "down", LinkState.DOWN, 7, "hq-2"),
    ]
    s.attach(lambda: panels)
    site_event(
        c, {"event": "flag", "source": "front", "machine": "hq-2", "track_id": 4, "mask": "not_wear"}, 0
    )
    c.evaluate(0.0)
    s.flag("front", "not_wear", "hq-2")
    try:
        got = scrape(s.start("127.0.0.1", 0))
    finally:
        s.close()
    assert value(got, "mask_monitor_link_up", source="front", machine="hq-1") == 1.0
    assert value(got, "mask_monitor_link_up", source="front", machine="hq-2") == 0.0
    assert value(got, "mask_monitor_people_seen", source="front", machine="hq-1", mask="wear") == 5.0
    assert value(got, "mask_monitor_dropped_frames_total", source="front", machine="hq-2") == 7.0
    assert value(got, "mask_monitor_flags_total", source="front", machine="hq-2", mask="not_wear") == 1.0
    assert value(got, "mask_monitor_noncompliant_share", source="front", machine="hq-2") == 1.0
    assert value(got, "mask_monitor_site_noncompliant_share") == 1.0


def test_a_port_in_use_is_one_line_and_a_broken_snapshot_does_not_break_the_scrape(sink):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError) as exc:
            sink.start("127.0.0.1", port)
    assert str(exc.value) == (
        f"--metrics 127.0.0.1:{port}: port {port} on 127.0.0.1 is already in use (another monitor?); "
        "pass --metrics HOST:PORT"
    )

    def broken():
        raise RuntimeError("a source being removed")

    sink.attach(broken)
    got = scrape(sink.start("127.0.0.1", 0))
    assert value(got, "process_resident_memory_bytes") > 0
    with urllib.request.urlopen(sink.address.replace("/metrics", "/anything"), timeout=10) as r:
        assert r.status == 200  # the server keeps serving whatever is asked


def test_addresses():
    assert parse_address(None) == ("127.0.0.1", 9108)
    assert parse_address("") == ("127.0.0.1", 9108)
    assert parse_address("9200") == ("127.0.0.1", 9200)
    assert parse_address(":9200") == ("127.0.0.1", 9200)
    assert parse_address("0.0.0.0:9200") == ("0.0.0.0", 9200)
    assert parse_address("10.0.0.5") == ("10.0.0.5", 9108)
    assert parse_address("[::1]:9300") == ("::1", 9300)
    assert parse_address(None, "192.168.1.2", 0) == ("192.168.1.2", 0)
    for bad in ("host:port", "host:70000", "a:b:c"):
        with pytest.raises(UserError, match=r"^--metrics '"):
            parse_address(bad)


def test_the_grafana_dashboard_reads_only_metrics_the_sink_exports():
    import json
    import re
    from pathlib import Path

    dash = json.loads((Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(?:mask_monitor|process)_[a-z_]+", e)}
    c = Compliance(window_s=600.0, threshold=0.5, clear_below=0.3, hold_s=0.0, min_people=1)
    c.person("door", 1, 2, 0.0)
    c.evaluate(0.0)
    s = MetricsSink(machine="m", compliance=c)
    s.attach(lambda: [PanelInfo("door", 1.0, 0, (0, 0, 0), "live")])
    s.flag("door", "not_wear")
    s.stage("detect", 10.0)
    try:
        names = {name for name, _ in scrape(s.start("127.0.0.1", 0))}
    finally:
        s.close()
    assert used and used <= names, used - names
