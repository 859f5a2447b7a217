"""monitor.sources.capture: the capture thread with fake devices (files, live, reconnects, refusals)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engines.errors import UserError
from monitor.sources.capture import Capture, Frame
from monitor.sources.kinds import SourceSpec
from tests.monitor.fakes import ClosedDevice, FakeCamera, Opener, frame_number, numbered_frames


def drain(cap: Capture, n: int, pause: float = 0.0, timeout: float = 20.0) -> list[Frame]:
    got, t0 = [], time.monotonic()
    while len(got) < n and time.monotonic() - t0 < timeout:
        f = cap.get(0.2)
        if f is None:
            if cap.finished:
                break
            continue
        got.append(f)
        if pause:
            time.sleep(pause)
    return got


def test_file_mode_hands_over_every_frame_in_order():
    frames = numbered_frames(40)
    cap = Capture(
        SourceSpec("video", "fake.mp4"), opener=Opener([FakeCamera(frames, fail_after=40)]), queue_size=4
    ).start()
    got = drain(cap, 100, pause=0.002)
    cap.stop()
    assert [frame_number(f.image) for f in got] == list(range(40))
    assert [f.index for f in got] == list(range(40)) and cap.dropped == 0 and cap.finished
    assert got[30].time == pytest.approx(1.0)  # 30 fps: position in the file


def test_live_source_keeps_only_the_newest_frame_with_a_slow_consumer():
    cam = FakeCamera(numbered_frames(5000), period=0.001)
    cap = Capture(SourceSpec("camera", 0), opener=Opener([cam])).start()
    got = drain(cap, 10, pause=0.05)
    cap.stop()
    numbers = [frame_number(f.image) for f in got]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert cap.dropped > 0 and cap.dropped == cam.reads - len(got) - (1 if cap._slot is not None else 0)
    assert max(np.diff(numbers)) > 1  # older frames were skipped, not queued
    assert cam.released


def test_realtime_file_paces_like_a_camera():
    t0 = time.monotonic()  # before start: on a loaded machine the thread may run ahead of this one
    cap = Capture(
        SourceSpec("video", "f.mp4"),
        realtime=True,
        opener=Opener([FakeCamera(numbered_frames(12), fail_after=12, fps=100.0)]),
    ).start()
    assert cap.newest_only and cap.pace and cap.fps == 100.0
    got = drain(cap, 50)
    elapsed = time.monotonic() - t0
    cap.stop()
    assert [f.index for f in got] == sorted({f.index for f in got}) and cap.finished
    assert elapsed >= 0.09  # 12 frames at 100 fps are handed out over >= 0.11 s, not at once


def test_reconnects_with_back_off_after_a_broken_stream():
    frames = numbered_frames(50)
    first = FakeCamera(frames, fail_after=8)
    second = FakeCamera(frames)
    opener = Opener([first, ClosedDevice(), ClosedDevice(), second])
    cap = Capture(
        SourceSpec("url", "rtsp://cam/1"), opener=opener, reconnect_initial_s=0.01, reconnect_max_s=0.05
    )
    statuses: list[str] = []
    cap.start()
    got, t0 = [], time.monotonic()
    while len(got) < 20 and time.monotonic() - t0 < 20:
        statuses += cap.status_changes()
        f = cap.get(0.05)
        if f is not None:
            got.append(f)
    cap.stop()
    statuses += cap.status_changes()
    assert cap.reconnects == 1 and opener.opened == 4
    tries = [s for s in statuses if s.startswith("reconnecting to stream rtsp://cam/1 (try")]
    assert [s.split("(try ")[1].split(",")[0] for s in tries] == ["1", "2", "3"]
    waits = [float(s.split("waiting ")[1].split(" s")[0]) for s in tries]
    assert waits == sorted(waits) and waits[-1] > waits[0]  # back-off grows
    assert first.released and second.reads > 0 and len(got) == 20
    assert cap.status.startswith("live")


def test_a_source_that_reopens_but_stays_silent_still_backs_off():
    first = FakeCamera(numbered_frames(10), fail_after=3)
    # each reopen gives a device that opens fine and never delivers a frame
    opener = Opener([first] + [FakeCamera(numbered_frames(1), fail_after=0) for _ in range(8)])
    cap = Capture(
        SourceSpec("url", "rtsp://cam/2"), opener=opener, reconnect_initial_s=0.02, reconnect_max_s=1.0
    ).start()
    t0 = time.monotonic()
    while len(opener.times) < 6 and time.monotonic() - t0 < 20:
        cap.get(0.05)
    cap.stop()
    gaps = np.diff(opener.times[1:6])
    assert len(gaps) == 4 and all(b > 1.5 * a for a, b in zip(gaps, gaps[1:])), gaps
    assert cap.reconnects == 0  # a reopen that never gave a frame is not a reconnection


def test_a_camera_that_will_not_open_is_one_clear_error():
    cap = Capture(SourceSpec("camera", 3), opener=Opener([ClosedDevice()]))
    with pytest.raises(UserError, match="camera 3 cannot be opened"):
        cap.start()

    def broken(spec):
        raise RuntimeError("driver exploded")

    with pytest.raises(UserError, match="stream rtsp://x cannot be opened"):
        Capture(SourceSpec("url", "rtsp://x"), opener=broken).start()


def test_a_file_that_opens_but_gives_no_frame_is_not_a_video(tmp_path):
    empty = FakeCamera(numbered_frames(1), fail_after=0)  # what OpenCV does with many non-video files
    with pytest.raises(UserError, match="video notes.txt cannot be read"):
        Capture(SourceSpec("video", "notes.txt"), opener=Opener([empty])).start()
    assert empty.released
    text = tmp_path / "notes.jpg"
    text.write_text("not a video")
    with pytest.raises(UserError, match=f"video {text} cannot be read"):
        Capture(SourceSpec("video", str(text))).start()  # the real OpenCV opener
