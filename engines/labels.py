"""The competition's 18-class schema: class = mask*6 + gender*3 + age.

Everything that turns a folder name, a file stem or a model output into a label goes through here,
so training, evaluation and the live monitor cannot disagree about what class 7 means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from engines.errors import UserError

MASK_NAMES = ("wear", "incorrect", "not_wear")
GENDER_NAMES = ("male", "female")
AGE_NAMES = ("<30", "30-59", ">=60")
TASKS = {"mask": MASK_NAMES, "gender": GENDER_NAMES, "age": AGE_NAMES}
TASK_NAMES = tuple(TASKS)  # ("mask", "gender", "age"): the tasks, in the order of the class arithmetic
TASK_SIZES = {name: len(names) for name, names in TASKS.items()}  # mask 3, gender 2, age 3
NUM_CLASSES = 18  # = 3 * 2 * 3, the product of TASK_SIZES (checked below)
assert NUM_CLASSES == int(np.prod(list(TASK_SIZES.values())))

# Per-task index of every class: TASK_OF["age"][c] is class c's age group. Folding an 18-way confusion
# matrix, a target tensor or a probability row into one task goes through these arrays or `marginals`.
_CLASSES = np.arange(NUM_CLASSES)
TASK_OF: dict[str, np.ndarray] = {"mask": _CLASSES // 6, "gender": (_CLASSES // 3) % 2, "age": _CLASSES % 3}
for _a in TASK_OF.values():
    _a.setflags(write=False)

# Shown to users (UI, tables); the machine-readable names above go into files and events.
MASK_DISPLAY = ("mask", "incorrect mask", "no mask")

# File stems of one person's 7 photos in the competition layout (synthetic data writes the same names).
STEM_TO_MASK = {
    "mask1": 0,
    "mask2": 0,
    "mask3": 0,
    "mask4": 0,
    "mask5": 0,
    "incorrect_mask": 1,
    "normal": 2,
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

_C = TypeVar("_C")  # an int, a NumPy array or a torch tensor of class indices

_PERSON_RE = re.compile(r"^(?P<id>[^_]+)_(?P<gender>[A-Za-z]+)_(?P<race>.+)_(?P<age>\d+)$")


class LabelError(UserError):
    """A folder name, file stem or label value that does not parse."""


@dataclass(frozen=True)
class Label:
    mask: int
    gender: int
    age: int

    def __post_init__(self) -> None:
        for name, n in TASK_SIZES.items():
            object.__setattr__(self, name, _check(getattr(self, name), n, name))

    @property
    def cls(self) -> int:
        return encode(self.mask, self.gender, self.age)

    @property
    def mask_name(self) -> str:
        return MASK_NAMES[self.mask]

    @property
    def gender_name(self) -> str:
        return GENDER_NAMES[self.gender]

    @property
    def age_name(self) -> str:
        return AGE_NAMES[self.age]


def encode(mask: int, gender: int, age: int) -> int:
    return _check(mask, 3, "mask") * 6 + _check(gender, 2, "gender") * 3 + _check(age, 3, "age")


def split_classes(cls: _C) -> tuple[_C, _C, _C]:
    """Class indices (int, NumPy array or torch tensor) -> (mask, gender, age) indices of the same kind.

    The one place besides `encode` that knows class = mask*6 + gender*3 + age, for arrays and tensors alike.
    """
    return cls // 6, (cls // 3) % 2, cls % 3


def marginals(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities [..., 18] -> mask [..., 3], gender [..., 2], age [..., 3], each summed over the
    others."""
    p = np.asarray(probs, dtype=np.float64)
    if p.shape[-1:] != (NUM_CLASSES,):
        raise ValueError(f"expected probabilities over {NUM_CLASSES} classes, got shape {list(p.shape)}")
    p = p.reshape(*p.shape[:-1], *TASK_SIZES.values())
    return p.sum(axis=(-2, -1)), p.sum(axis=(-3, -1)), p.sum(axis=(-3, -2))


def _check(value: object, n: int, name: str) -> int:
    """Accept Python and NumPy integers in 0..n-1; refuse bools, floats and strings."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise LabelError(f"{name} must be an integer in 0..{n - 1}, got {value!r}")
    value = int(value.__index__())
    if not 0 <= value < n:
        raise LabelError(f"{name} must be an integer in 0..{n - 1}, got {value}")
    return value


def decode(cls: int) -> Label:
    return Label(*split_classes(_check(cls, NUM_CLASSES, "class")))


def class_name(cls: int) -> str:
    """Machine-readable name, e.g. 'wear/female/30-59'."""
    lab = decode(cls)
    return f"{lab.mask_name}/{lab.gender_name}/{lab.age_name}"


def class_names() -> list[str]:
    return [class_name(c) for c in range(NUM_CLASSES)]


def age_group(age: int, old_threshold: int = 60) -> int:
    """Age in years -> 0 (<30), 1 (30..old_threshold-1), 2 (>=old_threshold).

    The threshold is a parameter because strong competition entries trained with 58 or 59: the data holds
    few people over 60, and moving the border borrows some of the 58-59 year-olds into the scarce class.
    """
    if not 30 < old_threshold <= 120:
        raise LabelError(f"age threshold must be in 31..120, got {old_threshold}")
    if age < 0 or age > 120:
        raise LabelError(f"age {age} is out of range 0..120")
    if age < 30:
        return 0
    return 1 if age < old_threshold else 2


def parse_gender(text: str) -> int:
    t = text.strip().lower()
    if t not in GENDER_NAMES:
        raise LabelError(f"gender must be 'male' or 'female', got {text!r}")
    return GENDER_NAMES.index(t)


@dataclass(frozen=True)
class Person:
    id: str
    gender: int
    race: str
    age_years: int

    def age(self, old_threshold: int = 60) -> int:
        return age_group(self.age_years, old_threshold)


def parse_person_dir(name: str) -> Person:
    """'000001_female_Asian_45' -> Person. Raises LabelError naming the folder when it does not parse."""
    m = _PERSON_RE.match(name)
    if not m:
        raise LabelError(f"folder name {name!r} does not parse as <id>_<gender>_<race>_<age>")
    try:
        gender = parse_gender(m["gender"])
        age = int(m["age"])
        age_group(age)
    except LabelError as exc:
        raise LabelError(f"folder name {name!r}: {exc}") from None
    return Person(m["id"], gender, m["race"], age)


def parse_mask_stem(filename: str) -> int:
    """'mask3.jpg' / 'incorrect_mask.png' / 'normal.jpeg' -> mask state 0/1/2."""
    p = Path(filename)
    stem, suffix = p.stem, p.suffix.lower()
    if suffix and suffix not in IMAGE_SUFFIXES:
        raise LabelError(f"file {filename!r}: suffix {p.suffix!r} is not an image suffix")
    if stem not in STEM_TO_MASK:
        raise LabelError(f"file {filename!r}: stem {stem!r} is not one of {', '.join(STEM_TO_MASK)}")
    return STEM_TO_MASK[stem]
