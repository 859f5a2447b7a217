"""Validation split and K folds: grouped by person (one person's 7 photos never straddle two parts) and
stratified by class (each part gets its share of every class, the scarce >=60 ones included).

The assignment is greedy, as scikit-learn's StratifiedGroupKFold: people with the rarest classes first,
each to the part whose class proportions it disturbs least. Parts may have unequal target sizes
(a 0.2 validation split is two parts weighted 0.8 / 0.2). Stratification uses the competition's labels
(age >= 60), so changing the training age threshold does not move the split.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from engines.errors import UserError
from train.data.cache import Sample
from train.data.targets import NUM_STRATA, strata


def person_counts(samples: Sequence[Sample]) -> tuple[list[str], np.ndarray]:
    """(person ids, counts per stratum [P, 21]) in a stable order: the 18 classes, then the mask state of
    samples without gender or age (imported photos; their `person` is a near-duplicate group)."""
    per: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(NUM_STRATA, np.int64))
    for s in samples:
        per[s.person][int(strata(np.array([s.cls()]))[0])] += 1
    people = sorted(per)
    return people, np.stack([per[p] for p in people]) if people else np.zeros((0, NUM_STRATA), np.int64)


def _spread(fold_counts: np.ndarray, total: np.ndarray, weights: np.ndarray) -> float:
    """How unevenly the classes are spread: std over parts of (class share / target share), mean over
    classes."""
    present = total > 0
    share = fold_counts[:, present] / total[present] / weights[:, None]
    return float(share.std(axis=0).mean())


def assign_groups(counts: np.ndarray, weights: Sequence[float], seed: int = 0) -> np.ndarray:
    """counts [G, C] per group -> part index per group, parts sized by `weights`."""
    counts = np.asarray(counts, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    total = counts.sum(axis=0)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(counts))
    rarity = (counts / np.maximum(total, 1)).max(axis=1)
    order = order[np.argsort(-rarity[order], kind="stable")]
    fold_counts = np.zeros((len(w), counts.shape[1]))
    out = np.empty(len(counts), dtype=np.int64)
    for g in order:
        best, best_key = 0, None
        for k in range(len(w)):
            fold_counts[k] += counts[g]
            key = (_spread(fold_counts, total, w), fold_counts[k].sum() / w[k])
            fold_counts[k] -= counts[g]
            if best_key is None or key < best_key:
                best, best_key = k, key
        fold_counts[best] += counts[g]
        out[g] = best
    return out


def kfold_people(samples: Sequence[Sample], k: int, seed: int = 0) -> list[set[str]]:
    """K disjoint sets of person ids that together cover everyone."""
    people, counts = person_counts(samples)
    if len(people) < k:
        raise UserError(f"{k} folds need at least {k} people; the data has {len(people)}")
    parts = assign_groups(counts, [1.0] * k, seed)
    return [{p for p, f in zip(people, parts) if f == i} for i in range(k)]


def holdout_people(samples: Sequence[Sample], val_fraction: float, seed: int = 0) -> set[str]:
    """The validation people for a `val_fraction` split (empty for 0)."""
    people, counts = person_counts(samples)
    if val_fraction <= 0 or len(people) < 2:
        return set()
    parts = assign_groups(counts, [1.0 - val_fraction, val_fraction], seed)
    val = {p for p, f in zip(people, parts) if f == 1}
    return val or {people[int(np.argmin(counts.sum(1)))]}
