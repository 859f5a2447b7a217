"""The work of `mask-train prepare` (and of the training commands' ensure_prepared): crop every face of a
competition folder into the cache, with a manifest and a report.

The crop is engines.faces.crop_face (the one the live monitor uses) around the largest MTCNN face; where
MTCNN finds none, the centred 3:4 region (engines.faces.center_box) is cropped instead and counted.
A second run reuses every crop whose source file is unchanged (size and mtime) and whose settings
(crop geometry, detector) are the same; a changed crop geometry alone re-crops from the stored face boxes
(no second MTCNN pass); the manifest is saved every few hundred images, so an interrupted run loses little.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from engines.config import CropConfig, DetectorConfig, section_from_dict
from engines.errors import UserError
from engines.faces import center_box, create_detector, crop_face, crop_region
from engines.fileio import atomic_write_json
from train.config import Config
from train.data.cache import EVAL_FIELDS, TRAIN_FIELDS, Cache, crop_name, settings_of
from train.data.layout import Problem, scan_eval, scan_train
from train.progress import task

DETECT_BATCH = 8
FLUSH_EVERY = 256


@dataclass(frozen=True)
class Job:
    key: str
    src: Path
    crop_rel: str
    extra: dict[str, Any] = field(default_factory=dict)  # label columns of the manifest row


@dataclass
class PrepareReport:
    cache: Path
    counts: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    centred: list[str] = field(default_factory=list)

    def to_dict(self, data_dir: Path) -> dict[str, Any]:
        return {
            "data_dir": str(data_dir),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "counts": dict(self.counts),
            "problems": [p.to_dict() for p in self.problems],
            "centred": self.centred,
        }


# --- reading and cropping --------------------------------------------------------------------------------


MAX_IMAGE_PIXELS = 100_000_000  # a 100-megapixel photo decodes to 300 MB; more is refused before decoding
MAX_IMAGE_BYTES = 256 << 20  # bytes of one image file


def image_problem(path: str | os.PathLike[str]) -> str | None:
    """Why `path` is refused before it is decoded (a decompression bomb: a small file of a huge picture, or
    a huge file), or None. The size comes from the header alone (Pillow reads only that)."""
    import warnings

    from PIL import Image

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if size > MAX_IMAGE_BYTES:
        return f"{size} bytes (at most {MAX_IMAGE_BYTES})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own bomb warning: the check is below
            with Image.open(path) as im:
                w, h = im.size
    except Image.DecompressionBombError as exc:
        return f"more than {MAX_IMAGE_PIXELS} pixels ({str(exc).split(', could be')[0]})"
    except Exception:  # a format Pillow does not read (or a corrupt header): OpenCV decides
        return None
    if w * h > MAX_IMAGE_PIXELS:
        return f"{w}x{h} = {w * h} pixels (at most {MAX_IMAGE_PIXELS})"
    return None


def read_image(path: str | os.PathLike[str]) -> np.ndarray | None:
    """BGR uint8 image, or None for a file OpenCV cannot decode (corrupt, truncated to nothing, not an
    image) or that image_problem refuses (too many pixels): the one reader of photos from elsewhere."""
    import cv2

    if image_problem(path) is not None:
        return None
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except (OSError, cv2.error):
        return None
    if img is None or img.ndim != 3 or min(img.shape[:2]) < 12:
        return None
    return img


def pick_face(faces: list) -> Any | None:
    """The subject of a portrait is the largest face; smaller ones are people behind or false hits."""
    return max(faces, key=lambda f: f.width * f.height) if faces else None


def write_crop(path: Path, crop: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:  # pragma: no cover - OpenCV cannot fail on a valid uint8 image
        raise UserError(f"cannot encode crop {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)


def face_or_centre_crop(img: np.ndarray, box, found: bool, geom: CropConfig) -> tuple[np.ndarray, tuple]:
    """THE crop of one image (training cache, recrop, predict): around the face box when a face was found,
    else the centred 3:4 region. Returns (crop, the box it was cut from: the face box or that region)."""

    if found:
        return crop_face(img, box, geom), tuple(box)
    region = center_box(img.shape, geom)
    return crop_region(img, region, geom), tuple(region)


def crop_batch(
    images: list[np.ndarray], detector, geom: CropConfig
) -> list[tuple[np.ndarray, tuple, float, bool]]:
    """Images -> (crop, box, score, found) each; the box is the face box, or the centred region."""
    out = []
    for img, faces in zip(images, detector.detect_batch(images)):
        face = pick_face(faces)
        crop, box = face_or_centre_crop(img, face.box if face else None, face is not None, geom)
        out.append((crop, box, face.score if face else 0.0, face is not None))
    return out


def _where(prefix: str) -> str:
    return "eval/images" if prefix else "train/images"


def _row(job: Job, stat: os.stat_result, box, score: float, found: bool) -> dict[str, Any]:
    x1, y1, x2, y2 = (round(float(v), 1) for v in box)
    return {
        "key": job.key,
        "crop": job.crop_rel,
        "found": int(found),
        "score": round(float(score), 4),
        "x1": x1,
        "y1": y1,
        "x2": x2,
        "y2": y2,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        **job.extra,
    }


def source_unchanged(row: dict[str, str] | None, job: Job) -> bool:
    try:
        st = job.src.stat()
    except OSError:
        return False
    return (
        row is not None and row.get("size") == str(st.st_size) and row.get("mtime_ns") == str(st.st_mtime_ns)
    )


def is_current(row: dict[str, str] | None, job: Job, cache: Cache) -> bool:
    return (
        source_unchanged(row, job)
        and row.get("crop") == job.crop_rel
        and (cache.root / job.crop_rel).is_file()
    )


class SplitCropper:
    """One half (train/ or eval/) of a prepare run: what every step needs (the cache, its old manifest rows,
    the detector, the crop geometry, the report) in one place instead of a bundle passed from call to call."""

    def __init__(
        self,
        name: str,
        jobs: list[Job],
        old: dict[str, dict],
        path: Path,
        fields: list[str],
        cache: Cache,
        detector: Any,
        geom: CropConfig,
        report: PrepareReport,
    ) -> None:
        self.jobs, self.old, self.path, self.fields = jobs, old, path, fields
        self.cache, self.detector, self.geom, self.report = cache, detector, geom, report
        self.name, self.prefix = name, "" if name == "train" else "eval_"
        self.order = [j.key for j in jobs]
        self.tick: Callable[[int], None] = lambda _n: None

    def run(self, mode: str, show: bool) -> None:
        """Crop what is not current (the manifest is flushed as it goes), then count the half's rows."""
        with task(f"prepare {self.name}", len(self.jobs), enabled=show) as t:
            self.tick = t.advance
            rows = self.process(mode)
        self.flush(rows)
        _count_rows((rows[k] for k in self.order if k in rows), self.report, self.prefix)

    def flush(self, rows: dict) -> None:
        """The manifest so far, in the data's order: an interrupted run keeps what it did."""
        Cache.write_rows(self.path, [rows[k] for k in self.order if k in rows], self.fields)

    def recrop(self) -> dict:
        """Only the crop geometry changed: crop again from the stored boxes, without running MTCNN again."""
        rows = {}
        for job in self.jobs:
            row = self.old.get(job.key)
            img = read_image(job.src) if source_unchanged(row, job) else None
            if img is None:
                continue
            found = str(row["found"]) == "1"
            box = tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2"))
            crop, region = face_or_centre_crop(img, box, found, self.geom)
            write_crop(self.cache.root / job.crop_rel, crop)
            if not found:
                row = {**row, **dict(zip(("x1", "y1", "x2", "y2"), (round(float(v), 1) for v in region)))}
            rows[job.key] = {**row, "crop": job.crop_rel}
            self.tick(1)
            if len(rows) % FLUSH_EVERY == 0:
                self.flush(rows)
        self.report.counts[f"{self.prefix}recropped"] += len(rows)
        return rows

    def process(self, mode: str = "reuse") -> dict:
        """Crop every job not already current; corrupt images become problems. Returns key -> manifest row."""
        if mode == "recrop":
            rows = self.recrop()
        else:
            rows = {
                j.key: self.old[j.key]
                for j in self.jobs
                if mode == "reuse" and is_current(self.old.get(j.key), j, self.cache)
            }
            self.report.counts[f"{self.prefix}skipped"] += len(rows)
            self.tick(len(rows))
        todo = [j for j in self.jobs if j.key not in rows]
        pending: list[tuple[Job, np.ndarray, os.stat_result]] = []
        done_since_flush = 0
        for i, job in enumerate(todo):
            img = read_image(job.src)
            if img is None:
                self.report.problems.append(
                    Problem("corrupt", f"{_where(self.prefix)}/{job.key}", "cannot be decoded")
                )
                self.tick(1)
            else:
                pending.append((job, img, job.src.stat()))
            if len(pending) == DETECT_BATCH or (i == len(todo) - 1 and pending):
                self._crop_pending(pending, rows)
                done_since_flush += len(pending)
                pending = []
                if done_since_flush >= FLUSH_EVERY:
                    self.flush(rows)
                    done_since_flush = 0
        return rows

    def _crop_pending(self, pending: list[tuple[Job, np.ndarray, os.stat_result]], rows: dict) -> None:
        """Detect and crop one batch of decoded images (MTCNN is faster on a batch)."""
        results = crop_batch([p[1] for p in pending], self.detector, self.geom)
        for (job, _, st), (crop, box, score, found) in zip(pending, results):
            write_crop(self.cache.root / job.crop_rel, crop)
            rows[job.key] = _row(job, st, box, score, found)
        self.report.counts[f"{self.prefix}cropped"] += len(pending)
        self.tick(len(pending))


# --- the two halves --------------------------------------------------------------------------------------


def train_jobs(scan) -> list[Job]:
    return [
        Job(
            img.key,
            img.path,
            f"crops/train/{img.folder}/{crop_name(img.path.name)}",
            {
                "folder": img.folder,
                "person": img.person,
                "gender": img.gender,
                "race": img.race,
                "age": img.age_years,
                "mask": img.mask,
            },
        )
        for img in scan.images
    ]


def eval_jobs(scan) -> list[Job]:
    return [
        Job(img.image_id, img.path, f"crops/eval/{crop_name(img.image_id)}")
        for img in scan.images
        if img.path.is_file()
    ]


def _count_rows(rows: Iterable[dict], report: PrepareReport, prefix: str) -> None:
    rows = list(rows)
    found = sum(str(r["found"]) == "1" for r in rows)
    report.counts[f"{prefix}images"] = len(rows)
    report.counts[f"{prefix}faces"] = found
    report.counts[f"{prefix}centred"] = len(rows) - found
    report.centred += [f"{_where(prefix)}/{r['key']}" for r in rows if str(r["found"]) != "1"]


REBUILD_HINT = "choose another cache folder (--out) or pass --force to rebuild it"


def cache_mode(cache: Cache, data_dir: Path, settings: dict, force: bool, hint: str = REBUILD_HINT) -> str:
    """'reuse' (same settings: skip what is done), 'recrop' (only the crop geometry changed: keep the face
    boxes) or 'redo'. A cache made from other data is refused, not overwritten."""
    info = cache.info()
    if info is None or force:
        return "redo"
    if not info.get("data_dir"):  # made by `import` alone: prepare may join it with the same settings
        if (info.get("settings") or {}) != settings:
            raise UserError(
                f"cache {cache.root} was imported into with other crop or detector settings: {hint}"
            )
        return "reuse"
    if not cache.made_from(data_dir):
        raise UserError(f"cache {cache.root} holds crops of {info.get('data_dir')}, not {data_dir}: {hint}")
    old = info.get("settings") or {}
    if old == settings:
        return "reuse"
    same_detector = old.get("detector") == settings["detector"] and old.get("version") == settings["version"]
    return "recrop" if same_detector else "redo"


def prepare(
    data_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    cfg: Config,
    *,
    force: bool = False,
    include_eval: bool = True,
    show: bool = True,
    hint: str = REBUILD_HINT,
) -> PrepareReport:
    """Bring the cache up to date with the data folder; safe to call again (done work is skipped). `hint`
    ends the message that refuses a cache of other data (the training commands have no --force)."""

    data_dir, cache = Path(data_dir).resolve(), Cache(cache_dir)
    scan = scan_train(data_dir)  # raises on a missing folder or train.csv
    escan = scan_eval(data_dir) if include_eval and (data_dir / "eval").is_dir() else None
    settings = settings_of(cfg)
    mode = cache_mode(cache, data_dir, settings, force, hint)
    cache.root.mkdir(parents=True, exist_ok=True)
    old = {
        path: Cache.read_rows(path) if mode != "redo" else {}
        for path in (cache.manifest_path, cache.eval_manifest_path)
    }
    if mode != "reuse":  # rows made with other settings must not outlive an interrupted run
        Cache.write_rows(cache.manifest_path, [], TRAIN_FIELDS)
        Cache.write_rows(cache.eval_manifest_path, [], EVAL_FIELDS)
    cache.write_info({"data_dir": str(data_dir), "settings": settings})
    report = PrepareReport(cache.root)
    report.problems += scan.problems
    report.counts.update(people=scan.people, hidden_files=scan.hidden)
    detector = create_detector(cfg)
    SplitCropper(
        "train",
        train_jobs(scan),
        old[cache.manifest_path],
        cache.manifest_path,
        TRAIN_FIELDS,
        cache,
        detector,
        cfg.crop,
        report,
    ).run(mode, show)
    if escan is not None:
        report.problems += escan.problems
        SplitCropper(
            "eval",
            eval_jobs(escan),
            old[cache.eval_manifest_path],
            cache.eval_manifest_path,
            EVAL_FIELDS,
            cache,
            detector,
            cfg.crop,
            report,
        ).run(mode, show)
    elif (
        mode == "reuse"
    ):  # eval/ skipped this time: its rows (kept in the manifest) keep their report entries
        keep_eval_entries(cache, report)
    for kind, n in Counter(p.kind for p in report.problems).items():
        report.counts[kind] = n
    atomic_write_json(cache.report_path, report.to_dict(data_dir))
    return report


EVAL_STATE = ("eval_images", "eval_faces", "eval_centred")


def keep_eval_entries(cache: Cache, report: PrepareReport) -> None:
    """The previous report's eval counts, centred list and problems, for a run that left eval/ alone."""
    try:
        old = json.loads(cache.report_path.read_text())
    except (OSError, ValueError):
        return
    report.counts.update({k: v for k, v in (old.get("counts") or {}).items() if k in EVAL_STATE})
    report.centred += [c for c in old.get("centred") or [] if c.startswith("eval/")]
    report.problems += [
        Problem(str(p.get("kind")), str(p.get("path")), str(p.get("detail", "")))
        for p in old.get("problems") or []
        if str(p.get("path", "")).startswith("eval/")
    ]


def cache_settings(cfg: Config, cache: Cache) -> Config:
    """cfg with the crop geometry and detector settings the cache was made with (cfg's own for a new cache):
    a training command must not re-crop a `prepare --margin 0.3` cache with config.toml's margin."""
    settings = (cache.info() or {}).get("settings") or {}
    try:
        crop = section_from_dict(CropConfig, settings["crop"], f"{cache.info_path}: crop")
        # no weights recorded: facenet-pytorch's own nets (settings_of)
        stored = {"weights": "", **settings["detector"]}
        detector = section_from_dict(DetectorConfig, stored, f"{cache.info_path}: detector")
    except (KeyError, TypeError, UserError):  # no cache yet, or one from another version: prepare redoes it
        return cfg
    return replace(cfg, crop=crop, detector=detector)


def ensure_prepared(cfg: Config, data_given: bool = True, show: bool = True):
    """(Cache, samples) ready for training or evaluation. The cache is brought up to date from the data
    folder (fast when done: only new or changed images are cropped, with the cache's own settings). Without
    --data, a prepared cache is refreshed from the folder it was made of (not config.toml's data.data_dir),
    and used as it is when that folder is gone (the data may have been moved away after `prepare`)."""
    cache = Cache(cfg.resolve(cfg.data.cache_dir))
    data_dir = cfg.resolve(cfg.data.data_dir)
    if not data_given and (cache.manifest_path.is_file() or cache.import_names()):
        data_dir = cache.source() or Path("/nonexistent/imported-only")
        if not data_dir.exists():  # moved away after prepare, or a cache of imports only
            return cache, cache.samples()
    hint = (
        f"choose another --cache, or rebuild it with `mask-train prepare --force --data {data_dir} "
        f"--out {cache.root}`"
    )
    prepare(data_dir, cache.root, cache_settings(cfg, cache), include_eval=False, show=show, hint=hint)
    return cache, cache.samples()
