"""A door that people pass one after another (or side by side), through the real inference stage: each face is
a filled box whose grey level says its mask state, found by a detector that looks at the pixels and read by
an engine that looks at the crop's centre. The site's outputs (metrics, Home Assistant, evidence, compliance)
are tested on these real FrameResults."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from engines.backends.base import Engine
from engines.config import MonitorConfig
from engines.contract import ModelMeta
from engines.faces import Face
from engines.labels import NUM_CLASSES, encode
from monitor.config import Config
from monitor.decisions.results import FrameResult
from monitor.inference.stage import InferenceStage
from monitor.sources.capture import Frame

LEVELS = (60, 140, 230)  # the grey of a face per mask state: wear, incorrect, not wear
SIZE = (320, 240)  # w, h


class LevelEngine(Engine):
    """Classifies a crop by the grey level at its centre (the face's centre)."""

    runtime = "fake"

    def __init__(self) -> None:
        self._set_file(Path("level.fake"), ModelMeta(arch="level"))

    def classify(self, crops, batch_size: int = 32) -> np.ndarray:
        out = np.full((len(crops), NUM_CLASSES), 0.1 / (NUM_CLASSES - 1), np.float32)
        for i, c in enumerate(crops):
            level = float(c[c.shape[0] // 2, c.shape[1] // 2].mean())
            mask = int(np.argmin([abs(level - v) for v in LEVELS]))
            out[i, encode(mask, 0, 1)] = 0.9
        return out

    def infer(self, batch):  # pragma: no cover - classify is overridden
        raise NotImplementedError


class BlobDetector:
    """Finds every bright blob of the frame (the faces drawn by `door_frames`) as a confident face."""

    def detect(self, frame, **kw):
        grey = frame.max(axis=2)
        n, _, stats, _ = cv2.connectedComponentsWithStats((grey > 20).astype(np.uint8))
        return [
            Face((float(x), float(y), float(x + w), float(y + h)), 0.99)
            for x, y, w, h, area in stats[1:]
            if area > 100
        ]

    def detect_region(self, frame, region, **kw):
        return []


def textured_face(h: int, w: int, level: int, seed: int) -> np.ndarray:
    """A face: its grey level at the centre, texture around it (so that blurring it shows)."""
    rng = np.random.default_rng(seed)
    face = np.clip(level + rng.integers(-50, 50, (h, w, 1)), 25, 255).astype(np.uint8).repeat(3, axis=2)
    cy, cx = h // 2, w // 2
    face[cy - 8 : cy + 8, cx - 8 : cx + 8] = level
    return face


def door_frames(
    people: Sequence[Sequence[tuple[int, tuple[int, int, int, int]]]], frames_each: int = 8, gap: int = 10
) -> Iterator[np.ndarray]:
    """`people`: groups of (mask state, box) passing together; each group is in view `frames_each` frames,
    then the door is empty `gap` frames (so their tracks end)."""
    for group in people:
        img = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
        for k, (mask, (x1, y1, x2, y2)) in enumerate(group):
            img[y1:y2, x1:x2] = textured_face(y2 - y1, x2 - x1, LEVELS[mask], k)
        for _ in range(frames_each):
            yield img
        for _ in range(gap):
            yield np.zeros_like(img)


ONE_BOX = (130, 70, 190, 150)


def door_run(
    people: Sequence[Sequence[tuple[int, tuple[int, int, int, int]]]] | Sequence[int],
    source: str = "door",
    fps: float = 10.0,
    frames_each: int = 8,
    gap: int = 10,
) -> Iterator[FrameResult]:
    """FrameResults of the real stage as the people pass (a list of ints: one person at a time, in the
    middle of the door, in those mask states); the departures of those still in view at the end last."""
    groups = [[(p, ONE_BOX)] if isinstance(p, int) else p for p in people]
    cfg = Config(monitor=MonitorConfig(detect_every=1, min_votes=2, vote_window=3, track_max_missed=3))
    stage = InferenceStage(cfg, LevelEngine(), BlobDetector())
    p = stage.source(source)
    frame = None
    for i, img in enumerate(door_frames(groups, frames_each, gap)):
        frame = Frame(i, i / fps, img)
        yield stage.process(p, frame)
    yield FrameResult(frame, -1, events=p.finish(frame), final=True, source=source)
