"""A small data set in the competition layout, made on the fly for the training tests.

People are built from the public photos in tests.conftest.FACES: each photo is cropped to a 384x512
portrait around its MTCNN face and varied (flip, colour, shift) so that one photo can stand for several
people; masks are filled polygons placed from the MTCNN landmarks (over nose and mouth for a mask worn,
over the mouth only for one worn incorrectly). One person is drawn (no real face: MTCNN finds none, so
prepare falls back to the centred crop). The set also holds what prepare must survive: a corrupt image,
a folder name that does not parse, an age out of range, and a macOS '._' file.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tests.conftest import FACES

W, H = 384, 512
PHOTOS = ("astronaut.png", "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")
STEMS = ("mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal")
MASK_COLOURS = ((235, 235, 235), (200, 160, 90), (40, 40, 40), (150, 150, 150), (90, 170, 90))


@dataclass(frozen=True)
class PersonSpec:
    id: str
    gender: str
    age: int
    photo: int  # index into PHOTOS, or -1 for a drawn face
    variant: int  # flip / colour / shift variation
    swapped: bool = False  # incorrect_mask and normal filed under each other's name (a known data error)

    @property
    def folder(self) -> str:
        return f"{self.id}_{self.gender}_Asian_{self.age}"


# 12 people over every gender x age group (several per group, so a stratified split has something to do)
PEOPLE = (
    PersonSpec("000001", "female", 25, 0, 0),
    PersonSpec("000002", "male", 45, 1, 0),
    PersonSpec("000003", "male", 65, 2, 0),
    PersonSpec("000004", "male", 22, 3, 0),
    PersonSpec("000005", "male", 70, 4, 0),
    PersonSpec("000006", "female", 52, 0, 1),
    PersonSpec("000007", "female", 61, 0, 2),
    PersonSpec("000008", "male", 28, 1, 1),
    PersonSpec("000009", "male", 38, 2, 1, swapped=True),
    PersonSpec("000010", "female", 19, 0, 3),
    PersonSpec("000011", "male", 59, 3, 1),
    PersonSpec("000012", "female", 33, -1, 0),
)
BAD_FOLDER = "badname_folder"
OLD_FOLDER = "000099_male_Asian_150"
CORRUPT = ("000004_male_Asian_22", "mask4.jpg")
DUPLICATE = ("000011_male_Asian_59", "mask2.jpg", "normal.jpg")  # mask2 is a byte copy of normal
EVAL_COUNT = 6
SWAP = {"incorrect_mask": "normal", "normal": "incorrect_mask"}
SWAPPED = next(p.folder for p in PEOPLE if p.swapped)


@functools.cache
def portrait(photo: int) -> tuple[np.ndarray, np.ndarray]:
    """(384x512 BGR portrait, landmarks [5, 2] in it) of one of the public photos."""
    from engines.config import CropConfig
    from engines.faces import FaceDetector, crop_box, crop_face

    img = cv2.imread(str(FACES / PHOTOS[photo]))
    scale = 720 / max(img.shape[:2])  # detection on the big photos would dominate the test's time
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else img
    # the photo's main face as synth finds it (largest x score): the masked-face nets see a weak 0.78 "face"
    # in obama3's folded arms, a little larger than his face
    face = max(FaceDetector().detect(img), key=lambda f: f.width * f.height * f.score)
    geom = CropConfig(margin=0.9, shift_y=0.15)
    x1, y1, x2, _ = crop_box(face.box, geom)
    scale = W / (x2 - x1)
    return crop_face(img, face.box, geom), (face.landmarks - np.array([x1, y1])) * scale


def drawn_face(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A cartoon head on a plain background (no detector finds it) with plausible landmark positions."""
    img = np.full((H, W, 3), rng.integers(120, 200), np.uint8)
    cv2.ellipse(img, (192, 230), (95, 125), 0, 0, 360, (120, 160, 210), -1)
    cv2.rectangle(img, (100, 400), (284, 512), (80, 60, 140), -1)
    lm = np.array([[155, 200], [229, 200], [192, 245], [160, 290], [224, 290]], np.float32)
    for x, y in lm[:2]:
        cv2.circle(img, (int(x), int(y)), 9, (40, 40, 40), -1)
    cv2.line(img, tuple(map(int, lm[3])), tuple(map(int, lm[4])), (40, 40, 160), 4)
    return img, lm


def mask_polygon(lm: np.ndarray, incorrect: bool) -> np.ndarray:
    """Nose and mouth covered (worn), or the mouth only (worn under the nose)."""
    eye_l, eye_r, nose, m_l, m_r = lm
    ed = float(np.linalg.norm(eye_r - eye_l))
    dy = float((m_l[1] + m_r[1]) / 2 - (eye_l[1] + eye_r[1]) / 2)
    mouth_y = (m_l[1] + m_r[1]) / 2
    top = nose[1] + 0.35 * (mouth_y - nose[1]) if incorrect else nose[1] - 0.35 * dy
    pts = [
        (eye_l[0] - 0.2 * ed, top),
        (eye_r[0] + 0.2 * ed, top),
        (m_r[0] + 0.55 * ed, mouth_y),
        (m_r[0] + 0.2 * ed, mouth_y + 0.85 * dy),
        (m_l[0] - 0.2 * ed, mouth_y + 0.85 * dy),
        (m_l[0] - 0.55 * ed, mouth_y),
    ]
    return np.round(np.array(pts)).astype(np.int32)


def person_image(spec: PersonSpec, stem: str, rng: np.random.Generator) -> np.ndarray:
    img, lm = drawn_face(rng) if spec.photo < 0 else portrait(spec.photo)
    img, lm = img.copy(), lm.copy()
    if spec.variant % 2:
        img, lm = img[:, ::-1].copy(), np.stack([W - 1 - lm[:, 0], lm[:, 1]], 1)[[1, 0, 2, 4, 3]]
    if stem != "normal":
        colour = MASK_COLOURS[int(stem[-1]) - 1] if stem.startswith("mask") else (210, 190, 120)
        cv2.fillPoly(img, [mask_polygon(lm, stem == "incorrect_mask")], colour, lineType=cv2.LINE_AA)
    tint = np.array([1 + 0.08 * spec.variant, 1.0, 1 - 0.06 * spec.variant]) * rng.uniform(0.85, 1.15)
    img = np.clip(img.astype(np.float32) * tint, 0, 255).astype(np.uint8)
    shift = rng.integers(-10, 11, 2)
    return cv2.warpAffine(
        img, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (W, H), borderMode=cv2.BORDER_REPLICATE
    )


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img), path


def make_dataset(
    root: Path, people: tuple[PersonSpec, ...] = PEOPLE, seed: int = 0, faults: bool = True
) -> Path:
    """Write the competition layout under root; returns root. `faults`: add the broken entries (PEOPLE
    only)."""
    rng = np.random.default_rng(seed)
    images = root / "train" / "images"
    rows = []
    for spec in people:
        rows.append(
            {"id": spec.id, "gender": spec.gender, "race": "Asian", "age": spec.age, "path": spec.folder}
        )
        for i, stem in enumerate(STEMS):
            suffix = (".jpg", ".png", ".jpeg")[i % 3] if spec.id == "000002" else ".jpg"
            name = SWAP.get(stem, stem) if spec.swapped else stem
            _write(images / spec.folder / f"{name}{suffix}", person_image(spec, stem, rng))
    if faults:
        _add_faults(images, rows, rng)
    _write_csv(root / "train" / "train.csv", ["id", "gender", "race", "age", "path"], rows)
    _make_eval(root / "eval", rng)
    return root


def _add_faults(images: Path, rows: list[dict], rng: np.random.Generator) -> None:
    for folder in (BAD_FOLDER, OLD_FOLDER):
        rows.append(
            {"id": folder.split("_")[0], "gender": "male", "race": "Asian", "age": 40, "path": folder}
        )
        for stem in STEMS:
            _write(images / folder / f"{stem}.jpg", person_image(PEOPLE[1], stem, rng))
    dup_dir = images / DUPLICATE[0]
    (dup_dir / DUPLICATE[1]).write_bytes((dup_dir / DUPLICATE[2]).read_bytes())
    (images / CORRUPT[0] / CORRUPT[1]).write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg" + bytes(200))
    (images / PEOPLE[0].folder / "._mask1.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")


def _make_eval(eval_dir: Path, rng: np.random.Generator) -> None:
    rows = []
    for i in range(EVAL_COUNT):
        spec, stem = PEOPLE[i * 2 % len(PEOPLE)], STEMS[(i * 3) % len(STEMS)]
        name = f"{rng.integers(0, 2**60):015x}.jpg"
        _write(eval_dir / "images" / name, person_image(spec, stem, rng))
        rows.append({"ImageID": name, "ans": 0})
    _write_csv(eval_dir / "info.csv", ["ImageID", "ans"], rows)


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
