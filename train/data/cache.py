"""The face-crop cache that `prepare` writes and every training command reads.

    CACHE/cache.json          what made it: data folder, crop geometry, detector settings
    CACHE/manifest.csv        one row per training image: source key, crop file, labels, box, detector score
    CACHE/eval_manifest.csv   one row per eval image (ImageID): crop file, box, score
    CACHE/report.json         counts and every problem found (corrupt images, bad names, no face)
    CACHE/crops/train/<folder>/<file>.jpg, CACHE/crops/eval/<ImageID>.jpg
    CACHE/imports/<name>/manifest.csv, report.json, holdout.csv   what `mask-train import --name` added
    CACHE/crops/import/<name>/...

The crops are face images: they exist because the user asked for them by running `prepare`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.config import CropConfig
from engines.errors import UserError
from engines.fileio import atomic_write_json, atomic_write_text
from engines.labels import age_group
from train.config import Config
from train.data.layout import COMPETITION_AGE_THRESHOLD
from train.data.targets import encode_target

if TYPE_CHECKING:
    import numpy as np

CACHE_VERSION = 1
COMMON_FIELDS = ["key", "crop", "found", "score", "x1", "y1", "x2", "y2", "size", "mtime_ns"]
TRAIN_FIELDS = COMMON_FIELDS + ["folder", "person", "gender", "race", "age", "mask"]
IMPORT_FIELDS = TRAIN_FIELDS + ["source", "how", "placement", "mask_source"]  # the last two: synth's
PREPARED = "prepared"  # the source name of the rows `prepare` wrote
EVAL_FIELDS = COMMON_FIELDS


def settings_of(cfg: Config) -> dict[str, Any]:
    """What the crops depend on: change any of it and every crop is made again. facenet-pytorch's own nets
    (detector.weights "") are recorded as no weights at all, as caches made before that key recorded them."""
    detector = asdict(cfg.detector)
    if not detector["weights"]:
        del detector["weights"]
    return json.loads(json.dumps({"version": CACHE_VERSION, "crop": asdict(cfg.crop), "detector": detector}))


def crop_name(filename: str) -> str:
    """Crop file name for a source file: unique per source (mask1.png and mask1.jpg do not collide)."""
    return filename if filename.lower().endswith(".jpg") else f"{filename}.jpg"


def read_crop(path: str | os.PathLike[str]) -> np.ndarray:
    """A cached crop (BGR uint8), for training and evaluation alike; an unreadable one is a UserError."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"cached crop {path} cannot be read: run `mask-train prepare --force`")
    return img


@dataclass(frozen=True)
class Sample:
    """One prepared training image, as the Dataset and the split see it. gender / age_years are -1 where the
    source does not say (imported photos); `person` is the split's group (a near-duplicate group there)."""

    key: str
    crop: Path
    folder: str
    person: str
    gender: int
    age_years: int
    mask: int
    found: bool
    source: str = PREPARED

    def cls(self, old_threshold: int = COMPETITION_AGE_THRESHOLD) -> int:
        """The class 0..17, or a partial-label code (train.data.targets) when gender or age is unknown."""
        age = age_group(self.age_years, old_threshold) if self.age_years >= 0 else -1
        return encode_target(self.mask, self.gender, age)


class Cache:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.info_path = self.root / "cache.json"
        self.manifest_path = self.root / "manifest.csv"
        self.eval_manifest_path = self.root / "eval_manifest.csv"
        self.report_path = self.root / "report.json"
        self.crops = self.root / "crops"
        self.imports = self.root / "imports"

    # --- cache.json ---------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any] | None:
        if not self.info_path.is_file():
            return None
        try:
            return json.loads(self.info_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def source(self) -> Path | None:
        """The data folder `prepare` made this cache of (absolute, as recorded); None without cache.json."""
        recorded = (self.info() or {}).get("data_dir")
        return Path(recorded) if recorded else None

    def made_from(self, folder: str | os.PathLike[str], part: str = "") -> bool:
        """Whether this cache holds crops of `folder` (with part="eval": of the eval folder `folder`)."""
        src = self.source()
        return src is not None and src / part == Path(folder).resolve()

    def write_info(self, info: dict[str, Any]) -> None:
        atomic_write_json(self.info_path, info)

    def crop_config(self) -> CropConfig:
        """The crop geometry the cached crops were made with (it goes into every model trained on them)."""
        info = self.info()
        if not info or "settings" not in info:
            raise UserError(f"cache {self.root} has no cache.json: run `mask-train prepare` first")
        return CropConfig(**info["settings"]["crop"])

    # --- manifests ----------------------------------------------------------------------------------------
    @staticmethod
    def read_rows(path: Path) -> dict[str, dict[str, str]]:
        if not path.is_file():
            return {}
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                return {r["key"]: r for r in csv.DictReader(fh) if r.get("key")}
        except (OSError, csv.Error, KeyError):
            return {}  # a damaged manifest: everything is redone, nothing is lost

    @staticmethod
    def write_rows(path: Path, rows: list[dict[str, Any]], fields: list[str]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, buf.getvalue())

    def import_names(self) -> list[str]:
        return sorted(p.parent.name for p in self.imports.glob("*/manifest.csv"))

    def samples(self) -> list[Sample]:
        """The prepared and imported training images; one clear error when there are none."""
        rows = list(self.read_rows(self.manifest_path).values())
        for name in self.import_names():
            rows += self.read_rows(self.imports / name / "manifest.csv").values()
        if not rows:
            raise UserError(
                f"cache {self.root} holds no prepared training images: run `mask-train prepare --data DIR "
                f"--out {self.root}` (or `mask-train import`)"
            )
        out = [
            Sample(
                r["key"],
                self.root / r["crop"],
                r["folder"],
                r["person"],
                _int_or_missing(r["gender"]),
                _int_or_missing(r["age"]),
                int(r["mask"]),
                r["found"] == "1",
                r.get("source") or PREPARED,
            )
            for r in rows
        ]
        return sorted(out, key=lambda s: s.key)


def _int_or_missing(text: str | None) -> int:
    return int(text) if text not in (None, "", "-1") else -1
