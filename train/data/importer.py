"""The work of `mask-train import`: public face-mask data sets into the crop cache that `prepare` fills.

Layouts (found by what the folder holds):
    folders   DIR/with_mask/, DIR/without_mask/ [, DIR/incorrect_mask/ or DIR/mask_weared_incorrect/]
    csv       DIR/labels.csv (or --labels FILE): file,mask[,gender,age][,group]
              (mask: wear|incorrect|not_wear or the folder names above; gender male|female; age whole
              years; empty = unknown)
    voc       DIR/annotations/*.xml (PASCAL VOC) + DIR/images/: every with_mask / without_mask /
              mask_weared_incorrect box at least [scenes] min_face_height tall is a sample, cut where the
              monitor's detector finds that face (train.data.scenes: `voc_detected`), else around the box
              mapped as the detector's boxes sit relative to the annotations (`voc_mapped`)
    collect   DIR/collected.jsonl + DIR/labels.csv: a `mask-monitor --collect` folder labelled by `mask-train
              label` (age also as a group name <30 | 30-59 | >=60; rows with an empty mask and the files of
              DIR/discarded.csv skipped, counted); its JPEGs are already crop_face output, used as they are

A folder/CSV image shows one face, from a tight crop to head and shoulders. Its face box is MTCNN's largest
face; where MTCNN finds none (tight crops: too little context), the image is padded into a frame, as a
camera would see that face, and searched again; failing that, the whole image is the face box. The crop is
engines.faces.crop_face with the cache's geometry, exactly as `prepare` and the monitor cut. Near-duplicates
(train.data.dhash, mirror images included) form groups that act as the split's "person". Corrupt images and
malformed XML are counted and listed in the report, never a crash. A `--holdout` share of the groups is
kept out of the manifest entirely and listed in holdout.csv, for `mask-train evaluate-frames`; kept.csv
lists the others (both are labels files `mask-train synth` reads: its bare faces become identities).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from engines.collected import COLLECTED_JSONL, CollectedRecord
from engines.config import CropConfig
from engines.errors import UserError
from engines.faces import Box, create_detector, crop_face, crop_region
from engines.fileio import atomic_write_json
from engines.labels import AGE_NAMES, GENDER_NAMES, IMAGE_SUFFIXES, MASK_NAMES
from train.config import Config
from train.data.cache import IMPORT_FIELDS, Cache, settings_of
from train.data.dhash import hashes, near_duplicate_groups
from train.data.layout import Problem
from train.data.prepare import cache_settings, image_problem, pick_face, read_image, write_crop
from train.data.scenes import BoxMapping, detect_near, fit_mapping, same_photo_groups
from train.label.store import DISCARDED_CSV, read_discarded, read_records
from train.progress import task

# class names people download -> mask state (0 wear, 1 incorrect, 2 not wear)
MASK_WORDS = {
    "wear": 0,
    "with_mask": 0,
    "mask": 0,
    "incorrect": 1,
    "incorrect_mask": 1,
    "mask_weared_incorrect": 1,
    "not_wear": 2,
    "without_mask": 2,
    "no_mask": 2,
}
CLASS_FOLDERS = ("with_mask", "without_mask", "incorrect_mask", "mask_weared_incorrect")
PAD_FACTOR = 2.5  # a padded tight crop fills 1/2.5 of the frame's height, as a face at an entrance does
HOW = ("mtcnn", "padded", "whole_image", "voc_detected", "voc_mapped", "collected_crop")
FOUND_HOW = ("mtcnn", "padded", "voc_detected", "voc_mapped", "collected_crop")
# an age group name (the label page's vocabulary) -> whole years inside that group for every age_old_threshold
# the config allows near 60 (57-60), so age_group() gives the group back
AGE_GROUP_YEARS = {name: years for name, years in zip(AGE_NAMES, (20, 45, 75))}


@dataclass(frozen=True)
class Item:
    """One sample to crop: a file, a mask state, gender / age (-1 unknown), an optional face box (VOC)."""

    src: Path
    key: str  # unique within the import: relative path, '#<n>' for the n-th box of an annotation
    mask: int
    gender: int = -1
    age: int = -1
    box: Box | None = None
    group: str = ""  # a group given by the data (a CSV column); joined with the near-duplicate groups
    as_is: bool = (
        False  # already a face crop (a collect folder): resized to the cache's size, never re-detected
    )
    placement: str = ""  # how a synthetic mask sits and was made (synth's labels.csv), for --exclude
    mask_source: str = ""


@dataclass
class ImportReport:
    name: str
    layout: str
    counts: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # a VOC import: the detector and the box mapping

    def to_dict(self, data_dir: Path) -> dict[str, Any]:
        return {
            "name": self.name,
            "layout": self.layout,
            "data_dir": str(data_dir),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "counts": dict(self.counts),
            "problems": [p.to_dict() for p in self.problems],
            **self.extra,
        }


# --- layouts -------------------------------------------------------------------------------------------


def detect_layout(data_dir: Path, labels: Path | None) -> str:
    if (data_dir / COLLECTED_JSONL).is_file() and (labels is not None or (data_dir / "labels.csv").is_file()):
        return "collect"
    if labels is not None or (data_dir / "labels.csv").is_file():
        return "csv"
    if (data_dir / "annotations").is_dir():
        return "voc"
    if any((data_dir / name).is_dir() for name in CLASS_FOLDERS):
        return "folders"
    raise UserError(
        f"{data_dir}: no layout found to import: expected class folders ({', '.join(CLASS_FOLDERS)}), "
        f"a labels.csv, or annotations/*.xml + images/ (PASCAL VOC)"
    )


def contained(folder: Path, name: str) -> Path | None:
    """folder / name where that stays inside `folder` (a resolved path): None for an absolute name, a '..'
    that climbs out, or a link that leads elsewhere. A data set's names are never a way out of it."""
    if not name or "\x00" in name or Path(name).is_absolute() or re.match(r"^[A-Za-z]:", name):
        return None
    path = folder / name
    try:
        return path if path.resolve().is_relative_to(folder.resolve()) else None
    except (OSError, RuntimeError, ValueError):  # a link loop, a name the OS refuses
        return None


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def folder_items(data_dir: Path, report: ImportReport) -> list[Item]:
    items = []
    for name in CLASS_FOLDERS:
        folder = data_dir / name
        if folder.is_dir():
            files = sorted(p for p in folder.rglob("*") if _is_image(p))
            items += [Item(p, p.relative_to(data_dir).as_posix(), MASK_WORDS[name]) for p in files]
    return items


def _optional_int(text: str, where: str, what: str, parse) -> int:
    if not text.strip():
        return -1
    try:
        return parse(text.strip())
    except (ValueError, UserError):
        raise UserError(f"{where}: {what} {text!r} is not valid") from None


def _gender(text: str) -> int:
    return GENDER_NAMES.index(text.lower())


def _age(text: str) -> int:
    if text in AGE_GROUP_YEARS:
        return AGE_GROUP_YEARS[text]
    if not re.fullmatch(r"\d{1,3}", text) or int(text) > 120:
        raise ValueError(text)
    return int(text)


def parse_exclude(specs: list[str]) -> list[tuple[str, str]]:
    """--exclude COLUMN=VALUE flags -> [(column, value)]; a malformed one is one UserError."""
    out = []
    for spec in specs:
        column, sep, value = spec.partition("=")
        if not sep or not column.strip() or not value.strip():
            raise UserError(f"--exclude {spec!r}: expected COLUMN=VALUE, e.g. placement=chin")
        out.append((column.strip().lower(), value.strip()))
    return out


def csv_items(
    data_dir: Path,
    labels: Path,
    report: ImportReport,
    collected: bool = False,
    exclude: list[tuple[str, str]] = (),
) -> list[Item]:
    """Rows of file,mask[,gender,age][,group][,placement,mask_source]; a bad label stops with one line
    naming file and line. Rows whose column is an `exclude` value are left out and counted (a column the
    file lacks is an error). A collect folder's (`collected`): rows without a mask (not labelled yet) and
    discarded files are skipped and counted, and its crops are used as they are."""
    discarded = read_discarded(data_dir / DISCARDED_CSV) if collected else set()
    records = read_records(data_dir / COLLECTED_JSONL) if collected else {}
    try:
        with labels.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"labels file {labels}: cannot read it ({exc})") from None
    if not rows or not {"file", "mask"} <= set(rows[0]):
        raise UserError(f"labels file {labels}: needs the columns file,mask[,gender,age][,group]")
    for column, _ in exclude:
        if column not in rows[0]:
            raise UserError(
                f"--exclude {column}=...: labels file {labels} has no column {column!r} "
                f"(columns: {', '.join(c for c in rows[0] if c)})"
            )
    items = []
    if discarded:
        report.counts["discarded"] = len(discarded)
    for line, r in enumerate(rows, 2):
        where = f"{labels} line {line}"
        if any((r.get(column) or "").strip() == value for column, value in exclude):
            report.counts["excluded"] += 1
            continue
        if collected and (r.get("file") or "").strip() in discarded:
            continue  # counted below, with the discarded crops that have no row
        if collected and not (r.get("mask") or "").strip():
            report.counts["unlabelled"] += 1
            continue
        mask = MASK_WORDS.get((r.get("mask") or "").strip().lower())
        if mask is None:
            raise UserError(
                f"{where}: mask {r.get('mask')!r} (file {r.get('file')}) "
                f"is not one of {', '.join(MASK_WORDS)}"
            )
        path = contained(data_dir, (r.get("file") or "").strip())
        if path is None:
            report.problems.append(
                Problem("outside_folder", r.get("file") or "", f"{where}: names a file outside {data_dir}")
            )
            continue
        if not path.is_file():
            report.problems.append(Problem("missing_image", r.get("file") or "", f"{where}: no such file"))
            continue
        gender = _optional_int(r.get("gender") or "", where, "gender", _gender)
        age = _optional_int(r.get("age") or "", where, "age", _age)
        group = (r.get("group") or "").strip() or (_person(r["file"].strip(), records) if collected else "")
        items.append(
            Item(
                path,
                r["file"].strip(),
                mask,
                gender,
                age,
                group=group,
                as_is=collected,
                placement=(r.get("placement") or "").strip(),
                mask_source=(r.get("mask_source") or "").strip(),
            )
        )
    return items


def _person(file: str, records: dict[str, CollectedRecord]) -> str:
    """A collected crop's person: run + source + track (one person's crops never straddle a split);
    the file itself without a record. Crops of one geometry chain into giant dHash groups, so not those."""
    rec = records.get(file)
    if rec is None or rec.track is None:
        return file
    return f"{file.rsplit('_', 1)[0]}/{rec.source or ''}/{rec.track}"


def voc_items(data_dir: Path, report: ImportReport) -> list[Item]:
    """Every object box of every annotation; a malformed XML file or a missing image is a problem."""
    items = []
    for xml in sorted((data_dir / "annotations").glob("*.xml")):
        rel = xml.relative_to(data_dir).as_posix()
        try:
            root = ET.parse(xml).getroot()
            filename = (root.findtext("filename") or f"{xml.stem}.png").strip()
            objects = list(root.iter("object"))
        except (ET.ParseError, ValueError, TypeError) as exc:
            report.problems.append(Problem("malformed_xml", rel, str(exc)[:200]))
            continue
        image = contained(data_dir / "images", filename)
        if image is None:
            report.problems.append(
                Problem(
                    "outside_folder", rel, f"filename {filename[:100]!r} is outside {data_dir / 'images'}"
                )
            )
            continue
        if not image.is_file():
            report.problems.append(Problem("missing_image", rel, f"images/{filename} does not exist"))
            continue
        for n, obj in enumerate(objects):
            try:
                name, box = _voc_object(obj)
            except (ValueError, TypeError) as exc:  # one bad box: the file's other boxes still count
                report.problems.append(Problem("bad_box", f"{rel}#{n}", str(exc)[:200]))
                continue
            if name not in MASK_WORDS:
                report.problems.append(Problem("unknown_class", f"{rel}#{n}", f"object name {name!r}"))
                continue
            items.append(Item(image, f"{rel}#{n}", MASK_WORDS[name], box=box))
    return items


def _voc_object(obj: ET.Element) -> tuple[str, Box]:
    name = (obj.findtext("name") or "").strip().lower()
    bb = obj.find("bndbox")
    if bb is None:
        raise ValueError("an object without <bndbox>")
    x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError(f"box {x1, y1, x2, y2} is not finite")
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"empty box {x1, y1, x2, y2}")
    return name, (x1, y1, x2, y2)


def box_problem(box: Box, shape: tuple[int, ...], slack: float = 2.0) -> str | None:
    """Why a given face box cannot be cut from an image of `shape` (outside it, by more than VOC's 1-based
    rounding), or None."""
    h, w = shape[:2]
    x1, y1, x2, y2 = box
    if x1 < -slack or y1 < -slack or x2 > w + slack or y2 > h + slack:
        return f"box {tuple(round(v, 1) for v in box)} is outside the {w}x{h} image"
    return None


# --- faces -----------------------------------------------------------------------------------------------


def pad_into_frame(img: np.ndarray) -> tuple[np.ndarray, int, int]:
    """A tight crop padded with grey into a frame, as a camera would show that face; (frame, x, y offset)."""
    import cv2

    h, w = img.shape[:2]
    py, px = int(h * (PAD_FACTOR - 1) / 2), int(w * (PAD_FACTOR - 1) / 2)
    return cv2.copyMakeBorder(img, py, py, px, px, cv2.BORDER_CONSTANT, value=(118, 118, 118)), px, py


def find_box(img: np.ndarray, detector) -> tuple[Box, float, str]:
    """(face box, score, how): MTCNN; else MTCNN on the image padded into a frame; else the whole image."""
    face = pick_face(detector.detect(img))
    if face is not None:
        return face.box, face.score, "mtcnn"
    h, w = img.shape[:2]
    framed, px, py = pad_into_frame(img)
    face = pick_face(detector.detect(framed))
    if face is not None:
        x1, y1, x2, y2 = face.box
        return (x1 - px, y1 - py, x2 - px, y2 - py), face.score, "padded"
    return (0.0, 0.0, float(w), float(h)), 0.0, "whole_image"


SMALL_FACE_PX, SMALL_FACE_SCORE = 12, 0.9
SMALL_FACE_SIDE = 640  # a thumbnail's scene is looked at again enlarged to this long side


def find_small_face(img: np.ndarray, detector) -> Box | None:
    """The largest confident face down to 12 px: a scene's face, where find_box took the whole image (the
    photo as a whole is no face box). A thumbnail (100x100 scenes are common in downloaded sets) holds
    faces of a few pixels: where none is found, it is looked at again enlarged to a 640-px side. `import`
    does not use it (its crops stay as the demo data was cut); evaluate-frames and fit-detector do, to
    place such a face at a face height of its own."""
    import cv2

    def largest(image: np.ndarray):
        faces = detector.detect(image, min_face_size=SMALL_FACE_PX)
        return pick_face([f for f in faces if f.score >= SMALL_FACE_SCORE])

    face = largest(img)
    if face is not None:
        return face.box
    s = SMALL_FACE_SIDE / max(img.shape[:2])
    if s <= 1.5:
        return None
    face = largest(cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC))
    return None if face is None else tuple(v / s for v in face.box)


def crop_item(item: Item, img: np.ndarray, detector, geom: CropConfig) -> tuple[np.ndarray, Box, float, str]:
    if item.as_is:  # the monitor's crop_face output: the whole image is the crop region
        h, w = img.shape[:2]
        return (
            crop_region(img, (0.0, 0.0, float(w), float(h)), geom),
            (0.0, 0.0, float(w), float(h)),
            1.0,
            ("collected_crop"),
        )
    box, score, how = find_box(img, detector)
    return crop_face(img, box, geom), box, score, how


# --- the import ------------------------------------------------------------------------------------------


def _safe(key: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", key)
    return stem if stem.lower().endswith(".jpg") else f"{stem}.jpg"


def in_holdout(group_key: str, fraction: float, seed: int) -> bool:
    """Whether a group is held out: a stable function of its key, so a rerun holds out the same groups."""
    if fraction <= 0:
        return False
    digest = hashlib.sha1(f"{seed}/{group_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def group_items(items: list[Item], hashed: dict[Path, tuple[int, int]]) -> list[str]:
    """A group key per item: its near-duplicate group (over the distinct source files), joined with any
    group the data names, as the smallest key of the group's members (stable across reruns). Where the data
    names a group for every item (a flat `synth` set: the source photo), that is the grouping: face crops
    made with one geometry look alike to a 64-bit dHash and would chain into a few giant groups."""
    if items and all(it.group for it in items):
        first_of: dict[str, str] = {}
        for it in sorted(items, key=lambda i: i.key):
            first_of.setdefault(it.group, it.key)
        return [first_of[it.group] if it.src in hashed else "" for it in items]
    files = sorted(hashed)
    hs = [hashed[f] for f in files]
    by_file = dict(zip(files, near_duplicate_groups([a for a, _ in hs], [b for _, b in hs])))
    n = max(by_file.values(), default=-1) + 1
    given: dict[str, int] = {}
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i] = parent[parent[i]]
        return i

    for it in items:
        if it.group and it.src in by_file:
            g = by_file[it.src]
            other = given.setdefault(it.group, g)
            a, b = find(g), find(other)
            parent[max(a, b)] = min(a, b)
    first: dict[int, str] = {}
    for it in sorted(items, key=lambda i: i.key):
        if it.src in by_file:
            first.setdefault(find(by_file[it.src]), it.key)
    return [first[find(by_file[it.src])] if it.src in by_file else "" for it in items]


def _row(name: str, item: Item, crop_rel: str, box: Box, score: float, how: str, group: str) -> dict:
    st = item.src.stat()
    x1, y1, x2, y2 = (round(float(v), 1) for v in box)
    return {
        "key": f"{name}/{item.key}",
        "crop": crop_rel,
        "found": int(how in FOUND_HOW),
        "score": round(float(score), 4),
        "x1": x1,
        "y1": y1,
        "x2": x2,
        "y2": y2,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "folder": f"import/{name}",
        "person": f"{name}:{hashlib.sha1(group.encode()).hexdigest()[:10]}",
        "gender": item.gender,
        "race": "unknown",
        "age": item.age,
        "mask": item.mask,
        "source": name,
        "how": how,
        "placement": item.placement,
        "mask_source": item.mask_source,
    }


def check_cache(cache: Cache, cfg: Config, force: bool) -> Config:
    """cfg with the cache's crop and detector settings; a new cache records cfg's."""
    info = cache.info()
    if info is None or force and not cache.manifest_path.is_file():
        cache.root.mkdir(parents=True, exist_ok=True)
        cache.write_info({"data_dir": (info or {}).get("data_dir"), "settings": settings_of(cfg)})
        return cfg
    return cache_settings(cfg, cache)


def hash_files(
    items: list[Item], report: ImportReport, show: bool
) -> tuple[dict[Path, tuple[int, int]], dict[Path, tuple[int, ...]]]:
    """dHash and shape of every readable source file; unreadable ones become 'corrupt' problems, pictures
    of too many pixels 'too_large' ones (not decoded)."""
    out: dict[Path, tuple[int, int]] = {}
    bad: set[Path] = set()
    files = sorted({it.src for it in items})
    with task("hashing", len(files), show) as bar:
        too_large: dict[Path, str] = {}
        shapes: dict[Path, tuple[int, ...]] = {}
        for f in files:
            why = image_problem(f)
            img = read_image(f) if why is None else None
            if why is not None:
                too_large[f] = why
            elif img is None:
                bad.add(f)
            else:
                out[f] = hashes(img)
                shapes[f] = img.shape
            bar.advance()
    for it in items:
        if it.src in too_large:
            report.problems.append(Problem("too_large", it.key, too_large[it.src]))
        elif it.src in bad:
            report.problems.append(Problem("corrupt", it.key, "cannot be decoded"))
    return out, shapes


def boxes_inside(items: list[Item], shapes: dict[Path, tuple[int, ...]], report: ImportReport) -> list[Item]:
    """The items whose given face box lies in their image; the others become 'bad_box' problems."""
    kept = []
    for it in items:
        why = box_problem(it.box, shapes[it.src]) if it.box is not None and it.src in shapes else None
        if why is None:
            kept.append(it)
        else:
            report.problems.append(Problem("bad_box", it.key, why))
    return kept


def import_dataset(
    data_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    cfg: Config,
    *,
    name: str,
    labels: str | os.PathLike[str] | None = None,
    holdout: float = 0.0,
    seed: int = 0,
    exclude: list[tuple[str, str]] = (),
    force: bool = False,
    show: bool = True,
) -> ImportReport:
    """Crop every sample of `data_dir` into CACHE/imports/NAME (a rerun reuses unchanged crops)."""
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        raise UserError(f"data folder {data_dir} does not exist")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name) or name == "prepared":
        raise UserError(f"--name {name!r}: use letters, digits, '-' or '_' (not 'prepared')")
    labels_path = Path(labels) if labels else None
    layout = detect_layout(data_dir, labels_path)
    report = ImportReport(name, layout)
    if exclude and layout not in ("csv", "collect"):
        raise UserError(f"--exclude needs a labels CSV ({data_dir} is a {layout} layout)")
    if layout in ("csv", "collect"):
        csv_path = labels_path or data_dir / "labels.csv"
        items = csv_items(data_dir, csv_path, report, layout == "collect", exclude)
    elif layout == "voc":
        items = voc_items(data_dir, report)
    else:
        items = folder_items(data_dir, report)
    cache = Cache(cache_dir)
    live = cfg  # the monitor's detector ([detector] and flags), not the cache's: a VOC import cuts as it does
    cfg = check_cache(cache, cfg, force)
    hashed, shapes = hash_files(items, report, show)
    items = boxes_inside(items, shapes, report)
    if layout == "voc":  # crops of one photo at other windows: the same group (a dHash misses them)
        linked = same_photo_groups(sorted(hashed), read_image)
        items = [dataclasses.replace(it, group=linked.get(it.src, "")) for it in items]
        report.counts["scenes_linked_as_one_photo"] = len(linked)
    groups = group_items(items, hashed)
    keep, held = [], []
    for it, g in zip(items, groups):
        if it.src in hashed:
            (held if in_holdout(g, holdout, seed) else keep).append((it, g))
    if layout == "voc":
        rows = crop_scenes(cache, name, keep, cfg, live, report, force, show)
    else:
        rows = crop_all(cache, name, keep, cfg, report, force, show)
    folder = cache.imports / name
    Cache.write_rows(folder / "manifest.csv", rows, IMPORT_FIELDS)
    write_holdout(folder / "holdout.csv", data_dir, held)
    write_holdout(folder / "kept.csv", data_dir, keep)
    report.counts.update(
        samples=len(rows),
        groups=len({g for _, g in keep}),
        held_out=len(held),
        held_out_groups=len({g for _, g in held}),
        **{kind: n for kind, n in Counter(p.kind for p in report.problems).items()},
    )
    atomic_write_json(folder / "report.json", report.to_dict(data_dir))
    return report


def write_holdout(path: Path, data_dir: Path, held: list[tuple[Item, str]]) -> None:
    """The held-out samples (never cropped into the cache): file,mask,gender,age,group,box for evaluation."""
    rows = [
        {
            "file": str(it.src.relative_to(data_dir)) if it.src.is_relative_to(data_dir) else str(it.src),
            "mask": MASK_NAMES[it.mask],
            "gender": GENDER_NAMES[it.gender] if it.gender >= 0 else "",
            "age": it.age if it.age >= 0 else "",
            "group": g,
            "box": " ".join(f"{v:.1f}" for v in it.box) if it.box else "",
        }
        for it, g in held
    ]
    Cache.write_rows(path, rows, ["file", "mask", "gender", "age", "group", "box"])


def crop_all(
    cache: Cache,
    name: str,
    todo: list[tuple[Item, str]],
    cfg: Config,
    report: ImportReport,
    force: bool,
    show: bool,
) -> list[dict]:
    """Crop each sample (reusing an unchanged one's crop); counts how each face box was found."""
    old = {} if force else Cache.read_rows(cache.imports / name / "manifest.csv")
    detector = create_detector(cfg)
    rows = []
    with task(f"import {name}", len(todo), show) as bar:
        for it, g in todo:
            key, crop_rel = f"{name}/{it.key}", f"crops/import/{name}/{_safe(it.key)}"
            prev = old.get(key)
            st = it.src.stat()
            if (
                prev
                and prev.get("size") == str(st.st_size)
                and prev.get("mtime_ns") == str(st.st_mtime_ns)
                and (cache.root / crop_rel).is_file()
            ):
                box = tuple(float(prev[k]) for k in ("x1", "y1", "x2", "y2"))
                rows.append(_row(name, it, crop_rel, box, float(prev["score"]), prev["how"], g))
                report.counts["reused"] += 1
            else:
                crop, box, score, how = crop_item(it, read_image(it.src), detector, cfg.crop)
                write_crop(cache.root / crop_rel, crop)
                rows.append(_row(name, it, crop_rel, box, score, how, g))
            report.counts[rows[-1]["how"]] += 1
            bar.advance(1, info=" ".join(f"{h} {report.counts[h]}" for h in HOW if report.counts[h]))
    return rows


def _redetect_settings(live: Config) -> dict[str, Any]:
    """What a VOC import's detections depend on: the detector's settings (its weights file resolved, with the
    file's size and time) and [scenes]' search; a rerun with other settings detects again."""
    det = create_detector(live).cfg
    weights = Path(det.weights) if det.weights else None
    st = weights.stat() if weights is not None and weights.is_file() else None
    return json.loads(
        json.dumps(
            {
                "detector": dataclasses.asdict(det),
                "weights_file": [st.st_size, st.st_mtime_ns] if st else None,
                "scenes": {k: v for k, v in dataclasses.asdict(live.scenes).items() if k != "frame_width"},
            }
        )
    )


def crop_scenes(
    cache: Cache,
    name: str,
    todo: list[tuple[Item, str]],
    cfg: Config,
    live: Config,
    report: ImportReport,
    force: bool,
    show: bool,
) -> list[dict]:
    """A VOC import: every face at least [scenes] min_face_height tall (the others are counted, `too_small`)
    is looked for with the monitor's detector (`live`'s [detector]) around its annotated box; found, it is cut
    around the detector's box (`voc_detected`), else around the annotated box mapped as the found ones' boxes
    sit relative to theirs (`voc_mapped`; the mapping, a median over the faces found, is in report.json).
    The crop geometry is the cache's. A rerun with the same detector reuses the detections and crops."""
    folder = cache.imports / name
    old = {} if force else Cache.read_rows(folder / "manifest.csv")
    try:
        old_settings = json.loads((folder / "report.json").read_text(encoding="utf-8")).get("redetect")
    except (OSError, ValueError):
        old_settings = None
    settings = _redetect_settings(live)
    same = old_settings == settings
    detector = create_detector(live)
    min_h = live.scenes.min_face_height
    found: list[tuple[Item, str, Box | None, float]] = []
    image: tuple[Path | None, np.ndarray | None] = (None, None)

    def read(src: Path) -> np.ndarray:
        nonlocal image
        if image[0] != src:
            image = (src, read_image(src))
        return image[1]

    with task(f"detecting {name}", len(todo), show) as bar:
        for it, g in todo:
            bar.advance()
            if it.box[3] - it.box[1] < min_h:
                report.counts["too_small"] += 1
                continue
            prev = old.get(f"{name}/{it.key}")
            st = it.src.stat()
            if (
                same
                and prev
                and prev.get("how") in ("voc_detected", "voc_mapped")
                and prev.get("size") == str(st.st_size)
                and prev.get("mtime_ns") == str(st.st_mtime_ns)
            ):
                if prev["how"] == "voc_detected":
                    box = tuple(float(prev[k]) for k in ("x1", "y1", "x2", "y2"))
                    found.append((it, g, box, float(prev["score"])))
                else:
                    found.append((it, g, None, 0.0))
                continue
            face = detect_near(detector, read(it.src), it.box, live.scenes)
            if face is None:
                found.append((it, g, None, 0.0))
            else:  # as the manifest keeps it, so that a rerun fits the same mapping from the rows
                box = tuple(round(float(v), 1) for v in face.box)
                found.append((it, g, box, round(float(face.score), 4)))
            bar.advance(0, info=f"found {sum(f[2] is not None for f in found)} of {len(found)}")
    mapping = fit_mapping([(it.box, box) for it, _, box, _ in found if box is not None])
    report.extra = {"redetect": settings, "voc_mapping": mapping.to_dict()}
    rows = []
    with task(f"import {name}", len(found), show) as bar:
        for it, g, det, score in found:
            box, how = (det, "voc_detected") if det is not None else (mapping.apply(it.box), "voc_mapped")
            key, crop_rel = f"{name}/{it.key}", f"crops/import/{name}/{_safe(it.key)}"
            row = _row(name, it, crop_rel, box, score, how, g)
            prev = old.get(key)
            if (
                prev
                and all(prev.get(k) == str(row[k]) for k in ("x1", "y1", "x2", "y2", "size", "mtime_ns"))
                and (cache.root / crop_rel).is_file()
            ):
                report.counts["reused"] += 1
            else:
                write_crop(cache.root / crop_rel, crop_face(read(it.src), box, cfg.crop))
            rows.append(row)
            report.counts[how] += 1
            bar.advance(1, info=" ".join(f"{h} {report.counts[h]}" for h in HOW if report.counts[h]))
    return rows


def read_mapping(report_json: Path) -> BoxMapping | None:
    """The box mapping a VOC import fitted (its report.json), or None where there is none."""
    try:
        d = json.loads(report_json.read_text(encoding="utf-8")).get("voc_mapping")
    except (OSError, ValueError):
        return None
    return BoxMapping.from_dict(d) if isinstance(d, dict) else None
