"""Near-duplicate groups by difference hash (dHash), mirror images included.

Public face-mask sets hold the same photo many times: resized, re-encoded and mirrored. A 64-bit dHash of
the 9x8 grey thumbnail changes little under resizing and JPEG; the hash of the mirrored image catches flips.
Images whose hashes (or one's hash and the other's mirror hash) differ in at most `max_bits` bits are joined
(union-find, so groups are transitive); a group then plays the role of a person in the validation split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_BITS = 6  # of 64: resized / re-encoded copies differ by 0-4 bits, different photos by ~20-40


def dhash(image: np.ndarray) -> int:
    """64-bit difference hash of a BGR or grey image."""
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def hashes(image: np.ndarray) -> tuple[int, int]:
    """(hash of the image, hash of its mirror image)."""
    return dhash(image), dhash(image[:, ::-1])


def _popcount(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    out = np.zeros(x.shape, np.int64)
    for shift in range(0, 64, 8):
        out += _BITS[((x >> np.uint64(shift)) & np.uint64(255)).astype(np.int64)]
    return out


_BITS = np.array([bin(i).count("1") for i in range(256)], np.int64)


def near_duplicate_groups(
    plain: Sequence[int], mirrored: Sequence[int], max_bits: int = MAX_BITS, chunk: int = 512
) -> list[int]:
    """Group index per image (0..G-1, in order of first appearance)."""
    h = np.array(plain, np.uint64)
    f = np.array(mirrored, np.uint64)
    parent = list(range(len(h)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(h), chunk):
        block = h[start : start + chunk, None]
        close = (_popcount(block ^ h[None, :]) <= max_bits) | (_popcount(block ^ f[None, :]) <= max_bits)
        for a, b in zip(*np.nonzero(close)):
            ra, rb = find(start + int(a)), find(int(b))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    roots: dict[int, int] = {}
    return [roots.setdefault(find(i), len(roots)) for i in range(len(h))]
