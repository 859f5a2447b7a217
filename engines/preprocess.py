"""Crops -> network input. Training's transform and every inference backend resize the same way."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# Crops (384x512) are shrunk to the network size; INTER_AREA avoids aliasing. Training uses the same.
RESIZE_INTERPOLATION = cv2.INTER_AREA


def preprocess(
    crops: Sequence[np.ndarray], input_size: tuple[int, int], mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """BGR uint8 crops -> float32 [N, 3, H, W], RGB, normalised. `input_size` is (height, width)."""
    h, w = input_size
    out = np.empty((len(crops), 3, h, w), dtype=np.float32)
    scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float32))).reshape(3, 1, 1)
    shift = (np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)).reshape(3, 1, 1)
    for i, crop in enumerate(crops):
        if crop.shape[:2] != (h, w):
            crop = cv2.resize(crop, (w, h), interpolation=RESIZE_INTERPOLATION)
        rgb = crop[:, :, ::-1].transpose(2, 0, 1)
        np.multiply(rgb, scale, out=out[i], casting="unsafe")
        out[i] -= shift
    return out
