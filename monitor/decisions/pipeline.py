"""One source's part of each frame: check it, track the faces found, vote and flag (SourceDecisions); the
detector and the classifier, shared by all sources, belong to the inference stage (monitor.inference.stage).

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
from dataclasses import dataclass

import cv2
import numpy as np

from engines.contract import ModelMeta
from engines.faces import Box, Face, FaceDetector, crop_face
from engines.labels import TASK_NAMES
from monitor.config import Config
from monitor.decisions.decide import Decider
from monitor.decisions.results import Candidate, Event, FrameResult, TrackView, candidate
from monitor.decisions.tracker import Track, Tracker, iou, similar_size
from monitor.decisions.zones import Zone
from monitor.sources.capture import Frame


def _scale_face(face: Face, s: float) -> Face:
    lm = None if face.landmarks is None else face.landmarks * s
    return Face(tuple(v * s for v in face.box), face.score, lm)  # type: ignore[arg-type]


def _grow(box: Box, margin: float) -> Box:
    w, h = box[2] - box[0], box[3] - box[1]
    return box[0] - margin * w, box[1] - margin * h, box[2] + margin * w, box[3] + margin * h


SCENE_PIXEL_CHANGE = (
    30  # levels in any colour channel (after the change of overall light) that count a pixel as changed
)


def _int_box(box: Box) -> tuple[int, int, int, int]:
    return tuple(int(round(v)) for v in box)  # type: ignore[return-value]


def model_tasks(meta: ModelMeta | None) -> tuple[str, ...]:
    """The tasks the model file knows (all of them without a classifier)."""
    return meta.known_tasks() if meta is not None else TASK_NAMES


def shown_tasks(cfg: Config, meta: ModelMeta | None) -> tuple[str, ...]:
    """The tasks votes are kept for: mask, and gender and age where the model knows them and
    monitor.show_gender_age is on."""
    return tuple(t for t in model_tasks(meta) if t == "mask" or cfg.monitor.show_gender_age)


@dataclass
class Look:
    """One source's frame on its way through a round (what `begin` returns and every later step takes): its
    result so far and, on a detection frame, the shrunk copy MTCNN looks at and the shrink factor."""

    result: FrameResult
    small: np.ndarray | None = None  # None: no detection due, or the frame is unusable
    scale: float = 1.0

    @property
    def frame(self) -> Frame:
        return self.result.frame


@dataclass(frozen=True)
class CropsDue:
    """The crops one source wants classified on a frame, and the tracks they belong to (in that order)."""

    look: Look
    tracks: tuple[Track, ...] = ()
    crops: tuple[np.ndarray, ...] = ()


class SourceDecisions:
    """One source's tracker, votes and flags. The inference stage (monitor.inference.stage) owns the
    detector and the classifier and drives each round through the steps here: `begin` -> `track` ->
    `crops_due` -> `decide` (or `classify_failed`) -> `end`; each step takes what the one before returned,
    and nothing of a frame is kept here between rounds but the tracks and their votes."""

    def __init__(
        self,
        cfg: Config,
        meta: ModelMeta | None,
        keep_crops: bool = False,
        name: str = "",
        collect: bool = False,
    ) -> None:
        """`meta`: the classifier's (its tasks, its crop geometry), None without one (nothing classified);
        `collect`: keep each settled track's latest crop and hand it over when the person leaves."""
        m = cfg.monitor
        self.name = name
        self.cfg = cfg
        self.classifies = meta is not None
        self.keep_crops = keep_crops
        self.collect = collect
        self._latest: dict[int, Candidate] = {}  # track id -> its latest settled classification (collect)
        self._collected: list[Candidate] = []  # those of the people who left, not yet handed over
        # a new face may be missed once before a second detection confirms it (masked faces are missed often)
        self.tracker = Tracker(
            m.track_iou,
            m.track_max_missed,
            tentative_max_missed=2 * m.detect_every,
            confirm_score=m.confirm_score,
        )
        self.decider = Decider(m.vote_window, m.min_votes, m.flag_states, shown_tasks(cfg, meta))
        self.crop_geom = meta.crop if meta is not None else cfg.crop
        self.seq = -1
        self.size: tuple[int, int] | None = None  # (w, h) of the first good frame
        self.faults: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()  # detections, second looks and their hits (bench)
        self._last_classified: dict[int, int] = {}
        self._seen: dict[int, tuple[int, float]] = {}  # track id -> (frame index, time) of its last sighting
        self._thumb: np.ndarray | None = None  # the last frame, tiny and grey (scene cuts)
        self.zone: Zone | None = None  # faces outside the source's zone are never tracked

    # --- the frame ---------------------------------------------------------------------------------------
    def begin(self, frame: Frame) -> Look:
        """Start a frame: check it, end every track on a scene cut, and shrink the copy MTCNN should look at
        on this frame (look.small None: no detection due, or the frame is unusable)."""
        self.seq += 1
        result = FrameResult(frame, self.seq, source=self.name)
        image = self._sanitize(frame, result)
        if image is None:
            result.skipped = True
            self.tracker.predict(self.seq)
            return Look(result)
        frame.image = image
        self._scene_check(image, frame, result)
        if self.seq % self.cfg.monitor.detect_every != 0:
            self.tracker.predict(self.seq)
            return Look(result)
        m = self.cfg.monitor
        h, w = image.shape[:2]
        s = min(1.0, m.detect_max_side / max(h, w))
        size = (max(int(round(w * s)), 12), max(int(round(h * s)), 12))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if s < 1.0 else image
        return Look(result, small, s)

    def end(self, look: Look) -> FrameResult:
        """Finish the frame: departures, and the tracks as the outputs see them."""
        result = look.result
        self._prune(result.frame, result)
        result.tracks = self._views()
        result.collect = self.take_collected()
        return result

    def take_collected(self) -> list[Candidate]:
        """The people who left since the last call, each with the crop of their latest settled vote."""
        out, self._collected = self._collected, []
        return out

    def finish(self, frame: Frame | None) -> list[Event]:
        """Departure events for every track still in view when the run ends."""
        return self._end_all(frame)

    def _end_all(self, frame: Frame | None) -> list[Event]:
        events = []
        for t in self.tracker.clear():
            ev = self._left_event(t, frame)
            if ev is not None:
                events.append(ev)
        return events

    def _scene_check(self, image: np.ndarray, frame: Frame, result: FrameResult) -> None:
        """A hard cut (or a camera knocked aside) changes nearly every pixel at once: the people before it
        are not the people after it, so every track ends here instead of passing its id and votes on."""
        thumb = cv2.resize(image, (32, 24), interpolation=cv2.INTER_AREA).astype(np.int16)
        prev, self._thumb = self._thumb, thumb
        limit = self.cfg.monitor.scene_change
        if prev is None or limit <= 0 or not self.tracker.tracks:
            return
        diff = thumb - prev
        # a change of light alone moves every pixel alike (per colour channel): that is not a cut
        diff -= np.median(diff.reshape(-1, 3), axis=0).astype(np.int16)
        if float(np.mean(np.abs(diff).max(axis=2) > SCENE_PIXEL_CHANGE)) >= limit:
            result.scene_cut = True
            self.counts["scene_cuts"] += 1
            result.events.extend(self._end_all(frame))

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
    def track(self, look: Look, found: list[Face], detector: FaceDetector) -> None:
        """The faces MTCNN found in `look.small`: match, second looks (`detector.detect_region` around the
        tracks the full pass missed), new tracks."""
        small, s, result = look.small, look.scale, look.result
        assert small is not None, "track() on a frame that was not due for detection"
        faces = [_scale_face(f, 1.0 / s) for f in found]
        if self.zone is not None and self.size is not None:  # the zone, in full-frame pixels
            faces = self.zone.filter(faces, *self.size)
        result.detected, result.faces = True, len(faces)
        self.counts["detect_rounds"] += 1
        self.counts["faces"] += len(faces)
        self.tracker.predict(self.seq)
        pairs, missed, new = self.tracker.match(faces)
        taken = [f.box for _, f in pairs]
        for track in (t for t in missed if t.confirmed):
            face = self._second_look(detector, small, s, track, taken)
            self.counts["second_looks"] += 1
            if face is not None:
                self.counts["second_look_hits"] += 1
                pairs.append((track, face))
                taken.append(face.box)
                result.faces += 1
        seen = (result.frame.index, result.frame.time)
        for track, face in pairs:
            self.tracker.confirm(track, face, self.seq, self.size)
            self._seen[track.id] = seen
        for face in new:
            t = self.tracker.start(face, self.seq, self.size)
            if t is not None:
                self._seen[t.id] = seen

    def _second_look(
        self, detector: FaceDetector, small: np.ndarray, s: float, track: Track, taken: list[Box]
    ) -> Face | None:
        """A permissive search in a small region around a track that the full-frame pass missed."""
        m = self.cfg.monitor
        region = tuple(v * s for v in _grow(track.box, m.recheck_margin))
        side = min(track.box[2] - track.box[0], track.box[3] - track.box[1]) * s
        found = detector.detect_region(
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
        if not track.fresh or not track.strong:  # weak detections alone (a tie, a lamp) never become a person
            return False
        state = self.decider.state(track.id)
        if state is None or not state.settled:
            return True
        return self.seq - self._last_classified.get(track.id, -(10**9)) >= self.cfg.monitor.classify_every

    def crops_due(self, look: Look) -> CropsDue:
        """The crops to classify on this frame (detection frames only), each with its track."""
        if not self.classifies or look.small is None:
            return CropsDue(look)
        tracks = tuple(t for t in self.tracker.tracks if self._due(t))
        try:
            crops = tuple(crop_face(look.frame.image, t.box, self.crop_geom) for t in tracks)
        except Exception as exc:
            self.classify_failed(look, exc)
            return CropsDue(look)
        return CropsDue(look, tracks, crops)

    def classify_failed(self, look: Look, exc: BaseException) -> None:
        """Keep tracking; say once what went wrong."""
        text = str(exc).splitlines()[0][:160] if str(exc) else ""
        self._fault(
            look.result,
            "classify",
            f"classifier failed on frame {look.frame.index}: {exc.__class__.__name__}: {text}",
        )

    def decide(self, due: CropsDue, probs: np.ndarray) -> None:
        """Votes and flags from the probabilities of `due.crops` (one row each)."""
        frame, result = due.look.frame, due.look.result
        result.classified = len(due.crops)
        for track, p, crop in zip(due.tracks, probs, due.crops):
            self._last_classified[track.id] = self.seq
            try:
                state = self.decider.add(track.id, p)
            except ValueError as exc:
                self._fault(result, "classify", f"classifier output unusable on frame {frame.index}: {exc}")
                continue
            if self.collect and track.confirmed and state.settled:
                history = self.decider.history(track.id)
                self._latest[track.id] = candidate(
                    track.number, frame.index, frame.time, crop, state, history
                )
            flag = self.decider.new_flag(track.id) if track.confirmed else None
            if flag is not None:
                ev = Event(
                    "flag", frame.time, frame.index, track.number, _int_box(track.box), flag, self.name
                )
                result.events.append(ev)
                if self.keep_crops:
                    result.crops[track.number] = crop

    # --- departures ---------------------------------------------------------------------------------------
    def _left_event(self, track: Track, frame: Frame | None) -> Event | None:
        state = self.decider.settled_state(track.id) or self.decider.state(track.id)
        self.decider.forget(track.id)
        self._last_classified.pop(track.id, None)
        seen = self._seen.pop(track.id, None)
        latest = self._latest.pop(track.id, None)
        if latest is not None and track.confirmed:
            self._collected.append(latest)
        if state is None or frame is None or not track.confirmed:
            return None
        index, when = seen if seen is not None else (frame.index, frame.time)
        box = track.detected_box  # where the person was last seen, and when
        if self.size is not None:  # where it was last seen inside the frame
            w, h = self.size
            box = (
                min(max(box[0], 0), w),
                min(max(box[1], 0), h),
                min(max(box[2], 0), w),
                min(max(box[3], 0), h),
            )
        return Event("left", when, index, track.number, _int_box(box), state, self.name)

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
                t.number,
                self.decider.flagged(t.id),
            )
            for t in self.tracker.tracks
        ]
