"""monitor.inference.stage: the one detector and the one classifier of a run, shared by every source; a
round over N sources, each source's tracking and votes its own."""

from __future__ import annotations

import numpy as np

from engines.config import MonitorConfig
from monitor.config import Config
from monitor.decisions.pipeline import CropsDue, Look, SourceDecisions
from monitor.inference.stage import InferenceStage
from monitor.sources.capture import Frame
from tests.monitor.fakes import OneFace
from tests.monitor.test_multi import BatchFaces, CountingEngine


def _blank(h: int = 120, w: int = 160) -> np.ndarray:
    return np.zeros((h, w, 3), np.uint8)


def test_two_sources_share_one_detector_call_and_one_classify_per_round():
    det, engine = BatchFaces(), CountingEngine([2])
    cfg = Config(monitor=MonitorConfig(detect_every=2, min_votes=2))
    stage = InferenceStage(cfg, engine, det)
    front, back = stage.source("front"), stage.source("back")
    flags = {"front": 0, "back": 0}
    for i in range(8):
        results = stage.run_round([(front, Frame(i, i / 10, _blank())), (back, Frame(i, i / 10, _blank()))])
        assert [r.source for r in results] == ["front", "back"]
        assert [r.detected for r in results] == [i % 2 == 0] * 2
        for r in results:
            flags[r.source] += sum(e.event == "flag" for e in r.events)
    assert det.batches == [2, 2, 2, 2]  # one MTCNN call per detection round, with both frames
    # at most one classifier call per detection round, with both sources' crops in it
    assert 1 <= len(engine.sizes) <= 4 and set(engine.sizes) == {2}
    assert flags == {"front": 1, "back": 1}  # the votes stay per source: each flags its own person once
    assert front.tracker is not back.tracker and front.decider is not back.decider
    # the sources hold no detector or engine: the stage lends its detector to each step that needs it
    assert not any(hasattr(s, a) for s in (front, back) for a in ("detector", "engine"))
    assert stage.timer.frames == 8 and {"detect", "classify", "total"} <= set(stage.timer.stats())


def test_frames_of_another_size_are_a_batch_of_their_own_and_a_source_without_a_frame_waits():
    det, engine = BatchFaces(), CountingEngine([0])
    stage = InferenceStage(Config(monitor=MonitorConfig(detect_every=1)), engine, det)
    a, b, c = stage.source("a"), stage.source("b"), stage.source("c")
    stage.run_round([(a, Frame(0, 0.0, _blank())), (b, Frame(0, 0.0, _blank(240, 320)))])
    assert sorted(det.batches) == [1, 1]  # two sizes: two calls (detect() counts as a batch of one)
    stage.run_round([(a, Frame(1, 0.1, _blank())), (c, Frame(0, 0.1, _blank()))])
    assert det.batches[-1] == 2 and engine.sizes[-1] == 2
    assert (a.seq, b.seq, c.seq) == (1, 0, 0)  # b gave no frame in the second round: it did not move


def test_a_frame_travels_the_steps_as_values():
    """begin -> track -> crops_due -> decide -> end, each step taking what the one before returned."""
    cfg = Config(monitor=MonitorConfig(detect_every=1, min_votes=1))
    engine, det = CountingEngine([2]), OneFace()
    src = SourceDecisions(cfg, engine.meta, name="door")
    look = src.begin(Frame(0, 0.0, _blank(240, 320)))
    assert isinstance(look, Look) and look.small is not None and look.result.source == "door"
    src.track(look, det.detect(look.small), det)
    due = src.crops_due(look)
    assert isinstance(due, CropsDue) and len(due.crops) == len(due.tracks) == 1
    src.decide(due, engine.classify(list(due.crops)))
    result = src.end(look)
    assert result.classified == 1 and len(result.tracks) == 1 and result.tracks[0].state.mask == 2
    # a frame that is not due for detection: nothing to track or classify
    idle = SourceDecisions(Config(monitor=MonitorConfig(detect_every=2)), engine.meta)
    idle.begin(Frame(0, 0.0, _blank()))
    skipped = idle.begin(Frame(1, 0.1, _blank()))
    assert skipped.small is None and idle.crops_due(skipped).crops == ()
