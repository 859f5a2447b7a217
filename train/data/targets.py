"""Training targets that may lack gender, age or both, carried in one integer per sample.

A fully labelled sample keeps its class 0..17 (mask*6 + gender*3 + age), so every existing path (the
competition, synthetic sets, metrics, plots) is unchanged. A sample with a missing task gets a code
>= PARTIAL_BASE that still holds what is known:

    code = PARTIAL_BASE + mask*12 + (gender+1)*4 + (age+1),   gender = -1 / age = -1: missing

`split_targets` turns either kind into (mask, gender, age) with -1 where the task is unknown, which is what
the masked loss and the per-task metrics read. One integer per sample keeps the Dataset, the sampler and
DDP's gather as they are, and lets any per-head loss (CE, focal, mixing) be masked in one place.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from engines.labels import NUM_CLASSES, encode, split_classes

PARTIAL_BASE = NUM_CLASSES
MISSING = -1
_T = TypeVar("_T")  # a NumPy array or a torch tensor of codes


def encode_target(mask: int, gender: int, age: int) -> int:
    """The class (0..17) when gender and age are known, else the partial code."""
    if gender >= 0 and age >= 0:
        return encode(mask, gender, age)
    return PARTIAL_BASE + mask * 12 + (gender + 1) * 4 + (age + 1)


def split_targets(codes: _T) -> tuple[_T, _T, _T]:
    """Codes -> (mask, gender, age) with -1 for a missing task; works on arrays and tensors alike."""
    full = codes < PARTIAL_BASE
    u = codes - PARTIAL_BASE
    m, g, a = split_classes(codes)  # the complete ones: the class schema's own arithmetic
    mask = m * full + (u // 12) * ~full
    gender = g * full + ((u % 12) // 4 - 1) * ~full
    age = a * full + (u % 4 - 1) * ~full
    return mask, gender, age


def is_full(codes: np.ndarray) -> np.ndarray:
    return np.asarray(codes) < PARTIAL_BASE


def strata(codes: np.ndarray) -> np.ndarray:
    """A stratum per sample for the split: the class when complete, else 18 + mask state (21 strata)."""
    codes = np.asarray(codes, np.int64)
    mask, _, _ = split_targets(codes)
    return np.where(codes < PARTIAL_BASE, codes, PARTIAL_BASE + mask)


NUM_STRATA = PARTIAL_BASE + 3
