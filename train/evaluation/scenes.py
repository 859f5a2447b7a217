"""`mask-train evaluate-scenes`: street and crowd scenes (PASCAL VOC boxes) through the monitor's own path.

Each scene is scaled to a frame `[scenes] frame_width` wide (640, a camera's frame), MTCNN runs on it as the
monitor runs it (engines.faces.detect_shrunk: the copy shrunk to monitor.detect_max_side, [detector]
settings), each annotated face takes at most one detection (train.data.scenes.assign: a centre inside the
other box and IoU >= [scenes] match_iou, pairs by IoU), and a found face is cut with the model file's own
crop geometry (engines.faces.crop_face) and classified, the mask state read from the 18 probabilities
(engines.labels.marginals). Beside it, the same faces cut at the annotated box (mapped as `import` maps it,
train.data.scenes.BoxMapping) and classified: the difference between the two is detection's part. The
issue's targets are scored on faces at least 40 px tall in the frame.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.errors import UserError
from engines.faces import Box, crop_face, detect_shrunk
from engines.labels import MASK_NAMES, marginals
from train.config import Config
from train.data.importer import MASK_WORDS, ImportReport, voc_items
from train.data.prepare import read_image
from train.data.scenes import BoxMapping, assign
from train.progress import task

HEIGHT_EDGES = (40, 80, 160)  # face height in the frame: <40, 40-80, 80-160, >=160
BIN_NAMES = ("<40", "40-80", "80-160", ">=160")
TARGET_MIN_HEIGHT = 40
# (key, what, comparison, target): issue 22's targets, on faces >= TARGET_MIN_HEIGHT px tall
TARGETS = (
    ("incorrect_recall", "incorrect masks read as incorrect", ">=", 0.70),
    ("bare_read_as_worn", "bare faces found read as worn", "<=", 0.05),
    ("masked_not_flagged", "masked faces not flagged", ">=", 0.97),
    ("flag_right", "flag-or-not right", ">=", 0.95),
    ("found", "faces found", ">=", 0.92),
    ("ece", "expected calibration error (mask)", "<=", 0.05),
)
NOT_FOUND = 3
ECE_BINS = 10


@dataclass(frozen=True)
class SceneFace:
    box: Box  # in the scene's own pixels
    mask: int


@dataclass(frozen=True)
class Scene:
    path: Path
    faces: tuple[SceneFace, ...]


@dataclass(frozen=True)
class FaceResult:
    """One annotated face: its state, height in the frame, and what each path read (NOT_FOUND: no detection)
    with the top mask probability."""

    mask: int
    height: float
    score: float  # the detection's score (0: not found)
    read: int
    confidence: float
    read_box: int  # cut at the (mapped) annotated box
    confidence_box: float


def _box(text: str, where: str) -> Box:
    try:
        box = tuple(float(v) for v in text.split())
    except ValueError:
        box = ()
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise UserError(f"{where}: box {text!r} is not 'x1 y1 x2 y2'")
    return box  # type: ignore[return-value]


def read_scenes(data_dir: str | Path, list_csv: str | Path | None = None) -> list[Scene]:
    """The scenes of a VOC folder: those a list names (file,mask,...,box rows: a VOC import's holdout.csv or
    kept.csv, paths relative to the folder), or every annotation of the folder."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"--data {data_dir}: no such folder")
    by_file: dict[Path, list[SceneFace]] = {}
    if list_csv is None:
        if not (data_dir / "annotations").is_dir():
            raise UserError(f"--data {data_dir}: no annotations/ folder (PASCAL VOC); give --list")
        for it in voc_items(data_dir, ImportReport("scenes", "voc")):
            by_file.setdefault(it.src, []).append(SceneFace(it.box, it.mask))
    else:
        path = Path(list_csv)
        try:
            with path.open(newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.DictReader(fh))
        except OSError as exc:
            raise UserError(f"--list {path}: cannot read it ({exc})") from None
        if rows and not {"file", "mask", "box"} <= set(rows[0]):
            raise UserError(f"--list {path}: needs the columns file,mask,box (a VOC import's holdout.csv)")
        for line, r in enumerate(rows, 2):
            where = f"{path} line {line}"
            mask = MASK_WORDS.get((r.get("mask") or "").strip().lower())
            if mask is None:
                raise UserError(f"{where}: mask {r.get('mask')!r} is not one of wear, incorrect, not_wear")
            box = _box(r.get("box") or "", where)
            by_file.setdefault(data_dir / r["file"].strip(), []).append(SceneFace(box, mask))
    if not by_file:
        raise UserError(f"no scenes to evaluate in {list_csv or data_dir}")
    return [Scene(p, tuple(faces)) for p, faces in by_file.items()]


def to_frame(img: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """The scene scaled to `width` px wide, as a camera frame; (frame, scale)."""
    import cv2

    s = width / img.shape[1]
    size = (width, max(int(round(img.shape[0] * s)), 12))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR), s


def detect_in_frame(
    img: np.ndarray, boxes: Sequence[Box], detector, width: int, max_side: int, min_iou: float
) -> tuple[np.ndarray, list[Box], list]:
    """A scene as the monitor meets it: scaled to a `width`-px-wide frame, MTCNN on the copy shrunk to
    `max_side`. Returns the frame, the annotated `boxes` moved there, and the detection each is given (or
    None: not found)."""
    frame, s = to_frame(img, width)
    truths = [tuple(v * s for v in b) for b in boxes]
    return frame, truths, assign(truths, detect_shrunk(detector, frame, max_side), min_iou)


def _read(probs: np.ndarray) -> tuple[list[int], list[float]]:
    m = marginals(np.asarray(probs))[0] if len(probs) else np.zeros((0, 3))
    return [int(v) for v in m.argmax(axis=1)], [float(v) for v in m.max(axis=1)]


def run_scenes(
    scenes: Sequence[Scene], engines: Sequence, cfg: Config, detector, mapping: BoxMapping, show: bool
) -> tuple[list[list[FaceResult]], int]:
    """Per model, one FaceResult per annotated face of every readable scene; and the unreadable scenes."""
    out: list[list[FaceResult]] = [[] for _ in engines]
    unreadable = 0
    batch = cfg.classifier.batch_size
    with task("scenes", len(scenes), show) as bar:
        for scene in scenes:
            bar.advance()
            img = read_image(scene.path)
            if img is None:
                unreadable += 1
                if unreadable == len(scenes):  # nothing to measure: not a table of zeros that "passes"
                    raise UserError(f"{scene.path}: not an image (no scene of the list could be read)")
                continue
            frame, truths, dets = detect_in_frame(
                img,
                [f.box for f in scene.faces],
                detector,
                cfg.scenes.frame_width,
                cfg.monitor.detect_max_side,
                cfg.scenes.match_iou,
            )
            for results, engine in zip(out, engines):
                geom = engine.meta.crop
                found = [i for i, d in enumerate(dets) if d is not None]
                e2e = _read(engine.classify([crop_face(frame, dets[i].box, geom) for i in found], batch))
                boxed = _read(
                    engine.classify([crop_face(frame, mapping.apply(t), geom) for t in truths], batch)
                )
                by_face = dict(zip(found, zip(*e2e)))
                for i, (face, t) in enumerate(zip(scene.faces, truths)):
                    read, conf = by_face.get(i, (NOT_FOUND, 0.0))
                    results.append(
                        FaceResult(
                            face.mask,
                            t[3] - t[1],
                            0.0 if dets[i] is None else float(dets[i].score),
                            read,
                            conf,
                            boxed[0][i],
                            boxed[1][i],
                        )
                    )
    return out, unreadable


def height_bin(height: float) -> int:
    return int(np.searchsorted(HEIGHT_EDGES, height, side="right"))


def ece(confidence: np.ndarray, right: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the gap between confidence and accuracy, weighted over equal-width bins."""
    if len(confidence) == 0:
        return 0.0
    idx = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.sum() * abs(confidence[sel].mean() - right[sel].mean())
    return float(total / len(confidence))


def path_scores(truth: np.ndarray, read: np.ndarray, conf: np.ndarray, unsure_below: float) -> dict:
    """The numbers of one path over some faces: the confusion matrix (rows: truth wear / incorrect / not wear;
    columns: read as those, and not found), found, incorrect recall, bare faces found read as worn, masked
    faces not flagged, flag-or-not right (a face not found is not flagged: right for a masked face, wrong for
    the others), ECE over the faces found, and the share of wrong answers at least `unsure_below` confident
    (what --collect would never keep as unsure)."""
    confusion = np.zeros((3, 4), np.int64)
    np.add.at(confusion, (truth, read), 1)
    n = confusion.sum(axis=1)
    found = read != NOT_FOUND
    flagged = (read == 1) | (read == 2)
    should = truth != 0
    wrong = found & (read != truth)
    bare_found = confusion[2, :3].sum()
    return {
        "faces": int(len(truth)),
        "faces_per_state": {MASK_NAMES[i]: int(n[i]) for i in range(3)},
        "confusion": confusion.tolist(),
        "found": float(found.mean()) if len(truth) else 0.0,
        "incorrect_recall": float(confusion[1, 1] / max(n[1], 1)),
        "bare_read_as_worn": float(confusion[2, 0] / max(bare_found, 1)),
        "masked_not_flagged": float((n[0] - confusion[0, 1] - confusion[0, 2]) / max(n[0], 1)),
        "flag_right": float((flagged == should).mean()) if len(truth) else 0.0,
        "ece": ece(conf[found], (read == truth)[found].astype(np.float64)),
        "wrong_confident": float((wrong & (conf >= unsure_below)).sum() / max(wrong.sum(), 1)),
        "wrong": int(wrong.sum()),
    }


def summarise(results: Sequence[FaceResult], unsure_below: float) -> dict:
    """Everything evaluate-scenes prints and writes for one model: faces found per state and height bin, both
    paths on all faces and on faces >= TARGET_MIN_HEIGHT px tall, and the targets with pass / fail."""
    truth = np.array([r.mask for r in results], np.int64)
    heights = np.array([r.height for r in results], np.float64)
    bins = np.array([height_bin(h) for h in heights], np.int64)
    e2e = (np.array([r.read for r in results], np.int64), np.array([r.confidence for r in results]))
    box = (np.array([r.read_box for r in results], np.int64), np.array([r.confidence_box for r in results]))
    found_by_bin = {
        MASK_NAMES[m]: {
            BIN_NAMES[b]: [
                int(((truth == m) & (bins == b) & (e2e[0] != NOT_FOUND)).sum()),
                int(((truth == m) & (bins == b)).sum()),
            ]
            for b in range(len(BIN_NAMES))
        }
        for m in range(3)
    }
    big = heights >= TARGET_MIN_HEIGHT
    out = {"found_by_height": found_by_bin}
    for name, sel in (("all", np.ones(len(truth), bool)), (f"min_{TARGET_MIN_HEIGHT}px", big)):
        out[name] = {
            "end_to_end": path_scores(truth[sel], e2e[0][sel], e2e[1][sel], unsure_below),
            "annotated_box": path_scores(truth[sel], box[0][sel], box[1][sel], unsure_below),
        }
    scored = out[f"min_{TARGET_MIN_HEIGHT}px"]["end_to_end"]
    out["targets"] = [
        {
            "key": key,
            "what": what,
            "value": scored[key],
            "op": op,
            "target": target,
            "pass": scored[key] >= target if op == ">=" else scored[key] <= target,
        }
        for key, what, op, target in TARGETS
    ]
    return out
