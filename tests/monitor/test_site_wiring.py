"""Issue 25's outputs wired into the running monitor, end to end: the real Monitor on the sitefakes door
(real Pipeline, tracker, votes), real files, a real metrics server scraped over HTTP, the CLI as a process."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engines.config import MonitorConfig
from monitor.app import Monitor, Options
from monitor.config import ComplianceConfig, Config
from monitor.decisions.zones import Zone
from monitor.outputs.metrics import MetricsSink
from monitor.sources.kinds import SourceSpec
from tests.conftest import REPO
from tests.monitor.fakes import FakeCamera, Opener
from tests.monitor.sitefakes import ONE_BOX, BlobDetector, LevelEngine, door_frames

VIDEO = REPO / "samples" / "entrance.mp4"
NO_MASK, WEAR = 2, 0


def _cfg(**compliance) -> Config:
    c = {
        "window_s": 1000.0,
        "threshold": 0.5,
        "hold_s": 0.0,
        "clear_below": 0.2,
        "min_people": 2,
        **compliance,
    }
    return Config(
        monitor=MonitorConfig(detect_every=1, min_votes=2, vote_window=3, track_max_missed=3),
        compliance=ComplianceConfig(**c),
    )


def _run(cfg, people, options, **kw):
    frames = list(door_frames([[(p, ONE_BOX)] for p in people]))
    err = io.StringIO()
    mon = Monitor(
        cfg,
        SourceSpec("video", "door.mp4"),
        LevelEngine(),
        BlobDetector(),
        options,
        opener=Opener([FakeCamera(frames, fail_after=len(frames), fps=10.0)]),
        out=io.StringIO(),
        err=err,
        **kw,
    )
    report = mon.run()
    return report, err.getvalue()


def _events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_flags_carry_their_evidence_and_an_alert_rises_and_clears_in_the_events_file(tmp_path):
    events, evidence = tmp_path / "events.jsonl", tmp_path / "evidence"
    people = [NO_MASK, NO_MASK, NO_MASK, WEAR, WEAR, WEAR, WEAR, WEAR, WEAR, WEAR]
    opts = Options(headless=True, events=events, evidence=evidence)
    _, err = _run(_cfg(clear_below=0.35), people, opts)
    got = _events(events)
    flags = [e for e in got if e["event"] == "flag"]
    assert len(flags) == 3 and all(f["mask"] == "not_wear" for f in flags)
    for f in flags:
        snap = f["evidence"]["snapshot"]
        assert os.path.isfile(snap) and snap.endswith(f"_track{f['track_id']}_not_wear.jpg")
        assert os.stat(snap).st_mode & 0o777 == 0o600
    assert all("evidence" not in e for e in got if e["event"] == "left")
    kinds = [e["event"] for e in got if e["event"].startswith("alert")]
    assert kinds[:2] == ["alert", "alert"] and "alert_cleared" in kinds  # the source's and the site's
    first = next(e for e in got if e["event"] == "alert")
    assert first["scope"] == "source" and first["source"] == "door" and first["share"] >= 0.5
    assert "door ALERT: " in err and "door alert cleared" in err


def test_no_alert_below_min_people_and_the_events_stay_as_they_were(tmp_path):
    events = tmp_path / "events.jsonl"
    _run(_cfg(min_people=50), [NO_MASK, WEAR], Options(headless=True, events=events))
    got = _events(events)
    assert [e["event"] for e in got] == ["flag", "left", "left"]
    assert set(got[0]) == {
        "event",
        "time",
        "frame",
        "track_id",
        "box",
        "mask",
        "gender",
        "age",
        "class",
        "confidence",
    }


def test_metrics_are_served_during_the_run_and_move(tmp_path):
    metrics = MetricsSink(machine="m1")
    address = metrics.start("127.0.0.1", 0)
    scraped: list[str] = []

    def scrape(result):  # in the output thread, while the monitor runs
        if result.seq in (5, 50) and not result.final:
            scraped.append(urllib.request.urlopen(address, timeout=10).read().decode())

    _run(_cfg(), [NO_MASK, NO_MASK, WEAR], Options(headless=True), metrics=metrics, on_result=scrape)

    def value(text, name, **labels):
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return None

    early, late = scraped
    assert value(late, "mask_monitor_frames_total", source="door", machine="m1") > value(
        early, "mask_monitor_frames_total", source="door", machine="m1"
    )
    assert value(late, "mask_monitor_flags_total", source="door", mask="not_wear") == 2
    assert value(late, "mask_monitor_stage_seconds_count", stage="detect") > 0
    assert value(late, "mask_monitor_noncompliant_share", source="door") is not None
    with pytest.raises(OSError):  # closed with the run
        urllib.request.urlopen(address, timeout=2)


def test_a_face_outside_the_zone_is_never_flagged(tmp_path):
    events = tmp_path / "events.jsonl"
    left_strip = Zone.parse([[0, 0], [0.3, 0], [0.3, 1], [0, 1]])
    _run(_cfg(), [NO_MASK, NO_MASK], Options(headless=True, events=events), zones={"door": left_strip})
    assert _events(events) == []
    whole = Zone.parse([[0, 0], [1, 0], [1, 1], [0, 1]])  # the same door with a zone around it: flagged
    events.unlink()
    _run(_cfg(), [NO_MASK, NO_MASK], Options(headless=True, events=events), zones={"door": whole})
    assert [e["event"] for e in _events(events)].count("flag") == 2


def _cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def test_mask_monitor_zones_writes_the_first_frame_with_the_zone(tmp_path):
    import cv2

    cfg = tmp_path / "site.toml"
    cfg.write_text(
        f'[[sources]]\nname = "front"\nkind = "video"\naddress = "{VIDEO}"\n'
        "zone = [[0.25, 0.0], [0.75, 0.0], [0.75, 1.0], [0.25, 1.0]]\n"
    )
    out = tmp_path / "zone.png"
    r = _cli("zones", "--config", str(cfg), "--source", "front", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"front drawn on its first frame in {out}" in r.stdout
    img = cv2.imread(str(out))
    h, w = img.shape[:2]
    first = cv2.VideoCapture(str(VIDEO)).read()[1]
    assert img[h - 5, 5].mean() < first[h - 5, 5].mean() or first[h - 5, 5].mean() < 5  # outside: dimmed
    assert np.array_equal(img[h // 2 + 10, w // 2], first[h // 2 + 10, w // 2])  # inside: as it was


@pytest.mark.parametrize(
    "setup, args, says",
    [
        (
            "zone = [[0.1, 0.1], [0.9, 0.9]]\n",
            ["zones", "--out", "z.png"],
            "zone: a polygon needs at least 3 points",
        ),
        ("", ["--video", str(VIDEO), "--headless", "--metrics", "127.0.0.1:{port}"], "already in use"),
        ("", ["--video", str(VIDEO), "--headless", "--evidence", "afile"], "--evidence afile is a file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, setup, args, says):
    cfg = tmp_path / "site.toml"
    cfg.write_text(f'[[sources]]\nname = "front"\nkind = "video"\naddress = "{VIDEO}"\n{setup}')
    (tmp_path / "afile").write_text("x")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _cli(*[a.format(port=port) for a in args], "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], r.stderr
