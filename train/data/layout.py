"""Reading the competition folder: what is there, what it means, and what is wrong with it.

    DIR/train/train.csv                         id,gender,race,age,path   (path = the person's folder name)
    DIR/train/images/<id>_<gender>_<race>_<age>/{mask1..mask5,incorrect_mask,normal}.<image suffix>
    DIR/eval/info.csv                           ImageID,ans
    DIR/eval/images/<ImageID>

Scanning never raises on a bad folder or file name: each becomes a `Problem` that `prepare` and `eda` list.
Only a missing folder or CSV (nothing to scan) is a UserError.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from engines.errors import UserError
from engines.fileio import require_dir
from engines.labels import (
    GENDER_NAMES,
    STEM_TO_MASK,
    LabelError,
    Person,
    age_group,
    encode,
    parse_mask_stem,
    parse_person_dir,
)

# Validation and evaluation always score against the competition's own label (>=60), whatever
# threshold training uses (data.age_old_threshold): the metric is defined on these labels.
COMPETITION_AGE_THRESHOLD = 60

_AGE_FIELD = re.compile(r"^[^_]+_[A-Za-z]+_.+_(\d+)$")


@dataclass(frozen=True)
class Problem:
    kind: str  # bad_folder | age_out_of_range | bad_file | incomplete_person | missing_folder |
    # unlisted_folder | csv_mismatch | corrupt | missing_image | outside_folder | bad_box | too_large
    path: str  # relative to the data folder
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "path": self.path, "detail": self.detail}


@dataclass(frozen=True)
class TrainImage:
    path: Path  # absolute source file
    key: str  # '<folder>/<file>', unique, relative to train/images
    folder: str
    person: str
    gender: int
    race: str
    age_years: int
    mask: int

    def age(self, old_threshold: int = COMPETITION_AGE_THRESHOLD) -> int:
        return age_group(self.age_years, old_threshold)

    def cls(self, old_threshold: int = COMPETITION_AGE_THRESHOLD) -> int:
        return encode(self.mask, self.gender, self.age(old_threshold))


@dataclass
class TrainScan:
    images: list[TrainImage] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    people: int = 0
    hidden: int = 0  # '._mask1.jpg' and other dot files (macOS copies): skipped silently


@dataclass(frozen=True)
class EvalImage:
    image_id: str
    path: Path


@dataclass
class EvalScan:
    eval_dir: Path
    info_csv: Path
    rows: list[dict[str, str]]
    fieldnames: list[str]
    images: list[EvalImage]
    problems: list[Problem] = field(default_factory=list)


# --- train ------------------------------------------------------------------------------------------------


def train_dirs(data_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(train/images, train/train.csv) of a competition folder, or one clear error."""
    root = require_dir(data_dir, "data folder")
    images, csv_path = root / "train" / "images", root / "train" / "train.csv"
    if not csv_path.is_file():
        raise UserError(
            f"{csv_path} is missing: expected the competition layout train/train.csv + train/images/"
        )
    if not images.is_dir():
        raise UserError(
            f"{images} is missing: expected the competition layout train/train.csv + train/images/"
        )
    return images, csv_path


def read_csv(path: Path, required: tuple[str, ...]) -> tuple[list[dict[str, str]], list[str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = [dict(r) for r in reader]
            names = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read it as CSV ({exc})") from None
    missing = [c for c in required if c not in names]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(names) or 'none'})")
    return rows, names


def folder_problem(folder: str, exc: LabelError) -> Problem:
    """Tell an age out of range (a parsable name) from a name that does not parse at all."""
    m = _AGE_FIELD.match(folder)
    if m and "out of range" in str(exc):
        return Problem("age_out_of_range", f"train/images/{folder}", f"age {m.group(1)} is outside 0..120")
    return Problem("bad_folder", f"train/images/{folder}", str(exc))


def _csv_mismatch(row: dict[str, str], folder: str, gender: int, age: int) -> Problem | None:
    """train.csv and the folder name disagree: the folder name wins (it is what the images are filed
    under)."""
    csv_gender = (row.get("gender") or "").strip().lower()
    csv_age = (row.get("age") or "").strip()
    if (csv_gender and csv_gender != GENDER_NAMES[gender]) or (csv_age.isdigit() and int(csv_age) != age):
        return Problem(
            "csv_mismatch",
            f"train/images/{folder}",
            f"train.csv says {csv_gender}/{csv_age}; the folder name is used",
        )
    return None


def _scan_person(images_dir: Path, folder: str, scan: TrainScan) -> Person | None:
    try:
        person = parse_person_dir(folder)
    except LabelError as exc:
        scan.problems.append(folder_problem(folder, exc))
        return None
    scan.people += 1
    seen: set[str] = set()
    for entry in sorted(os.scandir(images_dir / folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            scan.hidden += 1
            continue
        if not entry.is_file():
            continue
        try:
            mask = parse_mask_stem(entry.name)
        except LabelError as exc:
            scan.problems.append(Problem("bad_file", f"train/images/{folder}/{entry.name}", str(exc)))
            continue
        seen.add(Path(entry.name).stem)
        scan.images.append(
            TrainImage(
                Path(entry.path),
                f"{folder}/{entry.name}",
                folder,
                person.id,
                person.gender,
                person.race,
                person.age_years,
                mask,
            )
        )
    missing = sorted(set(STEM_TO_MASK) - seen)
    if missing:
        scan.problems.append(
            Problem("incomplete_person", f"train/images/{folder}", f"no image for {', '.join(missing)}")
        )
    return person


def scan_train(data_dir: str | os.PathLike[str]) -> TrainScan:
    """Every labelled training image listed by train.csv, plus the problems found on the way."""
    images_dir, csv_path = train_dirs(data_dir)
    rows, _ = read_csv(csv_path, ("path",))
    on_disk = {e.name for e in os.scandir(images_dir) if e.is_dir() and not e.name.startswith(".")}
    scan = TrainScan()
    listed: set[str] = set()
    for row in rows:
        folder = (row.get("path") or "").strip()
        if not folder or folder in listed:
            continue
        listed.add(folder)
        if folder not in on_disk:
            scan.problems.append(
                Problem("missing_folder", f"train/images/{folder}", "listed in train.csv, not on disk")
            )
            continue
        person = _scan_person(images_dir, folder, scan)
        if person is not None and (p := _csv_mismatch(row, folder, person.gender, person.age_years)):
            scan.problems.append(p)
    for folder in sorted(on_disk - listed):
        scan.problems.append(
            Problem("unlisted_folder", f"train/images/{folder}", "on disk, not in train.csv: ignored")
        )
    return scan


# --- eval -------------------------------------------------------------------------------------------------


def eval_dir_of(path: str | os.PathLike[str]) -> Path:
    """Accept the eval folder itself or the competition folder that holds eval/."""
    p = require_dir(path, "eval folder")
    if not (p / "info.csv").is_file() and (p / "eval").is_dir():
        p = p / "eval"
    if not (p / "info.csv").is_file():
        raise UserError(
            f"{p / 'info.csv'} is missing: expected the competition layout eval/info.csv + eval/images/"
        )
    return p


def scan_eval(path: str | os.PathLike[str]) -> EvalScan:
    eval_dir = eval_dir_of(path)
    info = eval_dir / "info.csv"
    rows, names = read_csv(info, ("ImageID",))
    scan = EvalScan(eval_dir, info, rows, names, [])
    for row in rows:
        image_id = (row.get("ImageID") or "").strip()
        src = eval_dir / "images" / image_id
        scan.images.append(EvalImage(image_id, src))
        if not image_id or not src.is_file():
            scan.problems.append(
                Problem("missing_image", f"eval/images/{image_id}", "listed in info.csv, not on disk")
            )
    return scan
