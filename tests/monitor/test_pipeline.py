"""monitor.decisions.pipeline: faults in frames and in the classifier, detection and classification rate."""

from __future__ import annotations

import cv2
import numpy as np

from engines.config import MonitorConfig
from engines.faces import Face
from monitor.config import Config
from monitor.inference.stage import InferenceStage
from monitor.sources.capture import Frame
from tests.monitor.fakes import NoFaces, OnceThenNothing, OneFace, ScriptedEngine, WeakThenStrong


def test_corrupt_frames_and_frames_of_another_size_are_reported_once_and_the_loop_goes_on():
    stage = InferenceStage(Config(), ScriptedEngine([0]), NoFaces())
    p = stage.source()
    good = np.zeros((120, 160, 3), np.uint8)
    inputs = [
        good,
        None,
        np.zeros((0, 0, 3), np.uint8),
        good.astype(np.float32),
        np.zeros((240, 320, 3), np.uint8),
        np.zeros((120, 160), np.uint8),
        np.zeros((120, 160, 4), np.uint8),
        None,
        np.zeros((60, 80, 3), np.uint8),
    ]
    results = [stage.process(p, Frame(i, i / 30, img)) for i, img in enumerate(inputs)]
    assert [r.skipped for r in results] == [False, True, True, True, False, False, False, True, False]
    messages = [m for r in results for m in r.messages]
    assert len([m for m in messages if "skipped" in m]) == 1  # reported once, then counted
    assert len([m for m in messages if "resized" in m]) == 1
    assert "frame 1 is empty or unreadable" in messages[0]
    assert p.faults["corrupt"] == 4 and p.faults["size"] == 2
    assert results[4].frame.image.shape == (120, 160, 3) and results[5].frame.image.shape == (120, 160, 3)


def test_classifier_failure_keeps_tracking_and_says_so_once():
    class Broken(ScriptedEngine):
        def classify(self, crops, batch_size=32):
            raise RuntimeError("input size mismatch")

    stage = InferenceStage(Config(), Broken([0]), OneFace())

    p = stage.source()
    results = [stage.process(p, Frame(i, i / 30, np.zeros((240, 320, 3), np.uint8))) for i in range(9)]
    assert all(len(r.tracks) == 1 for r in results)
    msgs = [m for r in results for m in r.messages]
    assert len(msgs) == 1 and "classifier failed on frame 0: RuntimeError: input size mismatch" in msgs[0]
    assert p.faults["classify"] == 3


def test_detection_runs_every_nth_frame_and_settled_tracks_are_reclassified_sparingly():
    cfg = Config(monitor=MonitorConfig(detect_every=3, classify_every=9, min_votes=3, vote_window=5))
    det, eng = OneFace(), ScriptedEngine([2])
    stage = InferenceStage(cfg, eng, det)
    p = stage.source()
    results = [stage.process(p, Frame(i, i / 30, np.zeros((240, 320, 3), np.uint8))) for i in range(30)]
    assert det.calls == 10 and [r.detected for r in results[:4]] == [True, False, False, True]
    # unsettled: classified on every detection frame (0, 3, 6); then every 9th frame at most (15, 24)
    assert [r.seq for r in results if r.classified] == [0, 3, 6, 15, 24]
    flags = [e for r in results for e in r.events if e.event == "flag"]
    assert len(flags) == 1 and flags[0].frame == 6 and flags[0].state.mask_name == "not_wear"
    assert p.finish(results[-1].frame)[0].event == "left"
    assert p.decider._history == {} and p._last_classified == {}  # nothing kept for people gone


def test_weak_detections_alone_never_make_a_person_nor_reach_the_classifier():
    """A tie found in every round at 0.6 (< monitor.confirm_score 0.9) stays tentative and unclassified;
    the same box found confidently from the 4th round on becomes a person then, and is flagged."""
    cfg = Config(monitor=MonitorConfig(detect_every=3, min_votes=1, vote_window=1))
    blank = np.zeros((240, 320, 3), np.uint8)
    stage = InferenceStage(cfg, ScriptedEngine([2]), WeakThenStrong())
    p = stage.source()
    results = [stage.process(p, Frame(i, i / 30, blank)) for i in range(30)]
    assert all(r.tracks and not r.tracks[0].confirmed for r in results)
    assert sum(r.classified for r in results) == 0 and all(not r.events for r in results)
    stage = InferenceStage(cfg, ScriptedEngine([2]), WeakThenStrong(strong_from=4))
    p = stage.source()
    results = [stage.process(p, Frame(i, i / 30, blank)) for i in range(30)]
    assert [r.seq for r in results if r.classified][0] == 9  # the 4th detection round
    assert results[9].tracks[0].confirmed and results[9].tracks[0].number == 1
    flags = [e for r in results for e in r.events if e.event == "flag"]
    assert len(flags) == 1 and flags[0].frame == 9


def test_a_one_off_detection_never_becomes_a_person():
    cfg = Config(monitor=MonitorConfig(detect_every=3, min_votes=1, vote_window=1))
    stage = InferenceStage(cfg, ScriptedEngine([2]), OnceThenNothing())
    p = stage.source()
    results = [stage.process(p, Frame(i, i / 30, np.zeros((240, 320, 3), np.uint8))) for i in range(12)]
    assert results[0].classified == 1 and not results[0].tracks[0].confirmed
    assert all(not r.events for r in results)  # no flag, no departure
    assert (
        results[6].tracks and results[7].tracks == [] and p.decider._history == {}
    )  # one missed round allowed


# --- issue 11: numbers of confirmed people, departures at the last sighting, scene cuts ---


class Script:
    """A detector that finds, on its n-th call, the faces the script gives (boxes), nothing after the end."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = 0

    def detect(self, frame, **kw):
        boxes = self.script[self.calls] if self.calls < len(self.script) else []
        self.calls += 1
        return [Face(b, 0.99) for b in boxes]

    def detect_region(self, frame, region, **kw):
        return []


def _scene(seed: int) -> np.ndarray:
    """A 'room': large blobs of light and dark (noise would average out to grey)."""
    small = np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    return cv2.resize(small, (320, 240), interpolation=cv2.INTER_LINEAR)


def test_person_numbers_count_confirmed_people_only():
    """A false detection and a one-off glimpse use up no number: the first real person is #1."""
    a, b, c = (20.0, 20.0, 80.0, 95.0), (200.0, 20.0, 260.0, 95.0), (120.0, 120.0, 180.0, 200.0)
    det = Script([[a], [], [], [], [b], [b], [b], [c], [c], [b, c]])  # a: once (false); then b, c
    stage = InferenceStage(
        Config(monitor=MonitorConfig(detect_every=1, min_votes=1)), ScriptedEngine([2]), det
    )
    p = stage.source()
    results = [stage.process(p, Frame(i, i / 30, np.zeros((240, 320, 3), np.uint8))) for i in range(10)]
    numbers = sorted({t.number for r in results for t in r.tracks if t.confirmed})
    assert numbers == [1, 2]
    assert sorted(e.track_id for e in p.finish(results[-1].frame)) == [1, 2]
    assert all(t.number == 0 for r in results for t in r.tracks if not t.confirmed)


def test_a_departure_carries_the_frame_and_box_of_the_last_sighting():
    box = (40.0, 30.0, 100.0, 105.0)
    det = Script([[box]] * 4)  # seen on detection frames 0, 3, 6, 9; then gone
    cfg = Config(monitor=MonitorConfig(detect_every=3, min_votes=1, track_max_missed=6))
    stage = InferenceStage(cfg, ScriptedEngine([0]), det)
    p = stage.source()
    events = [
        e
        for i in range(30)
        for e in stage.process(p, Frame(i, i / 10, np.zeros((240, 320, 3), np.uint8))).events
    ]
    left = [e for e in events if e.event == "left"]
    assert len(left) == 1 and left[0].frame == 9 and left[0].time == 0.9  # dropped at frame 16, seen at 9
    assert left[0].box == (40, 30, 100, 105)


def test_a_scene_cut_ends_every_track_but_a_change_of_light_does_not():
    box = (100.0, 60.0, 160.0, 140.0)
    det = Script([[box]] * 100)  # a face at the same place in both scenes
    stage = InferenceStage(
        Config(monitor=MonitorConfig(detect_every=1, min_votes=1)), ScriptedEngine([2]), det
    )
    p = stage.source()
    first, second = _scene(1), _scene(2)
    brighter = np.clip(first.astype(np.int16) + 35, 0, 255).astype(np.uint8)
    frames = [first] * 10 + [brighter] * 10 + [second] * 10
    results = [stage.process(p, Frame(i, i / 30, f.copy())) for i, f in enumerate(frames)]
    cuts = [r.seq for r in results if r.scene_cut]
    assert cuts == [20]  # the light changed at frame 10: not a cut
    left = [e for r in results for e in r.events if e.event == "left"]
    assert len(left) == 1 and left[0].track_id == 1 and left[0].frame == 19
    after = {t.number for r in results[22:] for t in r.tracks if t.confirmed}
    assert after == {2}  # the face after the cut is a new person, with votes of its own


def test_scene_change_zero_turns_the_check_off():
    det = Script([[(100.0, 60.0, 160.0, 140.0)]] * 100)
    cfg = Config(monitor=MonitorConfig(detect_every=1, min_votes=1, scene_change=0.0))
    stage = InferenceStage(cfg, ScriptedEngine([2]), det)
    p = stage.source()
    frames = [_scene(1)] * 5 + [_scene(2)] * 5
    results = [stage.process(p, Frame(i, i / 30, f.copy())) for i, f in enumerate(frames)]
    assert not any(r.scene_cut for r in results)
    assert {t.number for r in results for t in r.tracks if t.confirmed} == {1}
