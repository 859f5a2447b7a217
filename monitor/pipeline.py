"""One frame in, one FrameResult out: detect (every Nth frame), track, classify (batched), vote, flag.

Cost on a CPU is MTCNN's, so it runs every `detect_every` frames on a copy of the frame shrunk to
`detect_max_side` (entrance faces are large; MTCNN's cost grows with the pixels it scans), and the
tracker carries faces between detections. Where a detection round misses a track (masked faces are
MTCNN's weak spot), a second, more permissive look searches just around the track's last box. Crops are
cut with THE training crop (engines.faces.crop_face) using the geometry stored in the model file, and all
crops of a frame go to the engine in one call; a track is reclassified only every `classify_every`
frames once its vote has settled.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import cv2
import numpy as np

from engines.backends.base import Engine
from engines.config import Config
from engines.faces import Box, Face, FaceDetector, crop_face
from engines.labels import NUM_CLASSES
from monitor.capture import Frame
from monitor.decide import Decider, State
from monitor.events import Event
from monitor.timing import StageTimer
from monitor.tracker import Track, Tracker, iou, similar_size


@dataclass(frozen=True)
class TrackView:
    """A track as the outputs see it on one frame."""

    id: int
    box: Box
    state: State | None  # the current vote (may still be unsettled)
    settled: State | None  # the last settled state
    fresh: bool  # confirmed by a detection on this frame
    missed: int  # frames since the last detection
    frames: int  # frames since the track began
    confirmed: bool = True  # seen by two detections (a tentative track may be a false detection)


@dataclass
class FrameResult:
    frame: Frame
    seq: int  # frames processed so far (0-based)
    tracks: list[TrackView] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # flags and departures, in order
    crops: dict[int, np.ndarray] = field(default_factory=dict)  # crops of flagged tracks (only if asked)
    detected: bool = False  # detection ran on this frame
    faces: int = 0  # faces the detector found (first and second look)
    classified: int = 0  # crops classified
    messages: list[str] = field(default_factory=list)  # faults, each kind reported once
    skipped: bool = False  # the frame was unusable
    final: bool = False  # not a frame: the departures of everyone still in view at the end


def _scale_face(face: Face, s: float) -> Face:
    lm = None if face.landmarks is None else face.landmarks * s
    return Face(tuple(v * s for v in face.box), face.score, lm)  # type: ignore[arg-type]


def _grow(box: Box, margin: float) -> Box:
    w, h = box[2] - box[0], box[3] - box[1]
    return box[0] - margin * w, box[1] - margin * h, box[2] + margin * w, box[3] + margin * h


def _int_box(box: Box) -> tuple[int, int, int, int]:
    return tuple(int(round(v)) for v in box)  # type: ignore[return-value]


class Pipeline:
    def __init__(
        self,
        cfg: Config,
        engine: Engine | None,
        detector: FaceDetector,
        timer: StageTimer | None = None,
        keep_crops: bool = False,
    ) -> None:
        m = cfg.monitor
        self.cfg = cfg
        self.engine = engine
        self.detector = detector
        self.timer = timer or StageTimer()
        self.keep_crops = keep_crops
        # a new face may be missed once before a second detection confirms it (masked faces are missed often)
        self.tracker = Tracker(m.track_iou, m.track_max_missed, tentative_max_missed=2 * m.detect_every)
        known = engine.meta.known_tasks() if engine is not None else ("mask", "gender", "age")
        self.decider = Decider(m.vote_window, m.min_votes, m.flag_states, known)
        self.crop_geom = engine.meta.crop if engine is not None else cfg.crop
        self.seq = -1
        self.size: tuple[int, int] | None = None  # (w, h) of the first good frame
        self.faults: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()  # detections, second looks and their hits (bench)
        self._last_classified: dict[int, int] = {}

    def warm_up(self) -> None:
        """Load MTCNN's nets and run the classifier once, so the first real frame is not seconds late (a
        camera would drop frames meanwhile)."""
        self.detector.detect(np.zeros((64, 64, 3), np.uint8))
        if self.engine is not None:
            try:
                self.engine.classify([np.zeros((self.crop_geom.height, self.crop_geom.width, 3), np.uint8)])
            except Exception:  # reported on the first real frame, with its context
                pass

    # --- the frame ---------------------------------------------------------------------------------------
    def process(self, frame: Frame) -> FrameResult:
        with self.timer.stage("total"):
            result = self._process(frame)
        self.timer.frame_done()
        return result

    def _process(self, frame: Frame) -> FrameResult:
        self.seq += 1
        result = FrameResult(frame, self.seq)
        image = self._sanitize(frame, result)
        if image is None:
            result.skipped = True
            self.tracker.predict(self.seq)
            self._prune(frame, result)
            result.tracks = self._views()
            return result
        frame.image = image
        m = self.cfg.monitor
        if self.seq % m.detect_every == 0:
            with self.timer.stage("detect"):
                self._detect(image, result)
            with self.timer.stage("classify"):
                self._classify(frame, result)
        else:
            self.tracker.predict(self.seq)
        self._prune(frame, result)
        result.tracks = self._views()
        return result

    def finish(self, frame: Frame | None) -> list[Event]:
        """Departure events for every track still in view when the run ends."""
        events = []
        for t in self.tracker.clear():
            ev = self._left_event(t, frame)
            if ev is not None:
                events.append(ev)
        return events

    # --- faults -------------------------------------------------------------------------------------------
    def _fault(self, result: FrameResult, kind: str, message: str) -> None:
        self.faults[kind] += 1
        if self.faults[kind] == 1:
            result.messages.append(message + " (further ones are counted, not shown)")

    def _sanitize(self, frame: Frame, result: FrameResult) -> np.ndarray | None:
        img = frame.image
        if not isinstance(img, np.ndarray) or img.size == 0 or img.ndim not in (2, 3):
            self._fault(result, "corrupt", f"frame {frame.index} is empty or unreadable: skipped")
            return None
        if img.dtype != np.uint8:
            self._fault(
                result, "corrupt", f"frame {frame.index} has pixels of type {img.dtype}, not uint8: skipped"
            )
            return None
        if img.ndim == 2 or img.shape[2] == 1:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        elif img.shape[2] != 3:
            self._fault(result, "corrupt", f"frame {frame.index} has {img.shape[2]} channels: skipped")
            return None
        if img.shape[0] < 12 or img.shape[1] < 12:
            self._fault(
                result, "corrupt", f"frame {frame.index} is only {img.shape[1]}x{img.shape[0]}: skipped"
            )
            return None
        h, w = img.shape[:2]
        if self.size is None:
            self.size = (w, h)
        elif (w, h) != self.size:
            self._fault(
                result,
                "size",
                f"frame {frame.index} is {w}x{h}, not {self.size[0]}x{self.size[1]}: resized to fit",
            )
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(img)

    # --- detection and tracking ---------------------------------------------------------------------------
    def _detect(self, image: np.ndarray, result: FrameResult) -> None:
        m = self.cfg.monitor
        h, w = image.shape[:2]
        s = min(1.0, m.detect_max_side / max(h, w))
        small = (
            cv2.resize(
                image, (max(int(round(w * s)), 12), max(int(round(h * s)), 12)), interpolation=cv2.INTER_AREA
            )
            if s < 1.0
            else image
        )
        faces = [_scale_face(f, 1.0 / s) for f in self.detector.detect(small)]
        result.detected, result.faces = True, len(faces)
        self.counts["detect_rounds"] += 1
        self.counts["faces"] += len(faces)
        self.tracker.predict(self.seq)
        pairs, missed, new = self.tracker.match(faces)
        taken = [f.box for _, f in pairs]
        for track in (t for t in missed if t.confirmed):
            face = self._second_look(small, s, track, taken)
            self.counts["second_looks"] += 1
            if face is not None:
                self.counts["second_look_hits"] += 1
                pairs.append((track, face))
                taken.append(face.box)
                result.faces += 1
        for track, face in pairs:
            self.tracker.confirm(track, face, self.seq)
        for face in new:
            self.tracker.start(face, self.seq)

    def _second_look(self, small: np.ndarray, s: float, track: Track, taken: list[Box]) -> Face | None:
        """A permissive search in a small region around a track that the full-frame pass missed."""
        m = self.cfg.monitor
        region = tuple(v * s for v in _grow(track.box, m.recheck_margin))
        side = min(track.box[2] - track.box[0], track.box[3] - track.box[1]) * s
        found = self.detector.detect_region(
            small,
            region,
            thresholds=m.recheck_thresholds,
            min_face_size=max(12, int(side * m.recheck_min_face)),
        )
        best, best_score = None, 0.0
        for f in (_scale_face(f, 1.0 / s) for f in found):
            if any(iou(f.box, b) > 0.5 for b in taken):
                continue  # another person's face
            overlap = iou(f.box, track.box)
            if overlap > best_score and similar_size(f.box, track.box):
                best, best_score = f, overlap
        return best if best_score >= 0.2 else None

    # --- classification and votes -------------------------------------------------------------------------
    def _due(self, track: Track) -> bool:
        if not track.fresh:
            return False
        state = self.decider.state(track.id)
        if state is None or not state.settled:
            return True
        return self.seq - self._last_classified.get(track.id, -(10**9)) >= self.cfg.monitor.classify_every

    def _classify(self, frame: Frame, result: FrameResult) -> None:
        if self.engine is None:
            return
        due = [t for t in self.tracker.tracks if self._due(t)]
        if not due:
            return
        try:
            crops = [crop_face(frame.image, t.box, self.crop_geom) for t in due]
            probs = self.engine.classify(crops, batch_size=self.cfg.classifier.batch_size)
            if probs.shape != (len(crops), NUM_CLASSES):
                raise ValueError(
                    f"the engine returned shape {list(probs.shape)}, expected [{len(crops)}, {NUM_CLASSES}]"
                )
        except Exception as exc:  # keep tracking; say once what went wrong
            self._fault(
                result,
                "classify",
                f"classifier failed on frame {frame.index}: "
                f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}",
            )
            return
        result.classified = len(crops)
        for track, p, crop in zip(due, probs, crops):
            self._last_classified[track.id] = self.seq
            try:
                self.decider.add(track.id, p)
            except ValueError as exc:
                self._fault(result, "classify", f"classifier output unusable on frame {frame.index}: {exc}")
                continue
            flag = self.decider.new_flag(track.id) if track.confirmed else None
            if flag is not None:
                ev = Event("flag", frame.time, frame.index, track.id, _int_box(track.box), flag)
                result.events.append(ev)
                if self.keep_crops:
                    result.crops[track.id] = crop

    # --- departures ---------------------------------------------------------------------------------------
    def _left_event(self, track: Track, frame: Frame | None) -> Event | None:
        state = self.decider.settled_state(track.id) or self.decider.state(track.id)
        self.decider.forget(track.id)
        self._last_classified.pop(track.id, None)
        if state is None or frame is None or not track.confirmed:
            return None
        box = track.box
        if self.size is not None:  # where it was last seen inside the frame
            w, h = self.size
            box = (
                min(max(box[0], 0), w),
                min(max(box[1], 0), h),
                min(max(box[2], 0), w),
                min(max(box[3], 0), h),
            )
        return Event("left", frame.time, frame.index, track.id, _int_box(box), state)

    def _prune(self, frame: Frame, result: FrameResult) -> None:
        for t in self.tracker.prune(self.seq, self.size):
            ev = self._left_event(t, frame)
            if ev is not None:
                result.events.append(ev)

    def _views(self) -> list[TrackView]:
        return [
            TrackView(
                t.id,
                t.box,
                self.decider.state(t.id),
                self.decider.settled_state(t.id),
                t.fresh,
                t.missed(self.seq),
                self.seq - t.first_seq,
                t.confirmed,
            )
            for t in self.tracker.tracks
        ]
