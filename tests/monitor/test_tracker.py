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


def marked(x, y, s=100.0, score=0.99) -> Face:
    """A face with MTCNN's five landmarks where a frontal face has them: eyes at 0.4 of the box's height,
    the nose at 0.6, the mouth corners at 0.8."""
    import numpy as np

    h = s * 1.25
    marks = [(0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8), (0.65, 0.8)]
    return Face((x, y, x + s, y + h), score, np.array([(x + u * s, y + v * h) for u, v in marks], np.float32))


def test_a_confident_detection_makes_a_person_only_with_its_lower_face_in_the_frame():
    """A collar at the bottom of the picture, taken by MTCNN for the top of a face cut by the frame's edge,
    scores 0.98 with its mouth just inside and its chin beyond: no mask state can be read from it, so it
    never becomes a person; the same detection wholly in view does. Without landmarks nothing changes."""
    from monitor.decisions.tracker import lower_face_in_view

    size = (640, 480)
    assert lower_face_in_view(marked(300, 300), size)  # box bottom at 425
    assert not lower_face_in_view(marked(300, 400), size)  # mouth at 500: below the frame
    cut = marked(300, 375, s=100)  # mouth corners at 475 (inside); the chin (475 + 0.5 * 50) is not
    assert not lower_face_in_view(cut, size)
    assert lower_face_in_view(cut, (640, 520)) and lower_face_in_view(cut, None)
    assert not lower_face_in_view(marked(-60, 100), size)  # a mouth corner left of the frame
    assert lower_face_in_view(face(300, 400), size)  # no landmarks: not judged
    tr = Tracker(confirm_score=0.9)
    collar = tr.start(cut, 0, size)
    whole = tr.start(marked(0, 50), 0, size)
    for seq in (3, 6):
        tr.predict(seq)
        pairs, _, _ = tr.match([marked(300, 375), marked(0, 50)])
        for t, f in pairs:
            tr.confirm(t, f, seq, size)
    assert whole.confirmed and whole.number == 1
    assert collar.hits == 3 and not collar.confirmed and collar.number == 0
    tr.predict(9)
    tr.confirm(collar, marked(300, 300), 9, size)  # the same track, now wholly in view
    assert collar.confirmed and collar.number == 2
