"""Test videos with a known ground truth: real face photos walking in and out of a 640x480 frame, some
wearing a mask drawn from their MTCNN landmarks by the synthetic-data renderer (worn, or under the nose).

Each person is a cut-out of a photo (head and shoulders) that slides in from one side, stands, and slides
out. The ground truth gives, per person and frame, the face box in the video and whether the face is
fully in view. Masks are drawn in two saturated colours (worn: blue, under the nose: green) so a fake
classifier can read the mask state from a crop's colour (see tests/monitor/test_monitor_run.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tests.conftest import FACES

MASK_COLOURS = {"wear": (205, 120, 30), "incorrect": (60, 190, 50)}  # BGR


@dataclass(frozen=True)
class Walker:
    photo: str
    mask: str  # wear | incorrect | not_wear
    start: int  # first frame of the walk in
    x_stand: float  # centre of the face when standing (pixels)
    stand: int  # frames standing
    face_h: int = 180  # face height in the video (pixels)
    from_left: bool = True  # walks in from the left (and back out to the left)
    walk: int = 20  # frames to walk in (and out)


@dataclass
class PersonTruth:
    id: int
    photo: str
    mask: str
    boxes: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)
    in_view: set[int] = field(default_factory=set)  # frames with the face fully inside the frame

    @property
    def first_in_view(self) -> int:
        return min(self.in_view)


@functools.cache
def face_of(photo: str):
    """(image, box, landmarks) of the single face in a photo, found once."""
    from engines.config import DetectorConfig
    from engines.faces import FaceDetector

    img = cv2.imread(str(FACES / photo))
    assert img is not None, photo
    s = min(1.0, 640 / max(img.shape[:2]))  # the photos' faces are large: detect on a smaller copy (fast)
    small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else img
    faces = FaceDetector(DetectorConfig()).detect(small)
    assert faces, f"no face in {photo}"
    f = faces[0]
    return img, tuple(v / s for v in f.box), f.landmarks / s


def draw_mask(img: np.ndarray, box, lm: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """The synthetic-data renderer's mask (train.synth.mask_render) in a test colour: worn over the nose
    (blue) or under the nose (green)."""
    from train.synth.mask_render import MaskStyle
    from train.synth.mask_render import draw_mask as render

    if kind == "not_wear":
        return img
    style = MaskStyle(name=f"test_{kind}", kind="surgical", color=MASK_COLOURS[kind])
    return render(
        img,
        lm,
        box,
        kind,
        np.random.default_rng(seed),
        style=style,
        placement="over_nose" if kind == "wear" else "under_nose",
    )


@functools.cache
def sprite(photo: str, mask: str, face_h: int):
    """Head-and-shoulders cut-out scaled to a face height, with its mask drawn: (image, face box in it)."""
    img, box, lm = face_of(photo)
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    rx1, ry1 = int(max(x1 - 0.45 * w, 0)), int(max(y1 - 0.45 * h, 0))
    rx2, ry2 = int(min(x2 + 0.45 * w, img.shape[1])), int(min(y2 + 0.6 * h, img.shape[0]))
    s = face_h / h
    cut = cv2.resize(
        img[ry1:ry2, rx1:rx2], None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    )
    fbox = ((x1 - rx1) * s, (y1 - ry1) * s, (x2 - rx1) * s, (y2 - ry1) * s)
    flm = (lm - np.array([rx1, ry1], np.float32)) * s
    return draw_mask(np.ascontiguousarray(cut), fbox, flm, mask), fbox


def _background(size: tuple[int, int], seed: int) -> np.ndarray:
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = np.stack([110 + 40 * xx / w, 118 + 25 * yy / h, 125 + 30 * (1 - xx / w)], -1)
    bg[h * 3 // 4 :] *= 0.75  # a floor
    bg += rng.normal(0, 4, bg.shape)
    for x in range(40, w, 160):  # a door frame or two
        bg[:, x : x + 10] *= 0.7
    return np.clip(bg, 0, 255).astype(np.uint8)


def _centre_x(wk: Walker, frame: int, width: int, sprite_w: int) -> float | None:
    t = frame - wk.start
    total = 2 * wk.walk + wk.stand
    if t < 0 or t > total:
        return None
    off = -sprite_w if wk.from_left else width + sprite_w
    if t < wk.walk:
        return off + (wk.x_stand - off) * t / wk.walk
    if t <= wk.walk + wk.stand:
        return wk.x_stand
    return wk.x_stand + (off - wk.x_stand) * (t - wk.walk - wk.stand) / wk.walk


def make_video(
    path: Path,
    walkers: list[Walker],
    frames: int,
    size: tuple[int, int] = (640, 480),
    fps: float = 30.0,
    seed: int = 0,
) -> list[PersonTruth]:
    """Write the video (mp4v) and return its ground truth."""
    width, height = size
    bg = _background(size, seed)
    truth = [PersonTruth(i + 1, wk.photo, wk.mask) for i, wk in enumerate(walkers)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    rng = np.random.default_rng(seed + 1)
    noises = [rng.normal(0, 2.0, (height, width, 3)).astype(np.int16) for _ in range(5)]  # sensor noise
    for f in range(frames):
        canvas = bg.copy()
        for wk, pt in zip(walkers, truth):
            cut, fbox = sprite(wk.photo, wk.mask, wk.face_h)
            sh, sw = cut.shape[:2]
            fcx = _centre_x(wk, f, width, sw)
            if fcx is None:
                continue
            face_cx = (fbox[0] + fbox[2]) / 2
            ox = int(round(fcx - face_cx))
            oy = int(round(height - sh + min(60, sh * 0.15)))  # shoulders run off the bottom edge
            x1, y1 = max(ox, 0), max(oy, 0)
            x2, y2 = min(ox + sw, width), min(oy + sh, height)
            if x1 >= x2 or y1 >= y2:
                continue
            canvas[y1:y2, x1:x2] = cut[y1 - oy : y2 - oy, x1 - ox : x2 - ox]
            box = (fbox[0] + ox, fbox[1] + oy, fbox[2] + ox, fbox[3] + oy)
            pt.boxes[f] = box
            if box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height:
                pt.in_view.add(f)
        writer.write(np.clip(canvas + noises[f % len(noises)], 0, 255).astype(np.uint8))
    writer.release()
    return truth


# The scenario most tests use: 170 frames, at most two people at once, one of each mask state.
SCENE = [
    Walker("astronaut.png", "not_wear", start=0, x_stand=170, stand=50, face_h=170),
    Walker("obama2.jpg", "wear", start=15, x_stand=470, stand=85, face_h=190, from_left=False),
    Walker("biden.jpg", "incorrect", start=95, x_stand=170, stand=35, face_h=200),
]
SCENE_FRAMES = 172

# The benchmark scene: three people in view most of the time, faces 150-250 px tall.
BENCH_SCENE = [
    Walker("astronaut.png", "not_wear", start=0, x_stand=110, stand=240, face_h=160),
    Walker("obama2.jpg", "wear", start=10, x_stand=320, stand=220, face_h=200, from_left=False),
    Walker("biden.jpg", "incorrect", start=30, x_stand=530, stand=200, face_h=180, from_left=False),
]
BENCH_FRAMES = 300


if (
    __name__ == "__main__"
):  # python -m tests.videogen OUT.mp4 [--bench]: the clips, e.g. for mask-monitor bench
    import sys

    out = Path(next(a for a in sys.argv[1:] if not a.startswith("--")))
    bench = "--bench" in sys.argv
    truth = make_video(out, BENCH_SCENE if bench else SCENE, BENCH_FRAMES if bench else SCENE_FRAMES)
    for p in truth:
        print(f"person {p.id} ({p.photo}, {p.mask}): in view frames {min(p.in_view)}-{max(p.in_view)}")
