"""Per-sample transforms: crop (BGR uint8, 384x512) -> network input (float32 [3, H, W], normalised RGB).

The evaluation transform IS engines.preprocess.preprocess, the function every inference backend runs, so
validation scores what the monitor will compute. The training transform resizes first (augmenting a
192x256 image costs a quarter of a 384x512 one; `mask-train bench-loader` measures it) and then applies
albumentations chosen for faces at an entrance: mirror, a small shift / scale / tilt, light and colour,
blur, sensor noise, JPEG artefacts, a small occluder, and (augment.surroundings) the face's surroundings
replaced by a plain noisy background, as around a tight photo pasted in a frame. Nothing that makes an
impossible face: no vertical flip, no large rotation, no elastic or grid warps, no channel shuffles or
inversions.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from engines.config import AugmentConfig, CropConfig
from engines.faces import Box, crop_box
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


FACE_ASPECT = 1.2  # an MTCNN face box is about 1.2 times as tall as it is wide


def face_in_crop(geom: CropConfig = CropConfig()) -> Box:
    """Where crop_face puts a typical face box inside its crop, as fractions of the crop's width and height
    (the crop is cut around the face box, so this is the same for every crop of one geometry)."""
    x1, y1, x2, y2 = crop_box((0.0, 0.0, 1.0, FACE_ASPECT), geom)
    w, h = x2 - x1, y2 - y1
    return -x1 / w, -y1 / h, (1.0 - x1) / w, (FACE_ASPECT - y1) / h


def replace_surroundings(img: np.ndarray, face: Box, rng: np.random.Generator) -> np.ndarray:
    """Keep a random rectangle around the face (at most a little of its sides and forehead cut, never its
    mouth and chin, where a mask sits) and paint the rest a plain colour or gradient with sensor noise.

    Why: the public photos are often tight crops whose surroundings in training are replicated edge pixels;
    pasted before a wall or into a frame, a bare face then met a plain region under its chin that the model
    had only seen as fabric, and was read as masked."""
    h, w = img.shape[:2]
    fx1, fy1, fx2, fy2 = face
    fw, fh = fx2 - fx1, fy2 - fy1
    x1 = int(w * rng.uniform(0.0, max(fx1 + 0.05 * fw, 0.0)))
    x2 = int(np.ceil(w * rng.uniform(min(fx2 - 0.05 * fw, 1.0), 1.0)))
    y1 = int(h * rng.uniform(0.0, max(fy1 + 0.2 * fh, 0.0)))
    y2 = int(np.ceil(h * rng.uniform(min(fy2 + 0.1 * fh, 1.0), 1.0)))
    colour = rng.uniform(20, 235, 3)
    if rng.random() < 0.3:  # a gradient (light falling on a wall), across or down
        other = rng.uniform(20, 235, 3)
        t = np.linspace(0.0, 1.0, w if rng.random() < 0.5 else h, dtype=np.float32)
        ramp = t[None, :, None] if len(t) == w else t[:, None, None]
        bg = colour * (1 - ramp) + other * ramp
    else:
        bg = np.broadcast_to(colour, img.shape)
    bg = bg + rng.normal(0.0, rng.uniform(0.0, 15.0), img.shape)
    out = cv2.GaussianBlur(np.clip(bg, 0, 255).astype(np.uint8), (5, 5), 0)
    out[y1:y2, x1:x2] = img[y1:y2, x1:x2]
    return out


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
        crop: CropConfig = CropConfig(),
    ) -> None:
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}")
        self.input_size, self.mean, self.std, self.order = tuple(input_size), tuple(mean), tuple(std), order
        self.augment = face_augmentations(cfg) if cfg.enabled else None
        self.surroundings = cfg.surroundings if cfg.enabled else 0.0
        self.face = face_in_crop(crop)
        self.rng = np.random.default_rng()

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        img = resize(bgr, self.input_size) if self.order == "resize_first" else bgr
        if self.surroundings and self.rng.random() < self.surroundings:
            img = replace_surroundings(img, self.face, self.rng)
        rgb = np.ascontiguousarray(img[:, :, ::-1])
        if self.augment is not None:
            rgb = self.augment(image=rgb)["image"]
        return normalize_rgb(resize(rgb, self.input_size), self.mean, self.std)

    def set_seed(self, seed: int) -> None:
        """albumentations keeps its own random state: each DataLoader worker seeds it (train.data.dataset)."""
        self.rng = np.random.default_rng(seed)
        if self.augment is not None:
            self.augment.set_random_seed(seed)
