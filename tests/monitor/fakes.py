"""Fakes for the monitor's tests, one of each: classifiers whose answer we control, face detectors that
find what the test says, and capture devices (there is no camera here) that play frames, break, refuse to
open, or hand over garbage."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from engines.backends.base import Engine
from engines.contract import ModelMeta
from engines.faces import Box, Face
from engines.labels import NUM_CLASSES, encode
from tests.videogen import MASK_COLOURS


def colour_mask_state(crop: np.ndarray) -> int:
    """Read the mask state from a crop's colour around nose and mouth: blue = worn, green = under the
    nose, neither = no mask (the test videos draw masks in these colours)."""
    h, w = crop.shape[:2]
    region = crop[int(0.35 * h) : int(0.75 * h), int(0.3 * w) : int(0.7 * w)].astype(np.int16)
    b, g, r = region[..., 0], region[..., 1], region[..., 2]
    blue = np.mean((b > r + 60) & (b > g + 30))
    green = np.mean((g > r + 60) & (g > b + 60))
    if max(blue, green) < 0.08:
        return 2
    return 0 if blue > green else 1


class ColourEngine(Engine):
    """An Engine that 'classifies' by colour with the probabilities we choose: decision logic is tested
    against a known answer, through the real pipeline."""

    runtime = "fake"

    def __init__(self, gender: int = 1, age: int = 1, confidence: float = 0.9) -> None:
        self._set_file(Path("colour.fake"), ModelMeta(arch="colour"))
        self.gender, self.age, self.confidence = gender, age, confidence
        self.batches: list[int] = []

    def classify(self, crops: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        self.batches.append(len(crops))
        out = np.full((len(crops), NUM_CLASSES), (1 - self.confidence) / (NUM_CLASSES - 1), np.float32)
        for i, crop in enumerate(crops):
            out[i, encode(colour_mask_state(crop), self.gender, self.age)] = self.confidence
        return out

    def infer(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - classify is overridden
        raise NotImplementedError


class ScriptedEngine(Engine):
    """Returns the mask states of a script, one per call (all crops of a call get the same answer)."""

    runtime = "fake"

    def __init__(self, states: Sequence[int], confidence: float = 0.8) -> None:
        self._set_file(Path("scripted.fake"), ModelMeta(arch="scripted"))
        self.states = list(states)
        self.confidence = confidence
        self.calls = 0

    def classify(self, crops, batch_size: int = 32) -> np.ndarray:
        state = self.states[min(self.calls, len(self.states) - 1)]
        self.calls += 1
        out = np.full((len(crops), NUM_CLASSES), (1 - self.confidence) / (NUM_CLASSES - 1), np.float32)
        out[:, encode(state, 0, 1)] = self.confidence
        return out

    def infer(self, batch):  # pragma: no cover
        raise NotImplementedError


def probs_for(mask: int, gender: int = 0, age: int = 1, p: float = 0.8) -> np.ndarray:
    """One classification: probability `p` on the class (mask, gender, age), the rest spread evenly."""
    out = np.full(NUM_CLASSES, (1 - p) / (NUM_CLASSES - 1))
    out[encode(mask, gender, age)] = p
    return out


class NoFaces:
    """A detector that finds nothing (the pipeline's frame handling is under test, not MTCNN)."""

    def detect(self, frame, **kw):
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
        return []

    def detect_region(self, frame, region, **kw):
        return []


class OneFace:
    """The same face in every frame; counts its calls. `second_look`: a look into a region finds it too."""

    def __init__(self, box: Box = (40.0, 30.0, 100.0, 105.0), second_look: bool = False) -> None:
        self.box = box
        self.second_look = second_look
        self.calls = 0

    def detect(self, frame, **kw):
        self.calls += 1
        return [Face(self.box, 0.99)]

    def detect_region(self, frame, region, **kw):
        return [Face(self.box, 0.99)] if self.second_look else []


class OnceThenNothing:
    """A false detection (a confident one) on the first frame only."""

    def __init__(self):
        self.calls = 0

    def detect(self, frame, **kw):
        self.calls += 1
        return [Face((40.0, 30.0, 100.0, 105.0), 0.95)] if self.calls == 1 else []

    def detect_region(self, frame, region, **kw):
        raise AssertionError("no second look for a tentative track")


class WeakThenStrong:
    """The same box in every detection round at a low score (a tie), confident from round `strong_from`."""

    def __init__(self, strong_from: int = 10**9) -> None:
        self.calls = 0
        self.strong_from = strong_from

    def detect(self, frame, **kw):
        self.calls += 1
        return [Face((40.0, 30.0, 100.0, 105.0), 0.95 if self.calls >= self.strong_from else 0.6)]

    def detect_region(self, frame, region, **kw):
        return []


def read_frames(path: Path, limit: int | None = None) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while limit is None or len(frames) < limit:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


class FakeCamera:
    """A capture device playing `frames` (looping), `period` seconds apart. `fail_after` reads after which
    it breaks (read() returns False, as a pulled cable does); `garbage` maps read numbers to what read()
    hands over instead of a frame."""

    def __init__(
        self,
        frames: Sequence[np.ndarray],
        period: float = 0.0,
        fail_after: int | None = None,
        garbage: dict[int, object] | None = None,
        fps: float = 30.0,
    ) -> None:
        self.frames = frames
        self.period = period
        self.fail_after = fail_after
        self.garbage = garbage or {}
        self.fps = fps
        self.reads = 0
        self.released = False

    def isOpened(self) -> bool:
        return not self.released

    def read(self):
        if self.period:
            time.sleep(self.period)
        if self.released or (self.fail_after is not None and self.reads >= self.fail_after):
            return False, None
        n = self.reads
        self.reads += 1
        if n in self.garbage:
            return True, self.garbage[n]
        return True, self.frames[n % len(self.frames)]

    def get(self, prop: int) -> float:
        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.released = True


class ClosedDevice(FakeCamera):
    def __init__(self) -> None:
        super().__init__([np.zeros((8, 8, 3), np.uint8)])
        self.released = True


class Opener:
    """Hands out devices in order (the last one again when the list runs out); records each open."""

    def __init__(self, devices: Sequence[FakeCamera]) -> None:
        self.devices = list(devices)
        self.opened = 0
        self.times: list[float] = []  # time.monotonic() of each open
        self.lock = threading.Lock()

    def __call__(self, spec) -> FakeCamera:
        with self.lock:
            self.times.append(time.monotonic())
            dev = self.devices[min(self.opened, len(self.devices) - 1)]
            self.opened += 1
            return dev


def numbered_frames(n: int, size: tuple[int, int] = (64, 48)) -> list[np.ndarray]:
    """Frames that carry their number in the first pixel row (0..255 then wraps)."""
    out = []
    for i in range(n):
        f = np.zeros((size[1], size[0], 3), np.uint8)
        f[0, :, 0] = i % 256
        f[0, :, 1] = i // 256
        out.append(f)
    return out


def frame_number(img: np.ndarray) -> int:
    return int(img[0, 0, 0]) + 256 * int(img[0, 0, 1])


__all__ = [
    "ColourEngine",
    "ScriptedEngine",
    "NoFaces",
    "OneFace",
    "OnceThenNothing",
    "FakeCamera",
    "ClosedDevice",
    "Opener",
    "probs_for",
    "read_frames",
    "numbered_frames",
    "frame_number",
    "colour_mask_state",
    "MASK_COLOURS",
]
