"""The data set of `mask-train synth`: a data set in the competition layout, with synthetic masks, from
photos of bare faces.

For each photo (or each of --variants N "people" made from it, each with its own pose, scale, light and
colour), 7 images 384x512 as the competition has them: mask1..mask5 (worn correctly, five different
masks), incorrect_mask (under the nose or on the chin) and normal (no mask). The face is found once per
photo with the engines' MTCNN and every image is cut with the engines' crop (crop_box / crop_region), so
the set is framed as `mask-train prepare` and the monitor frame faces.

The labels CSV (lines starting with '#' are comments):

    file,gender,age[,race][,variants][,split]
    astronaut.png,female,42

file: relative to --faces (or absolute); gender: male | female; age: whole years 0..120; race: letters,
digits, '-' (default 'unknown'); variants: people made from this photo (default --variants); split: train
(default) or eval. Eval people go to eval/images/<ImageID>.jpg with eval/info.csv (ans = 0, as in the
competition) and eval/truth.csv (the true classes, for `mask-train evaluate`-style checks).

Gender and age are optional: without --labels every image under --faces is an identity, and a labels CSV
may leave gender and age empty (extra columns mask, group, box, as `mask-train import` writes them in
holdout.csv, are read: a row whose mask is not `not_wear` is skipped). A set with any such identity is
written flat, for `mask-train import`: OUT/images/<id>/<stem>.jpg + OUT/labels.csv
(file,mask,gender,age,group,split; group = the source photo), and a photo in which MTCNN finds no face is
skipped and counted instead of stopping the run (a folder of downloads holds some).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from engines.config import CropConfig
from engines.errors import UserError
from engines.faces import Face, create_detector, crop_box, crop_region
from engines.fileio import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    require_dir,
    sha256_file,
)
from engines.labels import (
    GENDER_NAMES,
    IMAGE_SUFFIXES,
    MASK_NAMES,
    STEM_TO_MASK,
    age_group,
    encode,
)
from train.config import Config
from train.data.importer import pad_into_frame
from train.progress import task
from train.synth.cut_render import INCORRECT_PLACEMENTS, draw_placed
from train.synth.mask_bank import BANK_JSON, BankMask
from train.synth.mask_render import MaskStyle, draw_mask, random_style  # noqa: F401  (draw_mask is public here too)

__all__ = [
    "draw_mask",
    "MaskStyle",
    "random_style",
    "PhotoRow",
    "read_labels",
    "Jitter",
    "person_jitter",
    "image_jitter",
    "person_recipe",
    "render_sample",
    "crop_points",
    "find_face",
    "build",
    "texture_files",
]

# what drawing and cutting a person's images does, in the manifest's settings: a set made by an older
# renderer is remade (with --force), not resumed with images of two kinds
# 2: tight crops' faces found again padded; masks drawn whole past the photo's edge (room_for_mask)
RENDERER = 2
CUT_RENDERER = 1  # the bank's masks (--mask-bank) and the ear placement: train.synth.cut_render
INCORRECT_WEIGHTS = (0.4, 0.35, 0.25)  # under_nose, chin, ear, with a mask bank
STEMS = tuple(STEM_TO_MASK)  # the competition's 7 file stems per person, in its order
REQUIRED = ("file",)
OPTIONAL = ("gender", "age", "race", "variants", "split", "mask", "group", "box")
BARE = ("", "not_wear", "without_mask", "no_mask")
MANIFEST = "synth.json"
SUFFIX = ".jpg"
_RACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


# --- the labels CSV ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoRow:
    path: Path
    gender: str  # "" = unknown
    age: int  # -1 = unknown
    race: str = "unknown"
    variants: int | None = None
    split: str = "train"
    line: int = 0

    @property
    def labelled(self) -> bool:
        return bool(self.gender) and self.age >= 0


def photos_in(faces_dir: str | Path) -> list[PhotoRow]:
    """Every image under a folder, as identities without gender or age (synth without --labels)."""
    faces_dir = require_dir(faces_dir, "faces folder")
    files = sorted(p for p in faces_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"faces folder {faces_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return [PhotoRow(p, "", -1, line=i) for i, p in enumerate(files, 1)]


def read_labels(csv_path: str | Path, faces_dir: str | Path) -> list[PhotoRow]:
    """Parse and check the labels CSV; every problem is one UserError naming the file, line and value."""
    csv_path, faces_dir = Path(csv_path), Path(faces_dir)
    if not csv_path.is_file():
        raise UserError(f"labels file {csv_path} does not exist")
    if not faces_dir.is_dir():
        raise UserError(f"faces folder {faces_dir} does not exist")
    try:
        raw = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"labels file {csv_path}: cannot read it ({exc})") from None
    numbered = [
        (i, line)
        for i, line in enumerate(raw.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not numbered:
        raise UserError(
            f"labels file {csv_path} is empty; expected the header "
            f"{','.join(REQUIRED)}[,{','.join(OPTIONAL)}]"
        )
    reader = csv.reader(io.StringIO("\n".join(line for _, line in numbered)))
    header = [h.strip().lower() for h in next(reader)]
    for col in REQUIRED:
        if col not in header:
            raise UserError(
                f"{csv_path}: missing column '{col}' (header must be "
                f"{','.join(REQUIRED)}[,{','.join(OPTIONAL)}], got {','.join(header)})"
            )
    for a, b in (("gender", "age"), ("age", "gender")):
        if a in header and b not in header:  # both or neither: a half-labelled header is a typo
            raise UserError(f"{csv_path}: missing column '{b}' (give gender and age, or neither)")
    unknown = [h for h in header if h not in REQUIRED + OPTIONAL]
    if unknown:
        raise UserError(
            f"{csv_path}: unknown column '{unknown[0]}' (known: {', '.join(REQUIRED + OPTIONAL)})"
        )
    parsed = [
        _parse_row(
            dict(zip(header, (c.strip() for c in cells))),
            len(cells),
            len(header),
            lineno,
            csv_path,
            faces_dir,
        )
        for (lineno, _), cells in zip(numbered[1:], reader)
    ]
    rows = [r for r in parsed if r is not None]
    if not rows:
        raise UserError(f"labels file {csv_path} lists no photos")
    return rows


def _parse_row(
    rec: dict[str, str], n: int, want: int, lineno: int, csv_path: Path, faces_dir: Path
) -> PhotoRow | None:
    where = f"{csv_path} line {lineno}"
    if n != want:
        raise UserError(f"{where}: {n} values for {want} columns")
    if (rec.get("mask") or "").lower() not in BARE:
        return None  # a masked photo cannot be an identity to draw masks on
    path = Path(rec["file"])
    path = path if path.is_absolute() else faces_dir / path
    if not rec["file"] or not path.is_file():
        raise UserError(f"{where}: photo {path} does not exist")
    gender = (rec.get("gender") or "").lower()
    if gender and gender not in GENDER_NAMES:
        raise UserError(f"{where}: gender must be 'male' or 'female', got {rec['gender']!r}")
    age = rec.get("age") or ""
    if age and (not re.fullmatch(r"\d{1,3}", age) or int(age) > 120):
        raise UserError(f"{where}: age must be whole years 0..120, got {rec['age']!r}")
    race = rec.get("race") or "unknown"
    if not _RACE_RE.match(race):
        raise UserError(f"{where}: race must be letters, digits or '-', got {race!r}")
    variants = None
    if rec.get("variants"):
        if not re.fullmatch(r"\d{1,5}", rec["variants"]) or int(rec["variants"]) < 1:
            raise UserError(f"{where}: variants must be a whole number >= 1, got {rec['variants']!r}")
        variants = int(rec["variants"])
    split = (rec.get("split") or "train").lower()
    if split not in ("train", "eval"):
        raise UserError(f"{where}: split must be 'train' or 'eval', got {rec['split']!r}")
    return PhotoRow(path, gender, int(age) if age else -1, race, variants, split, lineno)


def read_photo(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"photo {path} is not a readable image")
    return img


# --- one image --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Jitter:
    """Everything that makes one image of a person differ from another, apart from the mask."""

    flip: bool = False
    scale: float = 1.0  # crop region size, relative (>1: the face is smaller in the image)
    dx: float = 0.0  # crop shift, in face widths
    dy: float = 0.0
    angle: float = 0.0  # degrees, counter-clockwise
    brightness: float = 1.0
    contrast: float = 1.0
    gamma: float = 1.0
    saturation: float = 1.0
    warmth: float = 0.0  # >0: warmer (red up, blue down)
    blur: float = 0.0  # gaussian sigma, pixels of the output
    noise: float = 0.0  # gaussian sigma, grey levels
    jpeg: int = 92


def person_jitter(rng: np.random.Generator, variant: int) -> Jitter:
    """A "person" made from a photo: variant 0 keeps the photo as taken, the others change pose and light."""
    if variant == 0:
        return Jitter()
    return Jitter(
        flip=bool(rng.random() < 0.5),
        scale=float(rng.uniform(0.9, 1.15)),
        dx=float(rng.uniform(-0.05, 0.05)),
        dy=float(rng.uniform(-0.05, 0.05)),
        angle=float(np.clip(rng.normal(0, 5), -10, 10)),
        brightness=float(rng.uniform(0.7, 1.2)),
        contrast=float(rng.uniform(0.8, 1.15)),
        gamma=float(rng.uniform(0.85, 1.2)),
        saturation=float(rng.uniform(0.7, 1.2)),
        warmth=float(rng.uniform(-0.07, 0.07)),
        blur=float(rng.choice([0.0, 0.0, rng.uniform(0.4, 1.0)])),
        noise=float(rng.uniform(0, 3)),
        jpeg=int(rng.integers(80, 96)),
    )


def image_jitter(base: Jitter, rng: np.random.Generator) -> Jitter:
    """One of the person's 7 photos: small changes around the person's own pose and light."""
    return Jitter(
        flip=base.flip,
        scale=base.scale * float(rng.uniform(0.95, 1.05)),
        dx=base.dx + float(rng.uniform(-0.03, 0.03)),
        dy=base.dy + float(rng.uniform(-0.03, 0.03)),
        angle=base.angle + float(rng.uniform(-3, 3)),
        brightness=base.brightness * float(rng.uniform(0.93, 1.07)),
        contrast=base.contrast * float(rng.uniform(0.95, 1.05)),
        gamma=base.gamma,
        saturation=base.saturation,
        warmth=base.warmth + float(rng.uniform(-0.02, 0.02)),
        blur=base.blur,
        noise=base.noise + float(rng.uniform(0, 1.5)),
        jpeg=base.jpeg,
    )


def flip_face(face: Face, width: int) -> Face:
    """The same face in the mirrored photo (left and right landmarks swap roles)."""
    x1, y1, x2, y2 = face.box
    lm = face.landmarks.copy()
    lm[:, 0] = width - 1 - lm[:, 0]
    return Face((width - 1 - x2, y1, width - 1 - x1, y2), face.score, lm[[1, 0, 2, 4, 3]])


def _region(face: Face, jit: Jitter, geom: CropConfig) -> tuple[float, float, float, float]:
    """The crop_box region of the face box scaled and shifted by `jit` (before the turn)."""
    x1, y1, x2, y2 = face.box
    cx, cy = (x1 + x2) / 2 + jit.dx * face.width, (y1 + y2) / 2 + jit.dy * face.height
    hw, hh = face.width * jit.scale / 2, face.height * jit.scale / 2
    return crop_box((cx - hw, cy - hh, cx + hw, cy + hh), geom)


def _cut(photo: np.ndarray, face: Face, jit: Jitter, geom: CropConfig) -> np.ndarray:
    """The jittered crop: the region turned by jit.angle about its centre, cut with crop_region."""
    region = _region(face, jit, geom)
    if abs(jit.angle) < 1e-3:
        return crop_region(photo, region, geom)
    # turn a patch around the region (big enough for any angle), then cut the region out of it
    rx1, ry1, rx2, ry2 = region
    half = int(np.ceil(np.hypot(rx2 - rx1, ry2 - ry1) / 2)) + 2
    pcx, pcy = (rx1 + rx2) / 2, (ry1 + ry2) / 2
    patch_box = (pcx - half, pcy - half, pcx + half, pcy + half)
    side = 2 * half
    patch = crop_region(
        photo, patch_box, CropConfig(width=side, height=side, margin=0, shift_y=0, border=geom.border)
    )
    rot = cv2.getRotationMatrix2D((half, half), jit.angle, 1.0)
    border = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}.get(
        geom.border, cv2.BORDER_REPLICATE
    )
    patch = cv2.warpAffine(patch, rot, (side, side), flags=cv2.INTER_LINEAR, borderMode=border)
    return crop_region(
        patch, (rx1 - patch_box[0], ry1 - patch_box[1], rx2 - patch_box[0], ry2 - patch_box[1]), geom
    )


def crop_points(
    points: np.ndarray, face: Face, jit: Jitter, photo_width: int, geom: CropConfig = CropConfig()
) -> np.ndarray:
    """Where points of the photo (e.g. the landmarks, [n, 2]) land in render_sample's output image."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2).copy()
    if jit.flip:
        face = flip_face(face, photo_width)
        pts[:, 0] = photo_width - 1 - pts[:, 0]
    x1, y1, x2, y2 = _region(face, jit, geom)
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    rot = cv2.getRotationMatrix2D((0.0, 0.0), jit.angle, 1.0)[:, :2]
    pts = (pts - centre) @ rot.T + centre
    return (pts - [x1, y1]) * [geom.width / (x2 - x1), geom.height / (y2 - y1)]


def _photometric(img: np.ndarray, jit: Jitter, rng: np.random.Generator) -> np.ndarray:
    out = img.astype(np.float32) / 255.0
    out = np.clip(out, 0, 1) ** jit.gamma
    grey = out.mean(axis=2, keepdims=True)
    out = grey + (out - grey) * jit.saturation
    out = (out - 0.5) * jit.contrast + 0.5
    out = out * jit.brightness * np.array([1 - jit.warmth, 1.0, 1 + jit.warmth], np.float32)
    out = out * 255.0
    if jit.blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), jit.blur)
    if jit.noise > 0:
        out += rng.normal(0, jit.noise, out.shape).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def room_for_mask(photo: np.ndarray, face: Face, geom: CropConfig = CropConfig()) -> tuple[np.ndarray, Face]:
    """The photo padded (as the crop pads: geom.border) so that what a mask may cover lies inside it (the
    face box, half its width more on each side and its height more below), and the face moved to match; a
    photo with that room already comes back as it is.

    Why: a tight crop ends at the chin, and a mask drawn on it was cut off at the photo's edge (a chin mask
    wholly): the crop then showed a bare face labelled "incorrect". Padded, the mask is drawn whole, over
    the border the crop would have added anyway, so the image still shows what its label says."""
    H, W = photo.shape[:2]
    x1, y1, x2, y2 = face.box
    w, h = x2 - x1, y2 - y1
    left, top = max(0, int(np.ceil(w / 2 - x1))), max(0, int(np.ceil(-y1)))
    right, bottom = max(0, int(np.ceil(x2 + w / 2 - W))), max(0, int(np.ceil(y2 + h - H)))
    if not (left or top or right or bottom):
        return photo, face
    border = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}.get(
        geom.border, cv2.BORDER_REPLICATE
    )
    padded = cv2.copyMakeBorder(photo, top, bottom, left, right, border, value=(0, 0, 0))
    moved = Face((x1 + left, y1 + top, x2 + left, y2 + top), face.score, face.landmarks + [left, top])
    return padded, moved


def render_sample(
    photo: np.ndarray,
    face: Face,
    state: str,
    jit: Jitter,
    rng: np.random.Generator,
    geom: CropConfig = CropConfig(),
    *,
    style: MaskStyle | None = None,
    placement: str | None = None,
    texture: np.ndarray | None = None,
    bank_mask: BankMask | None = None,
) -> np.ndarray:
    """One 384x512 training image: mask drawn on the photo (state), then the jittered crop, then the light.
    A bank mask (cut from a real photo) or the ear placement goes through train.synth.cut_render."""
    if jit.flip:
        photo, face = np.ascontiguousarray(photo[:, ::-1]), flip_face(face, photo.shape[1])
    photo, face = room_for_mask(photo, face, geom)  # for a bare face too: one border for all 7 images
    mask_rng, noise_rng = rng.spawn(2)  # the noise does not depend on what the mask drew
    if state != "not_wear" and (bank_mask is not None or placement == "ear"):
        where = placement or "over_nose"
        masked = draw_placed(
            photo,
            face.landmarks,
            face.box,
            where,
            mask_rng,
            bank_mask=bank_mask,
            style=style,
            texture=texture,
        )
    else:
        masked = draw_mask(
            photo, face.landmarks, face.box, state, mask_rng, texture, style=style, placement=placement
        )
    return _photometric(_cut(masked, face, jit, geom), jit, noise_rng)


# --- the data set -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedPerson:
    id: str
    row: int  # index into the labels rows
    variant: int
    split: str

    def folder(self, r: PhotoRow) -> str:
        return f"{self.id}_{r.gender}_{r.race}_{r.age}"


def plan_people(rows: list[PhotoRow], variants: int) -> list[PlannedPerson]:
    people, n = [], 0
    for i, r in enumerate(rows):
        for v in range(r.variants or variants):
            n += 1
            people.append(PlannedPerson(f"{n:06d}", i, v, r.split))
    return people


def detect_faces(rows: list[PhotoRow], cfg: Config, show: bool = False) -> list[Face | None]:
    """The face of each photo (the largest, most confident one); a labelled photo without a face is an
    error, an unlabelled one (a folder of downloads) gets None and is skipped."""

    detector, faces, cache = create_detector(cfg), [], {}
    with task("finding faces", len(rows), show) as bar:
        for r in rows:
            if r.path not in cache:
                try:
                    face = find_face(detector, read_photo(r.path))
                except UserError:
                    if r.labelled:
                        raise
                    face = None  # an unreadable download: skipped and counted, as a photo without a face
                if face is None and r.labelled:
                    raise UserError(f"photo {r.path} (labels line {r.line}): no face found by the detector")
                cache[r.path] = face
            faces.append(cache[r.path])
            bar.advance()
    return faces


def find_face(detector, photo: np.ndarray, max_side: int = 1024) -> Face | None:
    """The photo's main face (largest x score), or None. Big photos are searched at max_side (speed).

    A face that reaches the photo's edge (a tight crop) is looked for again in the photo padded into a
    frame, as `import` does where it finds none: on a face cut by the border MTCNN's landmarks stray (a
    mouth below the photo, eyes on a cheek), and the landmarks place the mask."""
    face = _main_face(detector, photo, max_side)
    if face is None or at_edge(face.box, photo.shape):
        framed, px, py = pad_into_frame(photo)
        again = _main_face(detector, framed, max_side)
        if again is not None:
            x1, y1, x2, y2 = again.box
            face = Face((x1 - px, y1 - py, x2 - px, y2 - py), again.score, again.landmarks - [px, py])
    return face


def at_edge(box: Sequence[float], shape: Sequence[int], tol: float = 1.0) -> bool:
    """Whether a face box touches the image's border (MTCNN clips the box of a face the border cuts)."""
    H, W = shape[:2]
    return box[0] <= tol or box[1] <= tol or box[2] >= W - tol or box[3] >= H - tol


def _main_face(detector, photo: np.ndarray, max_side: int) -> Face | None:
    scale = min(1.0, max_side / max(photo.shape[:2]))
    if scale == 1.0:
        found = detector.detect(photo)
    else:
        small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found = [
            Face(tuple(v / scale for v in f.box), f.score, f.landmarks / scale)
            for f in detector.detect(small)
        ]
    return max(found, key=lambda f: f.width * f.height * f.score) if found else None


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


@dataclass(frozen=True)
class Shot:
    """One of a person's 7 images, decided before anything is drawn."""

    stem: str
    state: str
    placement: str | None
    style: MaskStyle
    texture: int | None  # index into the --textures images, or None (procedural fabric)
    jitter: Jitter
    seed: tuple[int, ...]  # of the generator that draws the mask details and the noise
    bank: int | None = None  # index into the --mask-bank masks (cut from a real photo), or None

    @property
    def source(self) -> str:
        """Which renderer made the mask: cut (a bank mask), texture, drawn; '' without a mask."""
        if self.state == "not_wear":
            return ""
        return "cut" if self.bank is not None else "texture" if self.texture is not None else "drawn"

    @property
    def where(self) -> str:
        """The mask's placement: over_nose (worn), under_nose, chin, ear; '' without a mask."""
        return "" if self.state == "not_wear" else self.placement or "over_nose"


def person_recipe(
    person: PlannedPerson, seed: int, n_textures: int = 0, n_bank: int = 0, bank_share: float = 0.5
) -> list[Shot]:
    """Every random choice for a person's 7 images, a pure function of (seed, photo row, variant). With a
    mask bank (n_bank masks), `bank_share` of the masks are the bank's and the incorrect one may also hang
    from an ear (without a bank, the choices are those of the renderer before the bank)."""
    rng = _rng(seed, person.row, person.variant)
    base = person_jitter(rng, person.variant)
    if n_bank:
        incorrect = INCORRECT_PLACEMENTS[int(rng.choice(3, p=INCORRECT_WEIGHTS))]
    else:
        incorrect = "under_nose" if rng.random() < 0.6 else "chin"
    shots = []
    for k, stem in enumerate(STEMS):
        irng = _rng(seed, person.row, person.variant, k)
        state = MASK_NAMES[STEM_TO_MASK[stem]]
        jit = image_jitter(base, irng) if person.variant or k else base
        style = random_style(irng)
        tex = int(irng.integers(n_textures)) if n_textures and irng.random() < 0.3 else None
        bank = int(irng.integers(n_bank)) if n_bank and irng.random() < bank_share else None
        shots.append(
            Shot(
                stem,
                state,
                incorrect if state == "incorrect" else None,
                style,
                tex,
                jit,
                (seed, person.row, person.variant, k, 1),
                bank if state != "not_wear" else None,
            )
        )
    return shots


def person_images(
    photo: np.ndarray,
    face: Face,
    shots: list[Shot],
    geom: CropConfig,
    textures: list[np.ndarray],
    bank: Sequence[BankMask] = (),
) -> dict[str, np.ndarray]:
    """A person's 7 images, stem -> 384x512 BGR image."""
    return {
        shot.stem: render_sample(
            photo,
            face,
            shot.state,
            shot.jitter,
            np.random.default_rng(shot.seed),
            geom,
            style=shot.style,
            placement=shot.placement,
            texture=None if shot.texture is None or shot.bank is not None else textures[shot.texture],
            bank_mask=None if shot.bank is None else bank[shot.bank],
        )
        for shot in shots
    }


def _describe(person: PlannedPerson, seed: int, shots: list[Shot], bank: Sequence[BankMask] = ()) -> dict:
    """What the manifest records about a person's images: masks drawn and the person's own pose and light."""
    base = person_jitter(_rng(seed, person.row, person.variant), person.variant)
    return {
        "incorrect": next(s.placement for s in shots if s.state == "incorrect"),
        "masks": {
            s.stem: (
                f"cut {bank[s.bank].name} ({bank[s.bank].meta.get('source', '')})"
                if s.bank is not None
                else f"texture {s.texture}"
                if s.texture is not None
                else s.style.name
            )
            for s in shots
            if s.state != "not_wear"
        },
        "person_jitter": {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(base).items()},
    }


def _write_jpeg(path: Path, img: np.ndarray, quality: int) -> None:
    ok, buf = cv2.imencode(SUFFIX, img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV without a JPEG encoder
        raise UserError(f"could not encode {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def _fingerprint(
    rows: list[PhotoRow],
    variants: int,
    seed: int,
    geom: CropConfig,
    textures: list[Path],
    mask_bank: Path | None = None,
    bank_share: float = 0.5,
) -> dict:
    banked = (
        {
            "cut_renderer": CUT_RENDERER,
            "mask_bank": sha256_file(mask_bank / BANK_JSON),
            "bank_share": bank_share,
        }
        if mask_bank is not None
        else {}
    )
    return {
        **banked,
        "renderer": RENDERER,
        "seed": seed,
        "variants": variants,
        "crop": asdict(geom),
        "photos": [
            {
                "file": str(r.path),
                "sha256": sha256_file(r.path),
                "gender": r.gender,
                "age": r.age,
                "race": r.race,
                "variants": r.variants,
                "split": r.split,
            }
            for r in rows
        ],
        "textures": [sha256_file(t) for t in textures],
    }


def _check_out(out: Path, fingerprint: dict, force: bool) -> str:
    """'resume' (same settings), 'rebuild' (--force over an earlier synth) or 'fresh'; refuses to mix two
    different sets in one folder or to write into a folder that synth did not make."""
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text()).get("settings")
        except (OSError, ValueError, AttributeError):
            old = None
        if old == fingerprint:
            return "resume"
        if not force:
            raise UserError(
                f"{out} holds a synthetic set made with other settings (seed, photos, labels, "
                f"variants or an older mask-train synth); pass --force to rebuild it, or choose another --out"
            )
        return "rebuild"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(
            f"{out} is not empty and was not made by mask-train synth; choose an empty or new --out"
        )
    return "fresh"


def _start_out(out: Path, fingerprint: dict, action: str) -> None:
    if action == "rebuild":
        for sub in ("train", "eval", "images"):
            shutil.rmtree(out / sub, ignore_errors=True)
    if action != "resume":
        atomic_write_json(out / MANIFEST, {"settings": fingerprint, "complete": False})


def _image_id(seed: int, person: PlannedPerson, stem: str) -> str:
    return hashlib.sha1(f"{seed}/{person.id}/{stem}".encode()).hexdigest()


def build(
    rows: list[PhotoRow],
    out: Path,
    cfg: Config,
    *,
    variants: int = 1,
    seed: int = 0,
    textures: Iterable[Path] = (),
    mask_bank: str | Path | None = None,
    bank_share: float = 0.5,
    force: bool = False,
    show: bool = False,
) -> dict:
    """Write the data set; people already complete from an earlier identical run are kept. With
    `mask_bank` (a `cut-masks` folder), `bank_share` of the masks are cut from real photos. Returns a
    summary."""
    from train.synth.mask_bank import read_bank

    texture_paths = sorted(Path(t) for t in textures)
    texture_imgs = [read_photo(t) for t in texture_paths]
    bank_dir = Path(mask_bank) if mask_bank else None
    bank = read_bank(bank_dir) if bank_dir is not None else []
    if not 0.0 <= bank_share <= 1.0:
        raise UserError(f"--bank-share must be in [0, 1], got {bank_share}")
    fingerprint = _fingerprint(rows, variants, seed, cfg.crop, texture_paths, bank_dir, bank_share)
    action = _check_out(out, fingerprint, force)
    faces = detect_faces(rows, cfg, show)  # every photo checked before anything is written
    flat = not all(r.labelled for r in rows)
    skipped = sum(f is None for f in faces)
    rows, faces = [r for r, f in zip(rows, faces) if f is not None], [f for f in faces if f is not None]
    if not rows:
        raise UserError("no face found by the detector in any of the photos")
    _start_out(out, fingerprint, action)
    people = plan_people(rows, variants)
    photos: dict[Path, np.ndarray] = {}
    records, made, kept = [], 0, 0
    with task("people", len(people), show) as bar:
        for p in people:
            r = rows[p.row]
            targets = _targets(out, p, r, seed, flat)
            shots = person_recipe(p, seed, len(texture_imgs), len(bank), bank_share)
            if not all(t.is_file() for t in targets.values()):
                photo = photos.get(r.path)
                if photo is None:
                    photo = photos[r.path] = read_photo(r.path)
                images = person_images(photo, faces[p.row], shots, cfg.crop, texture_imgs, bank)
                for shot in shots:
                    _write_jpeg(targets[shot.stem], images[shot.stem], shot.jitter.jpeg)
                made += 1
            else:
                kept += 1
            records.append(
                {
                    "id": p.id,
                    "folder": p.folder(r),
                    "split": p.split,
                    "photo": r.path.name,
                    "variant": p.variant,
                    "gender": r.gender,
                    "age": r.age,
                    "race": r.race,
                    **({"images": {s: t.name for s, t in targets.items()}} if p.split == "eval" else {}),
                    "drawn": _describe(p, seed, shots, bank),
                }
            )
            bar.advance()
    if flat:
        recipes = {p.id: person_recipe(p, seed, len(texture_imgs), len(bank), bank_share) for p in people}
        _write_flat_labels(out, people, rows, recipes)
    else:
        _write_tables(out, people, rows, seed)
    atomic_write_json(out / MANIFEST, {"settings": fingerprint, "complete": True, "people": records})
    return {
        "people": len(people),
        "made": made,
        "kept": kept,
        "train": sum(p.split == "train" for p in people),
        "eval": sum(p.split == "eval" for p in people),
        "no_face": skipped,
        "layout": "flat" if flat else "competition",
    }


def _targets(out: Path, p: PlannedPerson, r: PhotoRow, seed: int, flat: bool = False) -> dict[str, Path]:
    if flat:
        return {stem: out / "images" / p.id / f"{stem}{SUFFIX}" for stem in STEMS}
    if p.split == "train":
        folder = out / "train" / "images" / p.folder(r)
        return {stem: folder / f"{stem}{SUFFIX}" for stem in STEMS}
    return {stem: out / "eval" / "images" / f"{_image_id(seed, p, stem)}{SUFFIX}" for stem in STEMS}


def _write_tables(out: Path, people: list[PlannedPerson], rows: list[PhotoRow], seed: int) -> None:
    """train/train.csv as the competition has it; eval/info.csv (ans unknown = 0) and eval/truth.csv."""
    train = [p for p in people if p.split == "train"]
    evals = [p for p in people if p.split == "eval"]
    if train:
        lines = ["id,gender,race,age,path"]
        lines += [
            f"{p.id},{rows[p.row].gender},{rows[p.row].race},{rows[p.row].age},{p.folder(rows[p.row])}"
            for p in train
        ]
        atomic_write_text(out / "train" / "train.csv", "\n".join(lines) + "\n")
    if evals:
        info, truth = ["ImageID,ans"], ["ImageID,ans"]
        for p in evals:
            r = rows[p.row]
            for stem in STEMS:
                image_id = f"{_image_id(seed, p, stem)}{SUFFIX}"
                cls = encode(STEM_TO_MASK[stem], GENDER_NAMES.index(r.gender), age_group(r.age))
                info.append(f"{image_id},0")
                truth.append(f"{image_id},{cls}")
        atomic_write_text(out / "eval" / "info.csv", "\n".join(info) + "\n")
        atomic_write_text(out / "eval" / "truth.csv", "\n".join(truth) + "\n")


def _write_flat_labels(
    out: Path, people: list[PlannedPerson], rows: list[PhotoRow], recipes: dict[str, list[Shot]]
) -> None:
    """OUT/labels.csv for `mask-train import`: one row per image; group = the source photo (its variants
    are one person), gender and age empty where unknown; placement (over_nose, under_nose, chin, ear) and
    mask_source (cut, texture, drawn) say how the mask was made, for `import --exclude`."""
    lines = ["file,mask,gender,age,group,split,placement,mask_source"]
    for p in people:
        r = rows[p.row]
        for shot in recipes[p.id]:
            age = r.age if r.age >= 0 else ""
            lines.append(
                f"images/{p.id}/{shot.stem}{SUFFIX},{shot.state},{r.gender},{age},photo{p.row:06d},{p.split},"
                f"{shot.where},{shot.source}"
            )
    atomic_write_text(out / "labels.csv", "\n".join(lines) + "\n")


# --- the command ------------------------------------------------------------------------------------------


def texture_files(folder: str | Path | None) -> list[Path]:
    """The mask fabric images of --textures (none without it); a folder without images is an error."""
    if not folder:
        return []
    tdir = require_dir(folder, "textures folder")
    textures = [p for p in sorted(tdir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not textures:
        raise UserError(f"textures folder {tdir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return textures
