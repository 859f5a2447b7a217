"""`mask-train evaluate-frames`: held-out photos as the monitor would meet them.

Each photo's face (MTCNN, padded retry, or the whole image, as `import` finds it, with the fixed
REFERENCE_DETECTOR settings so that every detection path is scored on the same frames; where that takes the
whole image, a confident face down to 12 px, a thumbnail's looked for enlarged, so that a scene's small face
is placed at a face height too) is
scaled to a face height drawn from 60-200 px and pasted at a random place of a 640x480 frame with a plain,
noisy background. The frame then goes through the monitor's own path: MTCNN on the copy shrunk to
monitor.detect_max_side with [detector] settings (engines.faces.detect_shrunk), the detection that overlaps
the pasted face, the model file's own crop geometry (engines.faces.crop_face with meta.crop), the
classifier, and the mask state read from the 18 probabilities (engines.labels.marginals). Where the
detector misses, a second, permissive look (monitor.recheck_thresholds, as the monitor's tracker takes around
a known person) is reported separately. Nothing is written; the numbers are printed.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from engines.errors import UserError
from engines.faces import FIRST_DEMO_DETECTOR, Box, crop_face, detect_shrunk, iou
from engines.labels import MASK_NAMES, marginals
from train.config import Config
from train.data.importer import MASK_WORDS, find_box, find_small_face
from train.data.prepare import read_image
from train.progress import task

FRAME_W, FRAME_H = 640, 480
FACE_HEIGHTS = (60, 200)
# where each source photo's face is: fixed (MTCNN's settings of the first demo), whatever detector is
# measured; with the first demo's monitor.detect_max_side, also the baseline path (--baseline-detection)
REFERENCE_DETECTOR = FIRST_DEMO_DETECTOR
BASELINE_MAX_SIDE = 320


@dataclass(frozen=True)
class Photo:
    path: Path
    mask: int  # 0 wear / 1 incorrect / 2 not wear


@dataclass(frozen=True)
class Pasted:
    frame: np.ndarray
    box: Box  # where the face is in the frame
    # the face box was found in the photo (MTCNN, or MTCNN on the photo padded into a frame); False: the
    # whole photo was taken as the face (a close-up, a mannequin, or a scene where no face was found even down
    # to 12 px), so the face in the frame is not at the 60-200 px drawn for it
    box_known: bool = True


Counter3 = np.ndarray  # [3] counts per true mask state


@dataclass
class Tally:
    """Per true mask state: faces, found by the first look, found with the second look, predicted states."""

    faces: Counter3 = field(default_factory=lambda: np.zeros(3, np.int64))
    found: Counter3 = field(default_factory=lambda: np.zeros(3, np.int64))
    found_second: Counter3 = field(default_factory=lambda: np.zeros(3, np.int64))
    confident: Counter3 = field(default_factory=lambda: np.zeros(3, np.int64))  # first look >= confirm_score
    faces_box_known: Counter3 = field(default_factory=lambda: np.zeros(3, np.int64))  # Pasted.box_known
    found_box_known: Counter3 = field(default_factory=lambda: np.zeros(3, np.int64))
    predicted: np.ndarray = field(default_factory=lambda: np.zeros((3, 4), np.int64))  # col 3: not found
    detect_seconds: float = 0.0
    second_seconds: float = 0.0
    frames: int = 0


ListRow = tuple[Path, str, int, str]  # (image, its name in the list, mask state, group)


def list_rows(path: str | Path, root: str | Path, hint: str = "") -> list[ListRow]:
    """The rows of a labels CSV (file,mask[,group],... as import's holdout.csv or synth's labels.csv), image
    paths relative to root; a row without a group is a group of its own. One reader for evaluate-frames and
    demo-door."""
    path, root = Path(path), Path(root)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc}){hint}") from None
    out = []
    for line, r in enumerate(rows, 2):
        mask = MASK_WORDS.get((r.get("mask") or "").strip().lower())
        name = (r.get("file") or "").strip()
        if mask is None or not name:
            raise UserError(f"{path} line {line}: needs file and mask (wear|incorrect|not_wear)")
        out.append((root / name, name, mask, (r.get("group") or "").strip() or name))
    return out


def read_list(path: str | Path, root: str | Path) -> list[Photo]:
    """The photos of a labels CSV, for evaluate-frames."""
    photos = [Photo(image, mask) for image, _, mask, _ in list_rows(path, root)]
    if not photos:
        raise UserError(f"{path} lists no photos")
    return photos


def paste(
    img: np.ndarray,
    box: Box,
    height: float,
    rng: np.random.Generator,
    box_known: bool = True,
    background: np.ndarray | None = None,
) -> Pasted:
    """The image scaled so its face is `height` px tall, pasted into a 640x480 frame with the face inside:
    a plain, noisy one, or a copy of `background` (640x480)."""
    s = height / max(box[3] - box[1], 1.0)
    small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    fx1, fy1, fx2, fy2 = (v * s for v in box)
    if background is None:
        base = rng.integers(40, 200, size=3)
        frame = np.clip(base + rng.normal(0, 12, (FRAME_H, FRAME_W, 3)), 0, 255).astype(np.uint8)
        frame = cv2.GaussianBlur(frame, (5, 5), 0)
    else:
        frame = background.copy()
    fw, fh = fx2 - fx1, fy2 - fy1
    ox = rng.uniform(-fx1, FRAME_W - fw - fx1) if FRAME_W > fw else -fx1
    oy = rng.uniform(-fy1, FRAME_H - fh - fy1) if FRAME_H > fh else -fy1
    ox, oy = int(round(ox)), int(round(oy))
    h, w = small.shape[:2]
    x1, y1, x2, y2 = max(ox, 0), max(oy, 0), min(ox + w, FRAME_W), min(oy + h, FRAME_H)
    if x2 > x1 and y2 > y1:
        frame[y1:y2, x1:x2] = small[y1 - oy : y2 - oy, x1 - ox : x2 - ox]
    return Pasted(frame, (fx1 + ox, fy1 + oy, fx2 + ox, fy2 + oy), box_known)


def _inside(point, box: Box) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def match(faces: Sequence, truth: Box):
    """The detection of the pasted face, the most overlapping one of those whose centre is inside the face's
    box or whose box holds the face's centre: the face's box is the reference MTCNN's, and on a close-up
    that can be one eye (three held-out photos of one person), where the detection is the whole face."""
    centre = ((truth[0] + truth[2]) / 2, (truth[1] + truth[3]) / 2)
    over = [f for f in faces if _inside(f.center, truth) or _inside(centre, f.box)]
    return max(over, key=lambda f: iou(f.box, truth), default=None)


def prepare_frames(photos: Sequence[Photo], detector, seed: int, show: bool) -> list[tuple[Photo, Pasted]]:
    """Every readable photo pasted once into a frame (the same frames for every model compared)."""
    out = []
    with task("pasting", len(photos), show) as bar:
        for i, ph in enumerate(photos):
            img = read_image(ph.path)
            bar.advance()
            if img is None:
                if i == len(photos) - 1 and not out:  # nothing to measure: not a table of zeros
                    raise UserError(f"{ph.path}: not an image (no photo of the list could be read)")
                continue
            box, _, how = find_box(img, detector)
            if how == "whole_image" and (small := find_small_face(img, detector)) is not None:
                box, how = small, "small_face"
            rng = np.random.default_rng([seed, i])
            out.append((ph, paste(img, box, rng.uniform(*FACE_HEIGHTS), rng, how != "whole_image")))
    return out


def run_frames(
    frames: Sequence[tuple[Photo, Pasted]], engines: Sequence, cfg: Config, detector, show: bool
) -> list[Tally]:
    """One tally per model: detection is shared (it does not depend on the model), classification not."""
    tallies = [Tally() for _ in engines]
    m = cfg.monitor
    with task("frames", len(frames), show) as bar:
        for ph, pasted in frames:
            t0 = time.perf_counter()
            face = match(detect_shrunk(detector, pasted.frame, m.detect_max_side), pasted.box)
            t1 = time.perf_counter()
            second = face
            if (
                face is None
            ):  # the monitor's second look, over the whole frame here (no track to search around)
                second = match(
                    detect_shrunk(detector, pasted.frame, m.detect_max_side, thresholds=m.recheck_thresholds),
                    pasted.box,
                )
            t2 = time.perf_counter()
            for tally, engine in zip(tallies, engines):
                tally.frames += 1
                tally.detect_seconds += t1 - t0
                tally.second_seconds += t2 - t1
                tally.faces[ph.mask] += 1
                tally.found[ph.mask] += face is not None
                tally.confident[ph.mask] += face is not None and face.score >= m.confirm_score
                tally.faces_box_known[ph.mask] += pasted.box_known
                tally.found_box_known[ph.mask] += pasted.box_known and face is not None
                tally.found_second[ph.mask] += second is not None
                if second is None:
                    tally.predicted[ph.mask, 3] += 1
                    continue
                crop = crop_face(pasted.frame, second.box, engine.meta.crop)
                probs = engine.classify([crop], 1)
                tally.predicted[ph.mask, int(marginals(np.asarray(probs)[0])[0].argmax())] += 1
            bar.advance()
    return tallies


def scores(t: Tally) -> dict[str, float]:
    """The issue's target numbers from one tally (a face never found is not flagged)."""
    n = np.maximum(t.faces, 1)
    flagged = t.predicted[:, 1] + t.predicted[:, 2]
    out = {
        "masked_found": float(t.found[0] / n[0]),
        "masked_found_second_look": float(t.found_second[0] / n[0]),
        "masked_found_confident": float(t.confident[0] / n[0]),
        "masked_found_box_known": float(t.found_box_known[0] / max(t.faces_box_known[0], 1)),
        "bare_found": float(t.found[2] / n[2]),
        "masked_not_flagged": float((t.faces[0] - flagged[0]) / n[0]),
        "bare_flagged": float(flagged[2] / n[2]),
        "incorrect_recall": float(t.predicted[1, 1] / n[1]),
        "detect_fps": t.frames / max(t.detect_seconds, 1e-9),
        "detect_fps_with_second_look": t.frames / max(t.detect_seconds + t.second_seconds, 1e-9),
    }
    real = t.faces[0] + t.faces[2]
    out["flag_right"] = float((t.faces[0] - flagged[0] + flagged[2]) / max(real, 1))
    return out


MASK_COLUMNS = (*MASK_NAMES, "not found")


def detection_only(
    frames: Sequence[tuple[Photo, Pasted]], detector, max_side: int, show: bool
) -> tuple[np.ndarray, np.ndarray, float]:
    """(faces found per true mask state, faces per state, frames/s) of one detection path: another
    path's cost and yield on the same frames, in the same run."""
    found, faces, seconds = np.zeros(3, np.int64), np.zeros(3, np.int64), 0.0
    with task("baseline detection", len(frames), show) as bar:
        for ph, pasted in frames:
            t0 = time.perf_counter()
            face = match(detect_shrunk(detector, pasted.frame, max_side), pasted.box)
            seconds += time.perf_counter() - t0
            faces[ph.mask] += 1
            found[ph.mask] += face is not None
            bar.advance()
    return found, faces, len(frames) / max(seconds, 1e-9)
