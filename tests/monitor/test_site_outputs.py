"""Issue 25's last pieces: each source's compliance and alert on the monitor's screen and on `mask-monitor
site`'s, the zone drawn (outside dimmed) in recordings, and `[evidence] folder` in the config (an unwritable
one is one line before the model loads). The real Monitor on the sitefakes door, the real broker, the CLI."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from rich.console import Console

from engines.config import MonitorConfig
from monitor.app import Monitor, Options
from monitor.broker import parse_url
from monitor.cli import evidence_folder
from monitor.config import ComplianceConfig, Config, RecordConfig, load_config
from monitor.decisions.compliance import Compliance
from monitor.decisions.results import Event, State
from monitor.decisions.zones import Zone
from monitor.outputs.mqtt import MqttPublisher
from monitor.outputs.screen import PanelInfo
from monitor.site.view import SiteOptions, SiteView, run_site
from monitor.sources.kinds import SourceSpec
from tests.conftest import REPO
from tests.monitor.fakes import FakeCamera, Opener
from tests.monitor.sitefakes import ONE_BOX, BlobDetector, LevelEngine, door_frames

VIDEO = REPO / "samples" / "entrance.mp4"
NO_MASK, WEAR = 2, 0
COMPLIANCE = ComplianceConfig(window_s=1000.0, threshold=0.5, hold_s=0.0, clear_below=0.2, min_people=2)


def _monitor(people, options, console=None, record_blur="faces", **kw):
    frames = list(door_frames(people))
    cfg = Config(
        monitor=MonitorConfig(detect_every=1, min_votes=2, vote_window=3, track_max_missed=3),
        compliance=COMPLIANCE,
        record=RecordConfig(blur=record_blur),
    )
    return Monitor(
        cfg,
        SourceSpec("video", "door.mp4"),
        LevelEngine(),
        BlobDetector(),
        options,
        opener=Opener([FakeCamera(frames, fail_after=len(frames), fps=10.0)]),
        console=console,
        out=io.StringIO(),
        err=io.StringIO(),
        **kw,
    )


# --- the screens


def test_the_monitor_screen_shows_the_compliance_share_and_the_alert():
    console = Console(record=True, width=110, height=40, force_terminal=True)
    people = [[(p, ONE_BOX)] for p in (NO_MASK, WEAR, NO_MASK)]
    mon = _monitor(people, Options(headless=False), console=console)
    mon.run()
    text = console.export_text()
    assert "people seen 3" in text and "compliance 33% of 3  ALERT" in text  # 2 of 3 without a mask >= 0.5
    assert mon.compliance.standing("door").alert


def test_no_alert_shows_the_share_alone():
    console = Console(record=True, width=110, height=40, force_terminal=True)
    mon = _monitor([[(WEAR, ONE_BOX)], [(WEAR, ONE_BOX)]], Options(headless=False), console=console)
    mon.run()
    text = console.export_text()
    assert "compliance 100% of 2" in text and "ALERT" not in text


def _flag(n: int, mask: int) -> Event:
    return Event("flag" if mask else "left", float(n), n, n, (1, 2, 3, 4), State(mask, 0, 1, 0.9, 3, True))


def test_the_site_view_panels_show_each_source_compliance_from_its_events():
    view = SiteView(None, io.StringIO(), headless=False, compliance=Compliance.from_config(COMPLIANCE))
    for source in ("front", "garage"):
        view.on_status(source, {**PanelInfo(source, 25.0, 1, (0, 0, 0), "live").to_dict(), "machine": "hq"})
    for n in (1, 2, 3):  # front: 3 people without a mask; garage: one with, who left
        view.on_event({**_flag(n, NO_MASK).to_dict(), "source": "front", "machine": "hq"})
    view.on_event({**_flag(9, WEAR).to_dict(), "source": "garage", "machine": "hq"})
    panels = {p.name: p.standing for p in view.panels()}
    assert panels["front"].people == 3 and panels["front"].compliance == 0.0 and panels["front"].alert
    assert panels["garage"].people == 1 and panels["garage"].compliance == 1.0 and not panels["garage"].alert
    console = Console(record=True, width=100, height=24, force_terminal=True)
    console.print(view.render())
    text = console.export_text()
    assert "compliance 0% of 3  ALERT" in text and "compliance 100% of 1" in text
    assert text.count("ALERT") == 1


def test_mask_monitor_site_shows_compliance_and_alert_from_a_real_broker(broker):
    url = f"mqtt://127.0.0.1:{broker.port}/site1"
    pub = MqttPublisher(parse_url(url), ["door1", "door2"], status_every_s=0.2, err=io.StringIO())
    pub.attach(lambda: [PanelInfo(n, 25.0, 1, (0, 0, 0), "live") for n in ("door1", "door2")])
    console = Console(record=True, width=100, height=30, force_terminal=True)
    args = SiteOptions(parse_url(url), duration=120.0, compliance=COMPLIANCE)
    stop = threading.Event()
    th = threading.Thread(
        target=run_site,
        args=(args,),
        kwargs={"console": console, "out": io.StringIO(), "err": io.StringIO(), "stop": stop},
        daemon=True,
    )
    try:
        assert pub.connected.wait(10)
        th.start()
        assert _wait(lambda: "door2" in console.export_text(clear=False))  # the statuses came
        for i in (1, 2):
            pub.event("door1", _flag(i, NO_MASK))
        pub.event("door2", _flag(7, WEAR))
        assert _wait(lambda: "compliance 100% of 1" in console.export_text(clear=False))
        assert _wait(lambda: "compliance 0% of 2  ALERT" in console.export_text(clear=False))
    finally:
        stop.set()
        th.join(20)
        pub.close()
    assert not th.is_alive()


# --- recordings: the zone drawn, its outside dimmed

LEFT, RIGHT = (20, 70, 80, 150), (210, 70, 270, 150)  # one face outside the zone, one inside


def _mean(img: np.ndarray, box: tuple[int, int, int, int], margin: int = 12) -> float:
    x1, y1, x2, y2 = box
    return float(img[y1 + margin : y2 - margin, x1 + margin : x2 - margin].mean())


def test_a_recording_draws_the_zone_and_dims_the_faces_outside(tmp_path):
    zone = Zone.parse([[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]])  # the right half of the door
    people = [[(NO_MASK, LEFT), (NO_MASK, RIGHT)]]
    source = next(door_frames(people))
    out = tmp_path / "door.mp4"
    mon = _monitor(people, Options(headless=True, record=out), record_blur="none", zones={"door": zone})
    report = mon.run()
    assert report.recorded > 0
    cap = cv2.VideoCapture(str(out))
    ok, frame = cap.read()
    cap.release()
    assert ok
    inside, outside = _mean(frame, RIGHT) / _mean(source, RIGHT), _mean(frame, LEFT) / _mean(source, LEFT)
    assert 0.9 < inside < 1.1  # as it was
    assert 0.3 < outside < 0.5  # dimmed (zones.DIM = 0.4)
    edge = frame[5:235, 159:162].reshape(-1, 3).mean(axis=0)  # the polygon's left edge at x = 160
    assert edge[0] > 50 and edge[1] > 40 and edge[2] < edge[1] / 2  # drawn in ZONE_COLOUR (BGR 255, 200, 0)


def test_a_recording_without_a_zone_is_not_dimmed(tmp_path):
    people = [[(NO_MASK, LEFT), (NO_MASK, RIGHT)]]
    source = next(door_frames(people))
    out = tmp_path / "door.mp4"
    _monitor(people, Options(headless=True, record=out), record_blur="none").run()
    ok, frame = cv2.VideoCapture(str(out)).read()
    assert ok and 0.9 < _mean(frame, LEFT) / _mean(source, LEFT) < 1.1


# --- [evidence] folder


def test_the_evidence_folder_comes_from_the_config_and_the_flag_wins(tmp_path):
    site = tmp_path / "site.toml"
    site.write_text('[evidence]\nfolder = "evidence"\n')
    cfg = load_config(site)
    assert evidence_folder(None, cfg) == tmp_path / "evidence"  # relative to the config file's folder
    assert evidence_folder("elsewhere", cfg) == Path("elsewhere")
    assert evidence_folder(None, load_config(REPO / "config.toml")) is None  # the default: off


def test_evidence_from_the_config_is_written_by_the_run(tmp_path):
    site = tmp_path / "site.toml"
    site.write_text('[evidence]\nfolder = "evidence"\n')
    folder = evidence_folder(None, load_config(site))
    mon = _monitor([[(NO_MASK, ONE_BOX)]], Options(headless=True, evidence=folder))
    mon.run()
    assert [p.suffix for p in folder.iterdir()] == [".jpg"]
    assert (os.stat(folder).st_mode & 0o777) == 0o700


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.parametrize(
    "folder, says",
    [
        ("afile/evidence", "[evidence] folder {tmp}/afile/evidence: cannot write (Not a directory)"),
        ("afile", "[evidence] folder {tmp}/afile is a file; give a folder"),
    ],
)
def test_an_unwritable_evidence_folder_in_the_config_is_one_line_before_the_model_loads(
    tmp_path, folder, says
):
    (tmp_path / "afile").write_text("x")
    site = tmp_path / "site.toml"
    site.write_text(f'[evidence]\nfolder = "{folder}"\n')
    # a model that does not exist: the evidence folder is checked first
    r = _cli(
        "--video", str(VIDEO), "--headless", "--config", str(site), "--engine", "none.onnx", cwd=tmp_path
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and says.format(tmp=tmp_path) in lines[0], r.stderr
    assert (tmp_path / "afile").read_text() == "x"  # nothing lost


def test_the_evidence_flag_names_itself_when_it_cannot_be_written(tmp_path):
    (tmp_path / "afile").write_text("x")
    r = _cli(
        "--video", str(VIDEO), "--headless", "--evidence", "afile/ev", "--engine", "none.onnx", cwd=tmp_path
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "mask-monitor: error: --evidence afile/ev: cannot write (Not a directory)"
    ]


def _wait(cond, timeout: float = 15.0) -> bool:
    from tests.monitor.test_mqtt import _wait as wait

    return wait(cond, timeout)


def test_prune_takes_the_evidence_folder_of_the_config(tmp_path):
    folder = tmp_path / "evidence"
    folder.mkdir()
    old, new = folder / "door_f0000001_track1_not_wear.jpg", folder / "door_f0000002_track2_not_wear.jpg"
    for p in (old, new):
        p.write_bytes(b"jpeg")
    os.utime(old, (1e9, 1e9))  # 2001: past [evidence] max_age_days
    site = tmp_path / "site.toml"
    site.write_text('[evidence]\nfolder = "evidence"\n')
    r = _cli("prune", "--config", str(site), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not old.exists() and new.exists()
    assert str(folder) in r.stdout
