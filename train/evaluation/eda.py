"""The checks behind `mask-train eda --data DIR`: what the data holds and what is wrong with it, as rich
tables and PNG plots.

Counts per class (18) and per task, people per gender and age group, ages, image sizes, unreadable files,
exact duplicates (same bytes), and images whose label looks inconsistent with the person's other images:
  * the same photo (near-identical difference hash) filed under two different labels;
  * one person id in several folders with different gender or age;
  * bare skin around the mouth (inside the face box that `prepare` found): a 'normal' photo that shows less
    skin than the person's 'incorrect_mask' or masked photos suggests swapped labels (a heuristic);
  * with --checkpoint, a model's confident disagreement with an image's mask label, or with a person's
    gender / age over their photos (majority vote).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engines.fileio import atomic_write_json
from engines.labels import (
    AGE_NAMES,
    GENDER_NAMES,
    MASK_NAMES,
    NUM_CLASSES,
    TASK_OF,
    class_names,
    marginals,
)
from train.config import Config
from train.data.cache import Cache
from train.data.layout import COMPETITION_AGE_THRESHOLD, TrainImage, scan_train
from train.data.prepare import ensure_prepared
from train.data.targets import split_targets
from train.evaluation.inference import load_models
from train.evaluation.scoring import score_samples
from train.measures.plots import bar_chart, save_png
from train.progress import task

THUMB = 32  # side of the grey thumbnail that "the same photo" is judged on
SAME_PHOTO_CHANGED = 0.01  # at most this share of thumbnail pixels may differ by more than 25 grey levels
SKIN_GAP = 0.15  # skin-share difference that counts as inconsistent


@dataclass
class ImageFacts:
    image: TrainImage
    sha256: str
    size: tuple[int, int] | None  # (width, height); None = unreadable
    dhash: int | None
    thumb: np.ndarray | None = field(default=None, repr=False)
    skin: float | None = None  # share of skin-coloured pixels around the mouth


@dataclass
class Findings:
    facts: list[ImageFacts] = field(default_factory=list)
    problems: list[Any] = field(default_factory=list)
    inconsistent: list[dict[str, str]] = field(default_factory=list)


# --- per image ------------------------------------------------------------------------------------------


def dhash(gray: np.ndarray) -> int:
    """64-bit difference hash: survives re-encoding and resizing, changes with the content."""
    import cv2

    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def skin_share(img: np.ndarray, box: Sequence[float]) -> float | None:
    """Share of skin-coloured pixels (YCrCb rule) in the mouth and chin part of a face box."""
    import cv2

    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    ys, ye = int(max(y1 + 0.62 * h, 0)), int(min(y1 + 0.95 * h, img.shape[0]))
    xs, xe = int(max(x1 + 0.3 * w, 0)), int(min(x1 + 0.7 * w, img.shape[1]))
    if ye - ys < 2 or xe - xs < 2:
        return None
    ycc = cv2.cvtColor(img[ys:ye, xs:xe], cv2.COLOR_BGR2YCrCb)
    cr, cb = ycc[..., 1], ycc[..., 2]
    return float(((cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)).mean())


def image_facts(image: TrainImage, box: Sequence[float] | None) -> ImageFacts:
    import cv2

    try:
        data = image.path.read_bytes()
    except OSError:
        data = b""
    sha = hashlib.sha256(data).hexdigest()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        return ImageFacts(image, sha, None, None)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    facts = ImageFacts(
        image,
        sha,
        (img.shape[1], img.shape[0]),
        dhash(gray),
        cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA),
    )
    if box is not None:
        facts.skin = skin_share(img, box)
    return facts


def cached_face_boxes(cfg: Config, data_dir: Path) -> dict[str, tuple[float, ...]]:
    """key -> face box, from a cache `prepare` made of this data folder (found faces only)."""

    cache = Cache(cfg.resolve(cfg.data.cache_dir))
    if not cache.made_from(data_dir):
        return {}
    return {
        k: tuple(float(r[c]) for c in ("x1", "y1", "x2", "y2"))
        for k, r in Cache.read_rows(cache.manifest_path).items()
        if r.get("found") == "1"
    }


# --- label checks ---------------------------------------------------------------------------------------


def _label(f: ImageFacts) -> tuple[int, int, int]:
    i = f.image
    return i.mask, i.gender, i.age(COMPETITION_AGE_THRESHOLD)


def same_photo(a: ImageFacts, b: ImageFacts) -> bool:
    """Equal up to re-encoding: a mask drawn on, or another mask, changes far more than 1% of the pixels."""
    diff = np.abs(a.thumb.astype(np.int16) - b.thumb.astype(np.int16))
    return float((diff > 25).mean()) <= SAME_PHOTO_CHANGED


def duplicate_label_conflicts(facts: Sequence[ImageFacts]) -> list[dict[str, str]]:
    """The same photo under two labels: compared pairwise within a person; across people, photos with
    equal difference hashes are compared."""
    out, seen = [], set()

    def flag(a: ImageFacts, b: ImageFacts) -> None:
        pair = tuple(sorted((a.image.key, b.image.key)))
        if pair not in seen and _label(a) != _label(b) and same_photo(a, b):
            seen.add(pair)
            out.append(
                {"check": "same photo, two labels", "key": pair[0], "detail": f"looks identical to {pair[1]}"}
            )

    by_person: dict[str, list[ImageFacts]] = defaultdict(list)
    by_hash: dict[int, list[ImageFacts]] = defaultdict(list)
    for f in facts:
        if f.dhash is not None:
            by_person[f.image.folder].append(f)
            by_hash[f.dhash].append(f)
    for group in by_person.values():
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                flag(a, b)
    for group in by_hash.values():
        for a in group[1:]:
            flag(group[0], a)
    return out


def id_conflicts(facts: Sequence[ImageFacts]) -> list[dict[str, str]]:
    folders: dict[str, set[tuple[str, int, int]]] = defaultdict(set)
    for f in facts:
        folders[f.image.person].add((f.image.folder, f.image.gender, f.image.age_years))
    return [
        {
            "check": "one id, several people",
            "key": pid,
            "detail": "; ".join(sorted(folder for folder, _, _ in entries)),
        }
        for pid, entries in sorted(folders.items())
        if len({(g, a) for _, g, a in entries}) > 1
    ]


def skin_conflicts(facts: Sequence[ImageFacts]) -> list[dict[str, str]]:
    """Per person: the unmasked photo should show the most skin around the mouth."""
    out = []
    people: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    keys: dict[str, dict[int, str]] = defaultdict(dict)
    for f in facts:
        if f.skin is not None:
            people[f.image.folder][f.image.mask].append(f.skin)
            keys[f.image.folder][f.image.mask] = f.image.key
    for folder, by_mask in sorted(people.items()):
        if 2 not in by_mask:
            continue
        normal = by_mask[2][0]
        for mask, what in ((1, "the incorrect_mask photo"), (0, "the masked photos (median)")):
            if mask in by_mask and float(np.median(by_mask[mask])) - normal > SKIN_GAP:
                out.append(
                    {
                        "check": "normal photo shows less skin",
                        "key": keys[folder][2],
                        "detail": f"skin around the mouth {normal:.2f} "
                        f"< {float(np.median(by_mask[mask])):.2f} "
                        f"of {what}: swapped labels?",
                    }
                )
    return out


def model_conflicts(cfg: Config, checkpoint: str, min_prob: float = 0.9) -> list[dict[str, str]]:
    """Confident model disagreements: per image for the mask state, per person (majority) for gender / age."""

    _, samples = ensure_prepared(cfg, data_given=False)
    probs = score_samples(load_models([checkpoint], cfg.engine.device), samples, False, cfg.data.batch_size)
    out = []
    mask_p = marginals(probs)[0]
    for s, p in zip(samples, mask_p):
        if p.argmax() != s.mask and p.max() >= min_prob:
            out.append(
                {
                    "check": "model disagrees (mask)",
                    "key": s.key,
                    "detail": f"labelled {MASK_NAMES[s.mask]}, "
                    f"model says {MASK_NAMES[p.argmax()]} ({p.max():.2f})",
                }
            )
    by_person: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_person[s.folder].append(i)
    for folder, idx in sorted(by_person.items()):
        s = samples[idx[0]]
        for kind, names, truth in (
            ("gender", GENDER_NAMES, s.gender),
            ("age", AGE_NAMES, int(split_targets(np.asarray(s.cls(COMPETITION_AGE_THRESHOLD)))[2])),
        ):
            if truth < 0:  # an imported photo without this label: nothing to disagree with
                continue
            votes = Counter(int(TASK_OF[kind][probs[i].argmax()]) for i in idx)
            guess, n = votes.most_common(1)[0]
            if guess != truth and n > len(idx) / 2:
                out.append(
                    {
                        "check": f"model disagrees ({kind})",
                        "key": folder,
                        "detail": f"labelled {names[truth]}, "
                        f"model says {names[guess]} on {n}/{len(idx)} photos",
                    }
                )
    return out


# --- run ------------------------------------------------------------------------------------------------


def collect(cfg: Config, data_dir: Path, show: bool = True) -> Findings:
    scan = scan_train(data_dir)
    boxes = cached_face_boxes(cfg, data_dir)
    found = Findings(problems=scan.problems)
    with task("eda", len(scan.images), show) as t:
        for image in scan.images:
            found.facts.append(image_facts(image, boxes.get(image.key)))
            t.advance(1)
    found.inconsistent = (
        duplicate_label_conflicts(found.facts) + id_conflicts(found.facts) + skin_conflicts(found.facts)
    )
    return found


def summary(found: Findings) -> dict[str, Any]:
    readable = [f for f in found.facts if f.size is not None]
    classes = Counter(f.image.cls(COMPETITION_AGE_THRESHOLD) for f in readable)
    people = {f.image.folder: f.image for f in readable}
    by_sha: dict[str, list[str]] = defaultdict(list)
    for f in found.facts:
        by_sha[f.sha256].append(f.image.key)
    return {
        "images": len(found.facts),
        "readable": len(readable),
        "people": len(people),
        "classes": [classes.get(c, 0) for c in range(NUM_CLASSES)],
        "mask": [sum(f.image.mask == m for f in readable) for m in range(3)],
        "gender_images": [sum(f.image.gender == g for f in readable) for g in range(2)],
        "age_images": [sum(f.image.age(COMPETITION_AGE_THRESHOLD) == a for f in readable) for a in range(3)],
        "people_gender_age": [
            [sum(p.gender == g and p.age() == a for p in people.values()) for a in range(3)] for g in range(2)
        ],
        "ages": sorted(Counter(p.age_years for p in people.values()).items()),
        "sizes": Counter(f"{w}x{h}" for w, h in (f.size for f in readable)).most_common(),
        "unreadable": [f.image.key for f in found.facts if f.size is None],
        "exact_duplicates": [keys for keys in by_sha.values() if len(keys) > 1],
        "problems": [p.to_dict() for p in found.problems],
        "inconsistent": found.inconsistent,
    }


def write_plots(report: Path, s: dict[str, Any]) -> list[Path]:
    charts = {
        "classes.png": (class_names(), s["classes"], "images per class (competition labels)"),
        "tasks.png": (
            [f"mask: {n}" for n in MASK_NAMES]
            + [f"gender: {n}" for n in GENDER_NAMES]
            + [f"age: {n}" for n in AGE_NAMES],
            s["mask"] + s["gender_images"] + s["age_images"],
            "images per task value",
        ),
        "people.png": (
            [f"{g} {a}" for g in GENDER_NAMES for a in AGE_NAMES],
            [n for row in s["people_gender_age"] for n in row],
            "people per gender and age group",
        ),
        "ages.png": (
            [f"{lo}-{lo + 4}" for lo in range(0, 100, 5)],
            [sum(n for age, n in s["ages"] if lo <= age < lo + 5) for lo in range(0, 100, 5)],
            "people per age (years)",
        ),
        "sizes.png": (
            [k for k, _ in s["sizes"][:15]] or ["none"],
            [n for _, n in s["sizes"][:15]] or [0],
            "image sizes (width x height)",
        ),
    }
    paths = []
    for name, (labels, values, title) in charts.items():
        save_png(report / name, bar_chart(labels, values, title))
        paths.append(report / name)
    return paths


def write_report(report: Path, s: dict[str, Any]) -> list[Path]:
    """eda.json and the PNG plots of a summary into `report`; returns the plots written."""
    report.mkdir(parents=True, exist_ok=True)
    atomic_write_json(report / "eda.json", s)
    return write_plots(report, s)
