"""monitor.pipeline: faults in frames and in the classifier, detection and classification cadence."""

from __future__ import annotations

import numpy as np

from engines.config import Config, MonitorConfig
from monitor.capture import Frame
from monitor.pipeline import Pipeline
from tests.monitor.fakes import NoFaces, OnceThenNothing, OneFace, ScriptedEngine


def test_corrupt_frames_and_frames_of_another_size_are_reported_once_and_the_loop_goes_on():
    p = Pipeline(Config(), ScriptedEngine([0]), NoFaces())
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
    results = [p.process(Frame(i, i / 30, img)) for i, img in enumerate(inputs)]
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
    assert p.decider._history == {} and p._last_classified == {}  # nothing kept for people gone


def test_a_one_off_detection_never_becomes_a_person():
    cfg = Config(monitor=MonitorConfig(detect_every=3, min_votes=1, vote_window=1))
    p = Pipeline(cfg, ScriptedEngine([2]), OnceThenNothing())
    results = [p.process(Frame(i, i / 30, np.zeros((240, 320, 3), np.uint8))) for i in range(12)]
    assert results[0].classified == 1 and not results[0].tracks[0].confirmed
    assert all(not r.events for r in results)  # no flag, no departure
    assert (
        results[6].tracks and results[7].tracks == [] and p.decider._history == {}
    )  # one missed round allowed
