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

import cv2
import numpy as np

from engines.backends.base import Engine
from engines.config import Config
from engines.faces import Box, Face, FaceDetector, crop_face
from engines.labels import NUM_CLASSES, TASK_NAMES
from monitor.decisions.decide import Decider
from monitor.decisions.results import Candidate, Event, FrameResult, TrackView, candidate
from monitor.decisions.tracker import Track, Tracker, iou, similar_size
from monitor.decisions.zones import Zone
from monitor.inference.timing import StageTimer
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


class Pipeline:
    def __init__(
        self,
        cfg: Config,
        engine: Engine | None,
        detector: FaceDetector,
        timer: StageTimer | None = None,
        keep_crops: bool = False,
        name: str = "",
        collect: bool = False,
    ) -> None:
        """`collect`: keep each settled track's latest crop and hand it over when the person leaves."""
        m = cfg.monitor
        self.name = name
        self.cfg = cfg
        self.engine = engine
        self.detector = detector
        self.timer = timer or StageTimer()
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
        # the tasks the model file knows; gender and age are shown only with monitor.show_gender_age
        self.model_known = engine.meta.known_tasks() if engine is not None else TASK_NAMES
        known = tuple(t for t in self.model_known if t == "mask" or m.show_gender_age)
        self.decider = Decider(m.vote_window, m.min_votes, m.flag_states, known)
        self.crop_geom = engine.meta.crop if engine is not None else cfg.crop
        self.seq = -1
        self.size: tuple[int, int] | None = None  # (w, h) of the first good frame
        self.faults: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()  # detections, second looks and their hits (bench)
        self._last_classified: dict[int, int] = {}
        self._seen: dict[int, tuple[int, float]] = {}  # track id -> (frame index, time) of its last sighting
        self._thumb: np.ndarray | None = None  # the last frame, tiny and grey (scene cuts)
        self._result = FrameResult(Frame(-1, 0.0, None), -1)
        self._small: tuple[np.ndarray, float] | None = None
        self._due_tracks: list[Track] = []
        self.zone: Zone | None = None  # wire25: faces outside the source's zone are never tracked

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
        """One frame of this source alone (several sources share one round: `run_round`)."""
        return run_round([(self, frame)], self.timer)[0]

    def begin(self, frame: Frame) -> np.ndarray | None:
        """Start a frame: check it, end every track on a scene cut, and return the shrunk copy MTCNN should
        look at on this frame (None: no detection due, or the frame is unusable)."""
        self.seq += 1
        self._result = result = FrameResult(frame, self.seq, source=self.name)
        self._small = None
        image = self._sanitize(frame, result)
        if image is None:
            result.skipped = True
            self.tracker.predict(self.seq)
            return None
        frame.image = image
        self._scene_check(image, frame, result)
        if self.seq % self.cfg.monitor.detect_every != 0:
            self.tracker.predict(self.seq)
            return None
        m = self.cfg.monitor
        h, w = image.shape[:2]
        s = min(1.0, m.detect_max_side / max(h, w))
        size = (max(int(round(w * s)), 12), max(int(round(h * s)), 12))
        self._small = (cv2.resize(image, size, interpolation=cv2.INTER_AREA) if s < 1.0 else image, s)
        return self._small[0]

    def end(self) -> FrameResult:
        """Finish the frame begun last: departures, and the tracks as the outputs see them."""
        result = self._result
        self._prune(result.frame, result)
        result.tracks = self._views()
        result.collect = self.take_collected()
        self._small = None
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
    def apply_detections(self, found: list[Face]) -> None:
        """The faces MTCNN found in the copy `begin` returned: match, second looks, new tracks."""
        small, s = self._small
        result = self._result
        faces = [_scale_face(f, 1.0 / s) for f in found]
        if self.zone is not None and self.size is not None:  # wire25: the zone, in full-frame pixels
            faces = self.zone.filter(faces, *self.size)
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
        seen = (result.frame.index, result.frame.time)
        for track, face in pairs:
            self.tracker.confirm(track, face, self.seq)
            self._seen[track.id] = seen
        for face in new:
            t = self.tracker.start(face, self.seq)
            if t is not None:
                self._seen[t.id] = seen

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
        if not track.fresh or not track.strong:  # weak detections alone (a tie, a lamp) never become a person
            return False
        state = self.decider.state(track.id)
        if state is None or not state.settled:
            return True
        return self.seq - self._last_classified.get(track.id, -(10**9)) >= self.cfg.monitor.classify_every

    def crops_due(self) -> list[np.ndarray]:
        """The crops to classify on this frame (detection frames only), in the order `apply_classes` takes."""
        self._due_tracks = []
        if self.engine is None or self._small is None:
            return []
        frame = self._result.frame
        self._due_tracks = [t for t in self.tracker.tracks if self._due(t)]
        try:
            return [crop_face(frame.image, t.box, self.crop_geom) for t in self._due_tracks]
        except Exception as exc:
            self.classify_failed(exc)
            return []

    def classify_failed(self, exc: BaseException) -> None:
        """Keep tracking; say once what went wrong."""
        self._due_tracks = []
        text = str(exc).splitlines()[0][:160] if str(exc) else ""
        self._fault(
            self._result,
            "classify",
            f"classifier failed on frame {self._result.frame.index}: {exc.__class__.__name__}: {text}",
        )

    def apply_classes(self, crops: list[np.ndarray], probs: np.ndarray) -> None:
        """Votes and flags from the probabilities of the crops `crops_due` gave."""
        frame, result = self._result.frame, self._result
        result.classified = len(crops)
        for track, p, crop in zip(self._due_tracks, probs, crops):
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
        self._due_tracks = []

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


# --- one round over several sources ---
def _detect_all(detector: FaceDetector, images: list[np.ndarray]) -> list[list[Face]]:
    """MTCNN over every image, frames of one size as one batch."""
    out: list[list[Face] | None] = [None] * len(images)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(img.shape, []).append(i)
    batch = getattr(detector, "detect_batch", None)
    for idx in groups.values():
        found = batch([images[i] for i in idx]) if batch is not None and len(idx) > 1 else None
        for k, i in enumerate(idx):
            out[i] = found[k] if found is not None else detector.detect(images[i])
    return out  # type: ignore[return-value]


def _classify_all(work: list[Pipeline]) -> None:
    """The due crops of every source in one engine call (the engine splits it by classifier.batch_size)."""
    crops = [p.crops_due() for p in work]
    flat = [c for cs in crops for c in cs]
    if not flat:
        return
    engine = next(p.engine for p in work if p.engine is not None)
    try:
        probs = engine.classify(flat, batch_size=work[0].cfg.classifier.batch_size)
        if probs.shape != (len(flat), NUM_CLASSES):
            raise ValueError(
                f"the engine returned shape {list(probs.shape)}, expected [{len(flat)}, {NUM_CLASSES}]"
            )
    except Exception as exc:
        for p, cs in zip(work, crops):
            if cs:
                p.classify_failed(exc)
        return
    at = 0
    for p, cs in zip(work, crops):
        if cs:
            p.apply_classes(cs, probs[at : at + len(cs)])
        at += len(cs)


def run_round(items: list[tuple[Pipeline, Frame]], timer: StageTimer) -> list[FrameResult]:
    """One frame from each of several sources: the frames due for detection go to MTCNN as one batch, the
    crops of all of them to the classifier in one call; tracking, votes and flags stay per source."""
    with timer.stage("total"):
        smalls = [(p, p.begin(f)) for p, f in items]
        due = [(p, img) for p, img in smalls if img is not None]
        if due:
            with timer.stage("detect"):
                found = _detect_all(due[0][0].detector, [img for _, img in due])
                for (p, _), faces in zip(due, found):
                    p.apply_detections(faces)
            with timer.stage("classify"):
                _classify_all([p for p, _ in due])
        results = [p.end() for p, _ in items]
    for p, _ in items:
        if p.timer is not timer:
            p.timer.frame_done()
    timer.frame_done()
    return results
