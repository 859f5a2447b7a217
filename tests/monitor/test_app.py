"""monitor.app: a failing output stops the run with one line, never a hang."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engines.errors import UserError
from monitor.app import Monitor, Options
from monitor.config import Config
from monitor.sources.kinds import SourceSpec
from tests.monitor.fakes import FakeCamera, NoFaces, OneFace, Opener, ScriptedEngine


def test_a_failing_output_stops_the_run_with_one_line_and_never_hangs():
    """Disk full while the output queue is full: run() must return (no deadlock) with a UserError."""
    calls = {"n": 0}

    def slow_then_disk_full(result):
        calls["n"] += 1
        time.sleep(0.3 if calls["n"] == 25 else 0.02)  # the pipeline fills the queue meanwhile
        if calls["n"] == 25:
            raise OSError(28, "No space left on device", "events.jsonl")

    frames = [np.zeros((120, 160, 3), np.uint8)] * 200
    mon = Monitor(
        Config(),
        SourceSpec("video", "x.mp4"),
        ScriptedEngine([0]),
        NoFaces(),
        Options(headless=True, max_frames=40),
        opener=Opener([FakeCamera(frames, fail_after=200)]),
        out=io.StringIO(),
        err=io.StringIO(),
        on_result=slow_then_disk_full,
    )
    box = {}

    def go():
        try:
            box["report"] = mon.run()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            box["error"] = exc

    th = threading.Thread(target=go, daemon=True)
    th.start()
    th.join(30)
    assert not th.is_alive(), "run() hung after the output thread died"
    assert isinstance(box.get("error"), UserError)
    assert "writing the outputs events.jsonl failed: No space left on device" in str(box["error"])


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_under_the_events_log_is_one_line_and_keeps_the_video(tmp_path):
    video = tmp_path / "out.mp4"
    frames = [np.full((120, 160, 3), 90, np.uint8)] * 60
    mon = Monitor(
        Config(),
        SourceSpec("video", "x.mp4"),
        ScriptedEngine([2]),
        OneFace(box=(40.0, 30.0, 100.0, 110.0), second_look=True),
        Options(headless=True, events=Path("/dev/full"), record=video),
        opener=Opener([FakeCamera(frames, fail_after=60)]),
        out=io.StringIO(),
        err=io.StringIO(),
    )
    with pytest.raises(UserError, match=r"events file /dev/full: cannot write \(No space left on device\)"):
        mon.run()
    assert video.is_file() and video.stat().st_size > 0  # the recording is complete, renamed into place
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temp file left
