"""The monitor's parts one by one: tracker, votes and flags, stage timer, capture thread (fake devices),
events, the Live screen through a recording console, faults in frames."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from engines.config import Config, MonitorConfig
from engines.errors import UserError
from engines.faces import Face
from engines.labels import encode
from monitor.capture import Capture, Frame, SourceSpec
from monitor.decide import Decider, marginals, vote
from monitor.events import EVENT_KEYS, Event, EventLog
from monitor.pipeline import FrameResult, Pipeline, TrackView
from monitor.timing import StageTimer
from monitor.tracker import Tracker, iou
from monitor.ui import Dashboard, Tally, summary_text
from tests.monitor_fakes import ClosedDevice, FakeCamera, Opener, ScriptedEngine, frame_number, numbered_frames


def probs_for(mask: int, gender: int = 0, age: int = 1, p: float = 0.8) -> np.ndarray:
    out = np.full(18, (1 - p) / 17)
    out[encode(mask, gender, age)] = p
    return out


# --- tracker -------------------------------------------------------------------------------------------------

def face(x, y, s=100.0) -> Face:
    return Face((x, y, x + s, y + s * 1.25), 0.99)


def test_tracker_keeps_ids_through_motion_and_misses():
    tr = Tracker(iou_threshold=0.3, max_missed=6)
    tr.predict(0)
    _, _, new = tr.match([face(0, 50), face(400, 50)])
    a, b = (tr.start(f, 0) for f in new)
    # both move right 12 px per frame; detection every 3rd frame
    for seq in (3, 6, 9):
        tr.predict(seq)
        pairs, left_t, left_f = tr.match([face(400 + 12 * seq, 50), face(12 * seq, 50)])
        assert not left_t and not left_f
        for t, f in pairs:
            tr.confirm(t, f, seq)
        assert {t.id for t in tr.tracks} == {a.id, b.id}
        assert tr.tracks[0].box[0] == pytest.approx(12 * seq)
    # between detections the box is carried forward at the measured speed
    tr.predict(10)
    assert a.box[0] == pytest.approx(120, abs=1.0) and not a.fresh
    # a far jump (beyond IoU) is still matched by centre distance when the size agrees
    tr.predict(12)
    pairs, _, new = tr.match([face(12 * 12 + 50, 50)])
    assert pairs and pairs[0][0] is a and not new
    tr.confirm(a, pairs[0][1], 12)
    # b is missed: it survives max_missed frames, then leaves
    assert tr.prune(15) == []
    gone = tr.prune(16)
    assert [t.id for t in gone] == [b.id]


def test_tracker_refuses_duplicate_tracks_and_far_faces():
    tr = Tracker()
    t = tr.start(face(100, 100), 0)
    assert tr.start(face(105, 102), 0) is None          # the same face twice
    tr.predict(3)
    pairs, left_t, left_f = tr.match([face(400, 100), face(100, 100, s=30)])  # far away; much smaller
    assert pairs == [] and left_t == [t] and len(left_f) == 2
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


# --- votes and flags -----------------------------------------------------------------------------------------

def test_marginals_and_vote():
    p = probs_for(2, gender=1, age=2, p=0.7)
    m, g, a = marginals(p)
    assert m.argmax() == 2 and g.argmax() == 1 and a.argmax() == 2
    assert m.sum() == pytest.approx(1.0)
    s = vote(np.stack([probs_for(2), probs_for(2), probs_for(0)]), min_votes=3)
    assert s.mask == 2 and s.settled and s.votes == 3 and 0.5 < s.confidence < 0.8
    assert s.cls == encode(2, 0, 1)
    assert not vote(np.stack([probs_for(2), probs_for(2)]), min_votes=3).settled   # too few
    assert not vote(np.stack([probs_for(2), probs_for(0), probs_for(1)]), min_votes=3).settled  # no majority


def test_flag_once_per_person_and_state():
    d = Decider(vote_window=5, min_votes=3)
    flags = []
    seq = [2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1]
    for m in seq:
        d.add(7, probs_for(m))
        f = d.new_flag(7)
        if f is not None:
            flags.append(f.mask_name)
    # no mask -> flagged once; mask -> nothing; no mask again -> not again; incorrect -> a new flag
    assert flags == ["not_wear", "incorrect"]
    assert d.settled_state(7).mask == 1
    d.forget(7)
    assert d.state(7) is None and d.votes(7) == 0


def test_flag_states_are_configurable():
    d = Decider(vote_window=3, min_votes=1, flag_states=("not_wear",))
    d.add(1, probs_for(1))
    assert d.new_flag(1) is None
    d2 = Decider(vote_window=3, min_votes=1, flag_states=("wear",))
    d2.add(1, probs_for(0))
    assert d2.new_flag(1).mask_name == "wear"
    with pytest.raises(ValueError):
        d.add(1, np.ones(5))


# --- timing --------------------------------------------------------------------------------------------------

def test_stage_timer_window_and_totals():
    t = StageTimer(window=4)
    for ms in (1, 2, 3, 4, 100, 100, 100, 100):
        t.add("detect", ms)
    for _ in range(8):
        t.frame_done()
    st = t.stats()["detect"]
    assert st.runs == 8 and st.median_ms == 100 and st.mean_ms_per_frame == pytest.approx(410 / 8)
    with t.stage("classify"):
        pass
    assert t.stats()["classify"].runs == 1
    assert list(t.stats()) == ["detect", "classify"]


# --- capture -------------------------------------------------------------------------------------------------

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
    cap = Capture(SourceSpec("video", "fake.mp4"), opener=Opener([FakeCamera(frames, fail_after=40)]),
                  queue_size=4).start()
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
    assert max(np.diff(numbers)) > 1            # older frames were skipped, not queued
    assert cam.released


def test_realtime_file_paces_like_a_camera():
    cap = Capture(SourceSpec("video", "f.mp4"), realtime=True,
                  opener=Opener([FakeCamera(numbered_frames(12), fail_after=12, fps=100.0)])).start()
    assert cap.newest_only and cap.pace and cap.fps == 100.0
    t0 = time.monotonic()
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
    cap = Capture(SourceSpec("url", "rtsp://cam/1"), opener=opener, reconnect_initial_s=0.01,
                  reconnect_max_s=0.05)
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
    cap = Capture(SourceSpec("url", "rtsp://cam/2"), opener=opener, reconnect_initial_s=0.02,
                  reconnect_max_s=1.0).start()
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
    empty = FakeCamera(numbered_frames(1), fail_after=0)   # what OpenCV does with many non-video files
    with pytest.raises(UserError, match="video notes.txt cannot be read"):
        Capture(SourceSpec("video", "notes.txt"), opener=Opener([empty])).start()
    assert empty.released
    text = tmp_path / "notes.jpg"
    text.write_text("not a video")
    with pytest.raises(UserError, match=f"video {text} cannot be read"):
        Capture(SourceSpec("video", str(text))).start()   # the real OpenCV opener


# --- pipeline faults ------------------------------------------------------------------------------------------

class NoFaces:
    """A detector that finds nothing (the pipeline's frame handling is under test, not MTCNN)."""

    def detect(self, frame, **kw):
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
        return []

    def detect_region(self, frame, region, **kw):
        return []


def test_corrupt_frames_and_frames_of_another_size_are_reported_once_and_the_loop_goes_on():
    p = Pipeline(Config(), ScriptedEngine([0]), NoFaces())
    good = np.zeros((120, 160, 3), np.uint8)
    inputs = [good, None, np.zeros((0, 0, 3), np.uint8), good.astype(np.float32), np.zeros((240, 320, 3), np.uint8),
              np.zeros((120, 160), np.uint8), np.zeros((120, 160, 4), np.uint8), None, np.zeros((60, 80, 3), np.uint8)]
    results = [p.process(Frame(i, i / 30, img)) for i, img in enumerate(inputs)]
    assert [r.skipped for r in results] == [False, True, True, True, False, False, False, True, False]
    messages = [m for r in results for m in r.messages]
    assert len([m for m in messages if "skipped" in m]) == 1          # reported once, then counted
    assert len([m for m in messages if "resized" in m]) == 1
    assert "frame 1 is empty or unreadable" in messages[0]
    assert p.faults["corrupt"] == 4 and p.faults["size"] == 2
    assert results[4].frame.image.shape == (120, 160, 3) and results[5].frame.image.shape == (120, 160, 3)


class OneFace:
    def __init__(self):
        self.calls = 0

    def detect(self, frame, **kw):
        self.calls += 1
        return [Face((40.0, 30.0, 100.0, 105.0), 0.99)]

    def detect_region(self, frame, region, **kw):
        return []


def test_classifier_failure_keeps_tracking_and_says_so_once():
    class Broken(ScriptedEngine):
        def classify(self, crops, batch_size=32):
            raise RuntimeError("input size mismatch")

    p = Pipeline(Config(), Broken([0]), OneFace())
    results = [p.process(Frame(i, i / 30, np.zeros((240, 320, 3), np.uint8))) for i in range(9)]
    assert all(len(r.tracks) == 1 for r in results)
    msgs = [m for r in results for m in r.messages]
    assert len(msgs) == 1 and "classifier failed on frame 0: RuntimeError: input size mismatch" in msgs[0]
    assert p.faults["classify"] == 3


def test_detection_runs_every_nth_frame_and_settled_tracks_are_reclassified_sparingly():
    cfg = Config(monitor=MonitorConfig(detect_every=3, classify_every=9, min_votes=3, vote_window=5))
    det, eng = OneFace(), ScriptedEngine([2])
    p = Pipeline(cfg, eng, det)
    results = [p.process(Frame(i, i / 30, np.zeros((240, 320, 3), np.uint8))) for i in range(30)]
    assert det.calls == 10 and [r.detected for r in results[:4]] == [True, False, False, True]
    # unsettled: classified on every detection frame (0, 3, 6); then every 9th frame at most (15, 24)
    assert [r.seq for r in results if r.classified] == [0, 3, 6, 15, 24]
    flags = [e for r in results for e in r.events if e.event == "flag"]
    assert len(flags) == 1 and flags[0].frame == 6 and flags[0].state.mask_name == "not_wear"
    assert p.finish(results[-1].frame)[0].event == "left"
    assert p.decider._history == {} and p._last_classified == {}   # nothing kept for people gone


# --- events --------------------------------------------------------------------------------------------------

def test_event_schema_and_append(tmp_path):
    d = Decider(min_votes=1)
    state = d.add(1, probs_for(1, gender=1, age=2, p=0.9))
    log = EventLog(tmp_path / "ev.jsonl")
    log.write(Event("flag", 1.23456, 37, 1, (10, 20, 110, 145), state))
    log.close()
    log = EventLog(tmp_path / "ev.jsonl")   # appends
    log.write(Event("left", 2.0, 60, 1, (12, 20, 112, 145), state))
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert [tuple(r) for r in rows] == [EVENT_KEYS, EVENT_KEYS]
    assert rows[0] == {"event": "flag", "time": 1.235, "frame": 37, "track_id": 1, "box": [10, 20, 110, 145],
                       "mask": "incorrect", "gender": "female", "age": ">=60", "class": encode(1, 1, 2),
                       "confidence": pytest.approx(0.9 + 0.1 / 17 * 5, abs=1e-3)}


# --- the screen ----------------------------------------------------------------------------------------------

def _result(seq, tracks, events=()):
    return FrameResult(Frame(seq, seq / 30, None), seq, tracks=list(tracks), events=list(events))


def test_live_screen_shows_people_flags_and_colours():
    d = Decider(min_votes=1)
    s_no, s_ok, s_inc = d.add(1, probs_for(2, p=0.93)), d.add(2, probs_for(0)), d.add(3, probs_for(1))
    timer = StageTimer()
    timer.add("detect", 21.0)
    dash = Dashboard("video entrance.mp4", False, timer, status=lambda: "reconnecting to camera 0 (try 2)")
    tracks = [TrackView(1, (0, 0, 10, 10), s_no, s_no, True, 0, 30), TrackView(2, (0, 0, 10, 10), s_ok, s_ok, True, 0, 9),
              TrackView(3, (0, 0, 10, 10), s_inc, s_inc, False, 4, 12), TrackView(4, (0, 0, 10, 10), None, None, True, 0, 1)]
    dash.update(_result(45, tracks, [Event("flag", 1.5, 45, 1, (0, 0, 10, 10), s_no),
                                     Event("flag", 1.5, 45, 3, (0, 0, 10, 10), s_inc)]))
    console = Console(record=True, width=130, force_terminal=True, color_system="truecolor")
    console.print(dash.render())
    text = console.export_text(clear=False)
    assert "no mask FLAG" in text and "incorrect mask FLAG" in text and "#4" in text
    assert "latest flags (2)" in text and "FLAG person #1: no mask" in text
    assert "people seen 3" in text and "no mask 1" in text and "reconnecting to camera 0" in text
    assert "detect 21.0" in text
    styled = console.export_text(styles=True)
    assert "\x1b[1;31m#1 " in styled            # the unmasked person's row in red
    assert "\x1b[1;33m#3 " in styled            # the incorrect one's in yellow
    assert "\x1b[32m#2 " in styled              # the masked one's in green


def test_summary_counts_people_and_lists_flags():
    d = Decider(min_votes=1)
    s_no, s_ok = d.add(1, probs_for(2)), d.add(2, probs_for(0))
    tally = Tally()
    tally.update(_result(0, [TrackView(1, (0, 0, 1, 1), s_no, s_no, True, 0, 1),
                             TrackView(2, (0, 0, 1, 1), s_ok, s_ok, True, 0, 1)],
                         [Event("flag", 61.5, 0, 1, (0, 0, 1, 1), s_no)]))
    unsettled = vote(np.stack([probs_for(2)]), min_votes=3)
    tally.update(_result(1, [], [Event("left", 2.0, 1, 9, (0, 0, 1, 1), unsettled)]))
    text = summary_text(tally, "video x.mp4", 2.0, live=False)
    assert "people seen: 2 (mask: 1, incorrect mask: 0, no mask: 1); 1 more too briefly to tell" in text
    assert "flags: 1" in text and "[01:01.50] FLAG person #1: no mask" in text
    assert "2 frames in 2.0 s" in text
    assert "faults" not in text
    text = summary_text(tally, "video x.mp4", 2.0, live=False, faults={"size": 12, "classify": 1, "corrupt": 3})
    assert "faults: 1 classifier failures, 12 frames of another size (resized)" in text


class OnceThenNothing:
    """A false detection on the first frame only."""

    def __init__(self):
        self.calls = 0

    def detect(self, frame, **kw):
        self.calls += 1
        return [Face((40.0, 30.0, 100.0, 105.0), 0.7)] if self.calls == 1 else []

    def detect_region(self, frame, region, **kw):
        raise AssertionError("no second look for a tentative track")


def test_a_one_off_detection_never_becomes_a_person():
    cfg = Config(monitor=MonitorConfig(detect_every=3, min_votes=1, vote_window=1))
    p = Pipeline(cfg, ScriptedEngine([2]), OnceThenNothing())
    results = [p.process(Frame(i, i / 30, np.zeros((240, 320, 3), np.uint8))) for i in range(12)]
    assert results[0].classified == 1 and not results[0].tracks[0].confirmed
    assert all(not r.events for r in results)                 # no flag, no departure
    assert results[6].tracks and results[7].tracks == [] and p.decider._history == {}   # one missed round allowed


class _NoFaces:
    def detect(self, frame, **kw):
        return []

    def detect_region(self, frame, region, **kw):
        return []


def test_a_failing_output_stops_the_run_with_one_line_and_never_hangs():
    """Disk full while the output queue is full: run() must return (no deadlock) with a UserError."""
    import io
    import threading

    from engines.config import Config
    from monitor.app import Monitor, Options
    from tests.monitor_fakes import ScriptedEngine

    calls = {"n": 0}

    def slow_then_disk_full(result):
        calls["n"] += 1
        time.sleep(0.3 if calls["n"] == 25 else 0.02)  # the pipeline fills the queue meanwhile
        if calls["n"] == 25:
            raise OSError(28, "No space left on device", "events.jsonl")

    frames = [np.zeros((120, 160, 3), np.uint8)] * 200
    mon = Monitor(Config(), SourceSpec("video", "x.mp4"), ScriptedEngine([0]), _NoFaces(),
                  Options(headless=True, max_frames=40), opener=Opener([FakeCamera(frames, fail_after=200)]),
                  out=io.StringIO(), err=io.StringIO(), on_result=slow_then_disk_full)
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


class _OneFace:
    """The same face in every frame: the run flags it (ScriptedEngine says no mask), so events are written."""

    def detect(self, frame, **kw):
        return [Face((40.0, 30.0, 100.0, 110.0), 0.99)]

    def detect_region(self, frame, region, **kw):
        return self.detect(frame)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_under_the_events_log_is_one_line_and_keeps_the_video(tmp_path):
    import io

    from engines.config import Config
    from monitor.app import Monitor, Options
    from tests.monitor_fakes import ScriptedEngine

    video = tmp_path / "out.mp4"
    frames = [np.full((120, 160, 3), 90, np.uint8)] * 60
    mon = Monitor(Config(), SourceSpec("video", "x.mp4"), ScriptedEngine([2]), _OneFace(),
                  Options(headless=True, events=Path("/dev/full"), record=video),
                  opener=Opener([FakeCamera(frames, fail_after=60)]), out=io.StringIO(), err=io.StringIO())
    with pytest.raises(UserError, match=r"events file /dev/full: cannot write \(No space left on device\)"):
        mon.run()
    assert video.is_file() and video.stat().st_size > 0        # the recording is complete, renamed into place
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]   # no temp file left


def test_a_record_folder_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    from engines import fileio
    from monitor import events

    def refuse(*a, **k):   # what mkstemp does in a folder this user may not write in
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fileio.tempfile, "mkstemp", refuse)
    with pytest.raises(UserError, match=r"--record .*rec.mp4: cannot write \(Permission denied\)"):
        events.Recorder(tmp_path / "rec.mp4", 25.0)


def test_a_recorder_that_cannot_open_leaves_no_empty_file(tmp_path, monkeypatch):
    from monitor import events

    class Refusing:
        def __init__(self, *a, **k):
            pass

        def isOpened(self):
            return False

        def release(self):
            pass

    out = tmp_path / "rec.mp4"
    out.write_bytes(b"an earlier good recording")
    monkeypatch.setattr(events.cv2, "VideoWriter", Refusing)
    rec = events.Recorder(out, 25.0)
    with pytest.raises(UserError, match="cannot write this video format"):
        rec.write(np.zeros((48, 64, 3), np.uint8))
    rec.close()
    assert out.read_bytes() == b"an earlier good recording"
    assert [p.name for p in tmp_path.iterdir()] == ["rec.mp4"]
