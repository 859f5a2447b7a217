"""The predictions behind `mask-train predict`: the eval images -> submission.csv (info.csv's columns and
rows, `ans` = class 0-17).

Probabilities are averaged over the models given (an ensemble of any model files, e.g. the K fold
models) and, with --tta, over each crop and its mirror image. Faces come from the cache when `prepare`
cropped this very eval folder (its face boxes are reused), else MTCNN runs here; each model gets crops of
the geometry it was trained with. An image that cannot be read gets the most frequent predicted class,
and is named in a warning.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engines.faces import create_detector
from engines.labels import NUM_CLASSES
from train.config import Config
from train.data.cache import Cache
from train.data.layout import scan_eval
from train.data.prepare import face_or_centre_crop, pick_face, read_image
from train.evaluation.inference import ensemble_probs, load_models
from train.progress import task


def cached_boxes(cfg: Config, eval_dir: Path) -> dict[str, tuple[tuple[float, ...], bool, int, int]]:
    """ImageID -> (box, found, size, mtime_ns) from a cache that `prepare` made of this eval folder."""

    cache = Cache(cfg.resolve(cfg.data.cache_dir))
    if not cache.made_from(eval_dir, "eval"):
        return {}
    rows = Cache.read_rows(cache.eval_manifest_path)
    return {
        k: (
            (float(r["x1"]), float(r["y1"]), float(r["x2"]), float(r["y2"])),
            r["found"] == "1",
            int(r["size"]),
            int(r["mtime_ns"]),
        )
        for k, r in rows.items()
    }


class Cropper:
    """Eval image -> one crop per model geometry; the face box from the cache when still valid."""

    def __init__(self, cfg: Config, boxes: dict) -> None:
        self.boxes, self.detector, self.detected = boxes, create_detector(cfg), 0

    def box(self, image_id: str, path: Path, img: np.ndarray) -> tuple[tuple[float, ...], bool]:
        st, hit = path.stat(), self.boxes.get(image_id)
        if hit and hit[2] == st.st_size and hit[3] == st.st_mtime_ns:
            return hit[0], hit[1]
        self.detected += 1
        face = pick_face(self.detector.detect(img))
        return (face.box, True) if face is not None else (None, False)

    def crops(self, image_id: str, path: Path, img: np.ndarray, geoms: Sequence) -> list[np.ndarray]:
        box, found = self.box(image_id, path, img)
        return [face_or_centre_crop(img, box, found, g)[0] for g in geoms]


def predict(
    cfg: Config, models: Sequence[str], eval_path: str | Path, *, tta: bool = False, show: bool = True
) -> tuple[Any, np.ndarray, list[str]]:
    """(eval scan, probabilities [N, 18] in info.csv's order, names of unreadable images)."""

    scan = scan_eval(eval_path)
    engines = load_models(models, cfg.engine.device, cfg.engine.threads)
    geoms = [e.meta.crop for e in engines]
    cropper = Cropper(cfg, cached_boxes(cfg, scan.eval_dir))
    probs = np.full((len(scan.images), NUM_CLASSES), np.nan, np.float32)
    bad: list[str] = []
    bs = cfg.data.batch_size
    with task("predict", len(scan.images), show) as t:
        for start in range(0, len(scan.images), bs):
            chunk, per_model, rows = scan.images[start : start + bs], [[] for _ in engines], []
            for j, item in enumerate(chunk):
                img = read_image(item.path) if item.path.is_file() else None
                if img is None:
                    bad.append(item.image_id)
                    continue
                for lst, crop in zip(per_model, cropper.crops(item.image_id, item.path, img, geoms)):
                    lst.append(crop)
                rows.append(start + j)
            if rows:
                probs[rows] = ensemble_probs(engines, per_model, tta, bs)
            t.advance(len(chunk))
    return scan, fill_missing(probs), bad


def fill_missing(probs: np.ndarray) -> np.ndarray:
    """Rows of unreadable images get the mean of the others (so their `ans` is the most frequent guess)."""
    missing = np.isnan(probs).any(axis=1)
    if missing.any():
        probs[missing] = probs[~missing].mean(axis=0) if (~missing).any() else 1.0 / probs.shape[1]
    return probs


def submission_csv(scan, probs: np.ndarray) -> str:
    """info.csv's columns and row order, `ans` filled in."""
    fields = scan.fieldnames if "ans" in scan.fieldnames else [*scan.fieldnames, "ans"]
    buf = io.StringIO()
    # extrasaction="ignore": a row with more fields than info.csv's header has them under the key None
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row, p in zip(scan.rows, probs):
        writer.writerow({**row, "ans": int(np.argmax(p))})
    return buf.getvalue()
