"""A light IoU + centroid tracker: one id per person while in view, between detections too.

Detection runs on every Nth frame only and MTCNN misses masked faces now and then, so a track lives on
without a detection for up to `max_missed` frames, its box carried forward by the velocity seen between
its last detections (the size stays that of the last detection). Matching is greedy: first by IoU, then
(for a face that moved far between two detections) by centre distance relative to the face size, with a
size check. A track is tentative until a second detection confirms it; only then does it get the person
number that users see (1, 2, ... in the order people are confirmed), so false detections and one-off
glimpses never use up numbers. The confident detection must show the lower face: a detection whose mouth
corners or chin (from MTCNN's landmarks) lie outside the frame (a face cut by the frame's edge, or a collar
at the bottom of the picture that MTCNN takes for the top of a face) shows nothing a mask state can be
read from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engines.faces import Box, Face, iou

_MAX_EXTRAPOLATE = 10  # frames of velocity extrapolation at most; beyond it the box stays put


def _size(box: Box) -> float:
    return max(((box[2] - box[0]) * (box[3] - box[1])) ** 0.5, 1.0)


def similar_size(a: Box, b: Box) -> bool:
    """Could these be the same face a moment apart? (a face does not grow or shrink 1.6x between looks)"""
    return 0.6 <= _size(a) / _size(b) <= 1.6


def _centre(box: Box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _centre_distance(a: Box, b: Box) -> float:
    """Centre distance in units of the larger box's size."""
    ca = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2)
    cb = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    return float(np.hypot(ca[0] - cb[0], ca[1] - cb[1])) / max(_size(a), _size(b))


@dataclass
class Track:
    id: int
    box: Box  # where the face is now (measured, or carried forward)
    first_seq: int  # pipeline frame counter when the track began
    last_seq: int  # ... when a detection last confirmed it
    detected_box: Box = field(default=(0.0, 0.0, 0.0, 0.0))
    hits: int = 1
    fresh: bool = True  # confirmed by a detection on the current frame
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # centre motion, pixels per frame
    number: int = 0  # the person number users see, given on confirmation (0 while tentative)
    strong: bool = (
        False  # one of its detections scored at least the tracker's confirm_score, lower face in view
    )

    def missed(self, seq: int) -> int:
        return seq - self.last_seq

    @property
    def confirmed(self) -> bool:
        """Seen by two detections, one of them confident: a one-off false detection never becomes a person,
        nor does a tie or a lamp that MTCNN's permissive thresholds keep finding at a low score."""
        return self.hits >= 2 and self.strong


CHIN_BELOW_MOUTH = 0.5  # the chin lies about this share of the eyes-to-mouth distance below the mouth


def lower_face_in_view(face: Face, size: tuple[int, int] | None) -> bool:
    """The lower face in a frame of `size` (w, h): both mouth corners (landmarks 3 and 4) and the chin below
    them (CHIN_BELOW_MOUTH) inside it, where a mask is judged; True where either is unknown."""
    if size is None or face.landmarks is None or len(face.landmarks) < 5:
        return True
    lm = np.asarray(face.landmarks, np.float64)
    eyes, mouth = lm[0:2].mean(axis=0), lm[3:5]
    chin = mouth.mean(axis=0)[1] + CHIN_BELOW_MOUTH * max(mouth.mean(axis=0)[1] - eyes[1], 0.0)
    w, h = size
    return bool(((mouth >= 0) & (mouth <= (w - 1, h - 1))).all() and chin <= h - 1)


class Tracker:
    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_missed: int = 15,
        max_centre_distance: float = 0.8,
        tentative_max_missed: int = 3,
        confirm_score: float = 0.0,
    ) -> None:
        self.iou_threshold = iou_threshold
        self.confirm_score = confirm_score
        self.max_missed = max_missed
        self.tentative_max_missed = tentative_max_missed
        self.max_centre_distance = max_centre_distance
        self.tracks: list[Track] = []
        self._next_id = 1
        self._next_number = 1

    def predict(self, seq: int) -> None:
        """Carry every track to frame `seq` (between detections, and before matching on a detection frame)."""
        for t in self.tracks:
            t.fresh = False
            dx, dy = t.velocity * min(t.missed(seq), _MAX_EXTRAPOLATE)
            x1, y1, x2, y2 = t.detected_box
            t.box = (x1 + dx, y1 + dy, x2 + dx, y2 + dy)

    def match(self, faces: list[Face]) -> tuple[list[tuple[Track, Face]], list[Track], list[Face]]:
        """Greedy assignment: (pairs, tracks left over, faces left over)."""
        candidates = []
        for ti, t in enumerate(self.tracks):
            for fi, f in enumerate(faces):
                o = iou(t.box, f.box)
                if o >= self.iou_threshold:
                    candidates.append((1.0 + o, ti, fi))
                    continue
                d = _centre_distance(t.box, f.box)
                if d <= self.max_centre_distance and similar_size(f.box, t.box):
                    candidates.append((1.0 - d, ti, fi))
        candidates.sort(key=lambda c: -c[0])
        used_t, used_f, pairs = set(), set(), []
        for _, ti, fi in candidates:
            if ti in used_t or fi in used_f:
                continue
            used_t.add(ti)
            used_f.add(fi)
            pairs.append((self.tracks[ti], faces[fi]))
        left_t = [t for i, t in enumerate(self.tracks) if i not in used_t]
        left_f = [f for i, f in enumerate(faces) if i not in used_f]
        return pairs, left_t, left_f

    def confident(self, face: Face, size: tuple[int, int] | None = None) -> bool:
        """Can this detection make its track a person: scored at least confirm_score, its lower face in a
        frame of `size` (w, h; None: not checked)?"""
        return face.score >= self.confirm_score and lower_face_in_view(face, size)

    def confirm(self, track: Track, face: Face, seq: int, size: tuple[int, int] | None = None) -> None:
        """A detection (first or second look) confirmed `track` on frame `seq` (of `size`, w x h)."""
        gap = max(seq - track.last_seq, 1)
        measured = (_centre(face.box) - _centre(track.detected_box)) / gap
        track.velocity = 0.5 * track.velocity + 0.5 * measured if track.hits > 1 else measured
        track.box = track.detected_box = tuple(float(v) for v in face.box)  # type: ignore[assignment]
        track.last_seq, track.fresh = seq, True
        track.hits += 1
        track.strong = track.strong or self.confident(face, size)
        if track.confirmed and not track.number:
            track.number = self._next_number
            self._next_number += 1

    def start(self, face: Face, seq: int, size: tuple[int, int] | None = None) -> Track | None:
        """A new track for an unmatched face (on a frame of `size`, w x h), unless it duplicates a track
        already there."""
        if any(iou(t.box, face.box) > 0.5 for t in self.tracks):
            return None
        box = tuple(float(v) for v in face.box)
        t = Track(self._next_id, box, seq, seq, detected_box=box)  # type: ignore[arg-type]
        t.strong = self.confident(face, size)
        self._next_id += 1
        self.tracks.append(t)
        return t

    def prune(self, seq: int, size: tuple[int, int] | None = None) -> list[Track]:
        """Drop tracks unseen for more than max_missed frames (a tentative one: tentative_max_missed), or
        carried out of the frame (`size` = (w, h)); return them (they have left)."""

        def stale(t: Track) -> bool:
            if t.missed(seq) > (self.max_missed if t.confirmed else self.tentative_max_missed):
                return True
            if size is None or t.fresh:
                return False
            cx, cy = _centre(t.box)
            return not (0 <= cx < size[0] and 0 <= cy < size[1])

        gone = [t for t in self.tracks if stale(t)]
        if gone:
            self.tracks = [t for t in self.tracks if not stale(t)]
        return gone

    def clear(self) -> list[Track]:
        gone, self.tracks = self.tracks, []
        return gone
