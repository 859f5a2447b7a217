"""Several sources in one monitor: one inference round over all of them, names on every output, and a
source that stops never stalls the others."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
from rich.console import Console

from engines.config import MonitorConfig
from engines.faces import Face
from monitor.app import Monitor, Options
from monitor.config import Config
from monitor.decisions.compliance import Standing
from monitor.outputs.screen import PanelInfo, SourcesScreen
from monitor.sources.kinds import Source, SourceSpec
from monitor.sources.link import LinkState
from tests.monitor.fakes import FakeCamera, ScriptedEngine

BOX = (40.0, 30.0, 100.0, 105.0)


class BatchFaces:
    """A detector with detect_batch, as engines.faces.FaceDetector: records how many frames each call got."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def detect(self, frame, **kw):
        return self.detect_batch([frame])[0]

    def detect_batch(self, frames, **kw):
        with self.lock:
            self.batches.append(len(frames))
        return [[Face(BOX, 0.99)] for _ in frames]

    def detect_region(self, frame, region, **kw):
        return []


class CountingEngine(ScriptedEngine):
    def __init__(self, states):
        super().__init__(states)
        self.sizes: list[int] = []

    def classify(self, crops, batch_size: int = 32):
        self.sizes.append(len(crops))
        return super().classify(crops, batch_size)


class StallingCamera(FakeCamera):
    """Gives `good` frames, then read() hangs (a stream that stalls without an error) until released."""

    def __init__(self, frames, good: int) -> None:
        super().__init__(frames, period=0.1)  # slow enough that the monitor takes every good frame
        self.good = good
        self.hang = threading.Event()

    def read(self):
        if self.reads >= self.good:
            self.hang.wait(3.0)  # then fails, as a stream's read timeout does
            return False, None
        return super().read()


def _by_target(devices: dict):
    return lambda spec: devices[spec.target]


def _frames(n: int, value: int) -> list[np.ndarray]:
    return [np.full((120, 160, 3), value, np.uint8)] * n


def test_several_sources_share_one_batched_round_and_name_every_output(tmp_path):
    cams = {
        "a.mp4": FakeCamera(_frames(30, 90), fail_after=30),
        "b.mp4": FakeCamera(_frames(30, 60), fail_after=30),
    }
    sources = [Source("door1", SourceSpec("video", "a.mp4")), Source("door2", SourceSpec("video", "b.mp4"))]
    (tmp_path / "rec").mkdir()
    det, engine = BatchFaces(), CountingEngine([2])
    out = io.StringIO()
    mon = Monitor(
        Config(monitor=MonitorConfig(min_votes=2)),
        sources,
        engine,
        det,
        Options(
            headless=True, events=tmp_path / "ev.jsonl", record=tmp_path / "rec", save_faces=tmp_path / "f"
        ),
        opener=_by_target(cams),
        out=out,
        err=io.StringIO(),
    )
    report = mon.run()
    assert report.frames == 60 and set(report.tallies) == {"door1", "door2"}
    assert max(det.batches) == 2  # both sources' frames in one MTCNN call
    assert max(engine.sizes) == 2  # both sources' crops in one classifier call
    rows = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert {(r["source"], r["event"], r["track_id"]) for r in rows} == {
        (s, e, 1) for s in ("door1", "door2") for e in ("flag", "left")
    }
    lines = out.getvalue().splitlines()
    assert any(" door1 FLAG person #1: no mask" in x for x in lines)
    assert any(" door2 FLAG person #1: no mask" in x for x in lines)
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == ["door1.mp4", "door2.mp4"]
    assert sorted(p.name.split("_")[1] for p in (tmp_path / "f").iterdir()) == ["door1", "door2"]
    assert (
        "door1 (video a.mp4): 30 frames" in report.summary
        and "door2 (video b.mp4): 30 frames" in report.summary
    )
    assert "mask-monitor total: 2 sources, 60 frames" in report.summary


def test_a_source_that_stops_never_stalls_the_others():
    stuck = StallingCamera(_frames(10, 90), good=3)
    steady = FakeCamera(_frames(10, 60), period=0.005)
    sources = [Source("stuck", SourceSpec("camera", 1)), Source("steady", SourceSpec("camera", 2))]
    results = []
    mon = Monitor(
        Config(),
        sources,
        ScriptedEngine([0]),
        BatchFaces(),
        Options(headless=True, duration=2.5),
        opener=_by_target({1: stuck, 2: steady}),
        out=io.StringIO(),
        err=io.StringIO(),
        on_result=lambda r: results.append(r.source),
    )
    try:
        report = mon.run()
    finally:
        stuck.hang.set()
    assert report.tallies["stuck"].frames == 3
    # the steady camera went on at its own pace the whole time: far more frames than the stuck one's 3
    assert report.tallies["steady"].frames >= 100
    panels = {p.name: p for p in mon.dashboard.panels()}
    assert not panels["stuck"].up and (
        "stalled" in panels["stuck"].link or "reconnect" in panels["stuck"].link
    )
    assert panels["steady"].up


def _screen_text(n: int, width: int, height: int, flags: int = 30, compliance: bool = False) -> list[str]:
    panels = [
        PanelInfo(
            f"door{i}",
            25.0 + i,
            i % 3,
            (i, 1, 2),
            "live" if i % 5 else "reconnecting (try 2)",
            LinkState.UP if i % 5 else LinkState.RECONNECTING,
            standing=Standing(3 / (i + 3), i + 3, i % 4 == 1, 600.0) if compliance else None,
        )
        for i in range(n)
    ]
    lines = [
        (f"[12:00:{i:02d}] door{i % n} FLAG person #{i}: no mask (male, 30-59; confidence 0.91)", "red")
        for i in range(flags)
    ]
    console = Console(width=width, height=height, record=True, force_terminal=True)
    console.print(SourcesScreen(panels, lines, "latest flags"))
    return console.export_text().splitlines()


def test_panels_fit_80x24_with_4_sources_and_200x50_with_16():
    for n, w, h in ((4, 80, 24), (16, 200, 50)):
        lines = _screen_text(n, w, h)
        assert len(lines) <= h and all(len(x) <= w for x in lines)
        text = "\n".join(lines)
        for i in range(n):
            assert f"door{i}" in text and f"{25.0 + i:.1f} fps" in text
        assert "reconnecting" in text and "FLAG person #0" in text  # the newest flags come first


def test_panels_with_compliance_still_fit_and_show_each_share_and_alert():
    for n, w, h in ((4, 80, 24), (16, 200, 50)):
        lines = _screen_text(n, w, h, compliance=True)
        assert len(lines) <= h and all(len(x) <= w for x in lines)
        text = "\n".join(lines)
        assert "FLAG person #0" in text  # the flags still have rows
        for i in range(n):  # i + 3 people, 3 of them without a correct mask
            assert f"compliance {i / (i + 3) * 100:.0f}% of {i + 3}" in text
        panel = [x for x in lines if "compliance" in x]
        assert sum(x.count("ALERT") for x in panel) == sum(i % 4 == 1 for i in range(n))


def test_the_live_screen_of_four_sources_shows_a_panel_each_and_the_merged_flags():
    cams = {f"d{i}.mp4": FakeCamera(_frames(30, 90), fail_after=30) for i in range(4)}
    sources = [Source(f"door{i}", SourceSpec("video", f"d{i}.mp4")) for i in range(4)]
    console = Console(record=True, width=80, height=24, force_terminal=True)
    mon = Monitor(
        Config(monitor=MonitorConfig(min_votes=2)),
        sources,
        ScriptedEngine([2]),
        BatchFaces(),
        Options(headless=False),
        opener=_by_target(cams),
        console=console,
        out=io.StringIO(),
        err=io.StringIO(),
    )
    mon.run()
    text = console.export_text()
    for i in range(4):
        assert f"door{i}" in text
    assert "latest flags (4)" in text and "door3 FLAG person #1: no mask" in text
    assert "none 1" in text  # each door saw one person without a mask
    assert "compliance 0% of 1" in text and "compliance 100%" not in text  # 0% of 1 at each door


def test_a_camera_that_is_down_at_start_is_waited_for_while_the_others_run():
    late = FakeCamera(_frames(200, 90), period=0.01)
    steady = FakeCamera(_frames(200, 60), period=0.01)
    opens = {1: 0}

    def opener(spec):
        if spec.target == 1:
            opens[1] += 1
            return None if opens[1] <= 2 else late  # down for the first two tries
        return steady

    cfg = Config(monitor=MonitorConfig(reconnect_initial_s=0.05, reconnect_max_s=0.1))
    sources = [Source("late", SourceSpec("camera", 1)), Source("steady", SourceSpec("camera", 2))]
    err = io.StringIO()
    mon = Monitor(
        cfg,
        sources,
        ScriptedEngine([0]),
        BatchFaces(),
        Options(headless=True, duration=1.5),
        opener=opener,
        out=io.StringIO(),
        err=err,
    )
    report = mon.run()
    assert opens[1] == 3 and report.tallies["late"].frames > 0 and report.tallies["steady"].frames > 0
    assert "camera 1 cannot be opened" in err.getvalue()


def test_with_one_source_a_camera_that_will_not_open_is_one_error():
    import pytest

    from engines.errors import UserError

    mon = Monitor(
        Config(),
        [Source("cam", SourceSpec("camera", 1))],
        ScriptedEngine([0]),
        BatchFaces(),
        Options(headless=True, duration=1.0),
        opener=lambda spec: None,
        out=io.StringIO(),
        err=io.StringIO(),
    )
    with pytest.raises(UserError, match="camera 1 cannot be opened"):
        mon.run()
