"""monitor.decisions.tracker: ids kept through motion and misses, duplicates and far faces refused."""

from __future__ import annotations

import pytest

from engines.faces import Face
from monitor.decisions.tracker import Tracker, iou


def face(x, y, s=100.0, score=0.99) -> Face:
    return Face((x, y, x + s, y + s * 1.25), score)


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
    assert tr.start(face(105, 102), 0) is None  # the same face twice
    tr.predict(3)
    pairs, left_t, left_f = tr.match([face(400, 100), face(100, 100, s=30)])  # far away; much smaller
    assert pairs == [] and left_t == [t] and len(left_f) == 2
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


def test_only_a_confident_detection_makes_a_track_a_person():
    """A tie found again and again at a low score stays tentative; a masked face scoring low at first
    becomes a person with its first confident detection, and keeps its track through low scores after."""
    tr = Tracker(confirm_score=0.9)
    tie = tr.start(face(300, 300, 50, score=0.6), 0)
    masked = tr.start(face(0, 50, score=0.5), 0)
    for seq, masked_score in ((3, 0.7), (6, 0.95), (9, 0.45)):
        tr.predict(seq)
        pairs, _, _ = tr.match([face(300, 300, 50, score=0.8), face(0, 50, score=masked_score)])
        for t, f in pairs:
            tr.confirm(t, f, seq)
        assert not tie.confirmed and tie.number == 0
        assert masked.confirmed == (seq >= 6)
    assert masked.number == 1 and masked.hits == 4
    # without a confirm_score, two detections make a person
    plain = Tracker()
    t = plain.start(face(0, 0, score=0.4), 0)
    plain.confirm(t, face(0, 0, score=0.4), 3)
    assert t.confirmed and t.number == 1
