"""Per-sample transforms: crop (BGR uint8, 384x512) -> network input (float32 [3, H, W], normalised RGB).

The evaluation transform IS engines.preprocess.preprocess, the function every inference backend runs, so
validation scores what the monitor will compute. The training transform resizes first (augmenting a
192x256 image costs a quarter of a 384x512 one; `mask-train bench-loader` measures it) and then applies
albumentations chosen for faces at an entrance: mirror, a small shift / scale / tilt, light and colour,
blur, sensor noise, JPEG artefacts, a small occluder. Nothing that makes an impossible face: no
vertical flip, no large rotation, no elastic or grid warps, no channel shuffles or inversions.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from engines.config import AugmentConfig
from engines.preprocess import RESIZE_INTERPOLATION, preprocess

ORDERS = ("resize_first", "augment_first")


def normalize_rgb(rgb: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """RGB uint8 HxWx3 -> float32 [3, H, W]: the arithmetic of engines.preprocess, for an RGB image."""
    m = np.asarray(mean, np.float32).reshape(3, 1, 1)
    s = np.asarray(std, np.float32).reshape(3, 1, 1)
    x = rgb.transpose(2, 0, 1).astype(np.float32) * (1.0 / (255.0 * s))
    return x - m / s


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return img if img.shape[:2] == (h, w) else cv2.resize(img, (w, h), interpolation=RESIZE_INTERPOLATION)


def face_augmentations(cfg: AugmentConfig):
    """The albumentations pipeline (RGB in, RGB out, same size)."""
    import albumentations as A

    return A.Compose(
        [
            A.HorizontalFlip(p=cfg.hflip),
            A.Affine(
                translate_percent=(-0.06, 0.06),
                scale=(0.9, 1.1),
                rotate=(-cfg.max_rotate, cfg.max_rotate),
                border_mode=cv2.BORDER_REPLICATE,
                p=cfg.shift_scale_rotate,
            ),
            A.OneOf(
                [
                    A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25),
                    A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=25, val_shift_limit=20),
                    A.RandomGamma(gamma_limit=(80, 120)),
                ],
                p=cfg.color,
            ),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7))], p=cfg.blur),
            A.GaussNoise(std_range=(0.02, 0.06), p=cfg.noise),
            A.ImageCompression(quality_range=(40, 90), p=cfg.jpeg),
            A.CoarseDropout(
                num_holes_range=(1, 3),
                hole_height_range=(0.06, 0.15),
                hole_width_range=(0.06, 0.15),
                fill="random_uniform",
                p=cfg.dropout,
            ),
        ]
    )


class EvalTransform:
    """Exactly what inference does to a crop."""

    def __init__(self, input_size: tuple[int, int], mean: Sequence[float], std: Sequence[float]) -> None:
        self.input_size, self.mean, self.std = tuple(input_size), tuple(mean), tuple(std)

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        return preprocess([bgr], self.input_size, self.mean, self.std)[0]

    def set_seed(self, seed: int) -> None:
        pass


class TrainTransform:
    """Resize, augment (albumentations, RGB), normalise. `order='augment_first'` exists for the benchmark."""

    def __init__(
        self,
        input_size: tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
        cfg: AugmentConfig,
        order: str = "resize_first",
    ) -> None:
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}")
        self.input_size, self.mean, self.std, self.order = tuple(input_size), tuple(mean), tuple(std), order
        self.augment = face_augmentations(cfg) if cfg.enabled else None

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        img = resize(bgr, self.input_size) if self.order == "resize_first" else bgr
        rgb = np.ascontiguousarray(img[:, :, ::-1])
        if self.augment is not None:
            rgb = self.augment(image=rgb)["image"]
        return normalize_rgb(resize(rgb, self.input_size), self.mean, self.std)

    def set_seed(self, seed: int) -> None:
        """albumentations keeps its own random state: each DataLoader worker seeds it (train.data.dataset)."""
        if self.augment is not None:
            self.augment.set_random_seed(seed)
