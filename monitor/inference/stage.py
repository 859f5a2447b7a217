"""The inference stage: the one detector and the one classifier of a running monitor, and the round that
takes a frame from each of N sources (one source is N = 1).

A round runs MTCNN on the frames due for detection as one batch (frames of one size together), then cuts
the crops every source wants classified and sends all of them to the engine in one call (the engine splits
it by classifier.batch_size). What a frame carries from one step to the next travels as values (a `Look`,
then a `CropsDue`); tracking, votes and flags stay with each source's SourceDecisions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engines.backends.base import Engine
from engines.faces import Face, FaceDetector
from engines.labels import NUM_CLASSES
from monitor.config import Config
from monitor.decisions.pipeline import CropsDue, SourceDecisions, model_tasks, shown_tasks
from monitor.decisions.results import FrameResult
from monitor.inference.timing import StageTimer
from monitor.sources.capture import Frame


class InferenceStage:
    """Owns the detector, the engine and the round's timer (stages detect, classify, total)."""

    def __init__(
        self, cfg: Config, engine: Engine | None, detector: FaceDetector, timer: StageTimer | None = None
    ) -> None:
        self.cfg = cfg
        self.engine = engine
        self.detector = detector
        self.timer = timer or StageTimer()
        self.meta = engine.meta if engine is not None else None

    @property
    def model_tasks(self) -> tuple[str, ...]:
        """The tasks the model file knows."""
        return model_tasks(self.meta)

    @property
    def shown_tasks(self) -> tuple[str, ...]:
        """Those the monitor estimates (gender and age only with monitor.show_gender_age)."""
        return shown_tasks(self.cfg, self.meta)

    def source(
        self, name: str = "", cfg: Config | None = None, keep_crops: bool = False, collect: bool = False
    ) -> SourceDecisions:
        """A source's tracker and votes, for this stage's classifier; `cfg`: the source's own (its
        [[sources]] overrides of [monitor]), else the stage's."""
        return SourceDecisions(cfg or self.cfg, self.meta, keep_crops=keep_crops, name=name, collect=collect)

    def warm_up(self) -> None:
        """Load MTCNN's nets and run the classifier once, so the first real frame is not seconds late (a
        camera would drop frames meanwhile)."""
        self.detector.detect(np.zeros((64, 64, 3), np.uint8))
        if self.engine is not None:
            crop = self.engine.meta.crop
            try:
                self.engine.classify([np.zeros((crop.height, crop.width, 3), np.uint8)])
            except Exception:  # reported on the first real frame, with its context
                pass

    def process(self, source: SourceDecisions, frame: Frame) -> FrameResult:
        """One frame of one source: a round of one."""
        return self.run_round([(source, frame)])[0]

    def run_round(self, items: Sequence[tuple[SourceDecisions, Frame]]) -> list[FrameResult]:
        """One frame from each of several sources (each source at most once): the frames due for detection
        go to MTCNN as one batch, the crops of all of them to the classifier in one call."""
        with self.timer.stage("total"):
            looks = [(src, src.begin(frame)) for src, frame in items]
            due = [(src, look) for src, look in looks if look.small is not None]
            if due:
                with self.timer.stage("detect"):
                    found = self._detect([look.small for _, look in due])  # type: ignore[misc]
                    for (src, look), faces in zip(due, found):
                        src.track(look, faces, self.detector)
                with self.timer.stage("classify"):
                    self._classify([(src, src.crops_due(look)) for src, look in due])
            results = [src.end(look) for src, look in looks]
        self.timer.frame_done()
        return results

    def _detect(self, images: list[np.ndarray]) -> list[list[Face]]:
        """MTCNN over every image, frames of one size as one batch."""
        out: list[list[Face] | None] = [None] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(img.shape, []).append(i)
        batch = getattr(self.detector, "detect_batch", None)
        for idx in groups.values():
            found = batch([images[i] for i in idx]) if batch is not None and len(idx) > 1 else None
            for k, i in enumerate(idx):
                out[i] = found[k] if found is not None else self.detector.detect(images[i])
        return out  # type: ignore[return-value]

    def _classify(self, work: list[tuple[SourceDecisions, CropsDue]]) -> None:
        """The due crops of every source in one engine call."""
        flat = [c for _, due in work for c in due.crops]
        if not flat or self.engine is None:
            return
        try:
            probs = self.engine.classify(flat, batch_size=self.cfg.classifier.batch_size)
            if probs.shape != (len(flat), NUM_CLASSES):
                raise ValueError(
                    f"the engine returned shape {list(probs.shape)}, expected [{len(flat)}, {NUM_CLASSES}]"
                )
        except Exception as exc:
            for src, due in work:
                if due.crops:
                    src.classify_failed(due.look, exc)
            return
        at = 0
        for src, due in work:
            if due.crops:
                src.decide(due, probs[at : at + len(due.crops)])
            at += len(due.crops)
