"""Per-sample transforms: crop (BGR uint8, 384x512) -> network input (float32 [3, H, W], normalised RGB).

The evaluation transform IS engines.preprocess.preprocess, the function every inference backend runs, so
validation scores what the monitor will compute. The training transform resizes first (augmenting a
192x256 image costs a quarter of a 384x512 one; `mask-train bench-loader` measures it) and then applies
albumentations chosen for faces at an entrance: mirror, a small shift / scale / tilt, light and colour,
blur, sensor noise, JPEG artefacts, a small occluder, and (augment.surroundings) the face's surroundings
replaced by a plain noisy background, as around a tight photo pasted in a frame. Faces as a camera sees
them, before those: the face box re-cut from the cached crop's surroundings, moved and scaled by up to 15%
(augment.box_jitter: the monitor cuts around whatever box the detector found), a neighbour's face in the
margin (augment.crowd: another crop's face, as a crowd puts one beside or below), and the face shrunk to
40-80 px tall and enlarged back with blur, noise and JPEG at the small size (augment.small_face). Nothing
that makes an impossible face: no vertical flip, no large rotation, no elastic or grid warps, no channel
shuffles or inversions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np

from engines.config import CropConfig
from engines.faces import Box, crop_box, crop_region
from engines.preprocess import RESIZE_INTERPOLATION, preprocess
from train.config import AugmentConfig

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


def jitter_box(face: Box, spread: float, rng: np.random.Generator) -> tuple[Box, Box]:
    """A new place for the face in the crop: its box scaled by up to +-spread and its centre shifted by up to
    +-spread of its size. Returns (the region of the source crop to cut, as fractions of it; where the face
    box lands in the cut, as fractions of it): cutting `region` puts the labelled face exactly at the second.
    Why: the monitor cuts around whatever box the detector gives, and the state must not hang on it."""
    fx1, fy1, fx2, fy2 = face
    fw, fh = fx2 - fx1, fy2 - fy1
    z = rng.uniform(1.0 - spread, 1.0 + spread)
    cx = (fx1 + fx2) / 2 + rng.uniform(-spread, spread) * fw
    cy = (fy1 + fy2) / 2 + rng.uniform(-spread, spread) * fh
    moved = (cx - fw * z / 2, cy - fh * z / 2, cx + fw * z / 2, cy + fh * z / 2)
    # the cut maps output fraction o to source fraction r0 + o / z, which takes `moved` onto `face`
    rx, ry = fx1 - moved[0] / z, fy1 - moved[1] / z
    return (rx, ry, rx + 1.0 / z, ry + 1.0 / z), moved


def cut(img: np.ndarray, region: Box, size: tuple[int, int], border: str = "replicate") -> np.ndarray:
    """`region` (fractions of img) cut out, padded by `border` where it leaves img, resized to (h, w)."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = region
    geom = CropConfig(width=size[1], height=size[0], border=border)
    return crop_region(img, (x1 * w, y1 * h, x2 * w, y2 * h), geom)


def camera_degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a small face suffers at the camera's own resolution: lens / focus blur, sensor noise, the
    stream's JPEG (each half of the time)."""
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.0))
    if rng.random() < 0.5:
        img = np.clip(img + rng.normal(0.0, rng.uniform(2.0, 8.0), img.shape), 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.uniform(30, 80))])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img


def neighbour_patch(img: np.ndarray, face: Box) -> np.ndarray:
    """The face of a crop with a little of its surroundings (more below: a mask reaches under the chin), to be
    pasted into other crops as a neighbour."""
    h, w = img.shape[:2]
    fx1, fy1, fx2, fy2 = face
    fw, fh = fx2 - fx1, fy2 - fy1
    x1, x2 = max(int(w * (fx1 - 0.1 * fw)), 0), min(int(np.ceil(w * (fx2 + 0.1 * fw))), w)
    y1, y2 = max(int(h * (fy1 - 0.1 * fh)), 0), min(int(np.ceil(h * (fy2 + 0.25 * fh))), h)
    return img[y1:y2, x1:x2].copy()


def paste_neighbour(img: np.ndarray, face: Box, patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another person's face (`patch`) pasted beside or below the face, in the crop's margin and never over
    the face box, as a neighbour in a crowd is caught by a crop cut around one face: a neighbour's mask beside
    a bare face must not make it masked. Its edges are feathered by an elliptic mask."""
    h, w = img.shape[:2]
    fx1, fy1, fx2, fy2 = (
        int(w * face[0]),
        int(h * face[1]),
        int(np.ceil(w * face[2])),
        int(np.ceil(h * face[3])),
    )
    fw, fh = fx2 - fx1, fy2 - fy1
    ph = max(int(fh * rng.uniform(0.7, 1.1) * 1.35), 4)  # the patch is its face and 0.35 of it around
    pw = max(int(ph * patch.shape[1] / max(patch.shape[0], 1)), 4)
    gap = int(rng.uniform(0.0, 0.1) * fw)
    side = rng.choice(("left", "right", "below"))
    if side == "left":
        x2 = fx1 - gap
        x1, y1 = x2 - pw, fy1 + int(rng.uniform(-0.3, 0.5) * fh)
    elif side == "right":
        x1, y1 = fx2 + gap, fy1 + int(rng.uniform(-0.3, 0.5) * fh)
    else:
        x1, y1 = fx1 + int(rng.uniform(-0.9, 0.9) * fw) - (pw - fw) // 2, fy2 + gap
    x2, y2 = x1 + pw, y1 + ph
    # the part inside the image and outside the face box
    cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if side == "left":
        cx2 = min(cx2, fx1)
    elif side == "right":
        cx1 = max(cx1, fx2)
    else:
        cy1 = max(cy1, fy2)
    if cx1 >= cx2 or cy1 >= cy2:
        return img
    scaled = cv2.resize(patch, (pw, ph), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
    r = ((xx - (pw - 1) / 2) / (pw / 2)) ** 2 + ((yy - (ph - 1) / 2) / (ph / 2)) ** 2
    alpha = np.clip((1.0 - r) / 0.25, 0.0, 1.0)[:, :, None]
    sub = (slice(cy1 - y1, cy2 - y1), slice(cx1 - x1, cx2 - x1))
    out = img.copy()
    region = out[cy1:cy2, cx1:cx2].astype(np.float32)
    blended = alpha[sub] * scaled[sub].astype(np.float32) + (1.0 - alpha[sub]) * region
    out[cy1:cy2, cx1:cx2] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
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
        if not cfg.enabled:
            cfg = replace(cfg, surroundings=0.0, box_jitter=0.0, crowd=0.0, small_face=0.0)
        self.cfg = cfg
        self.surroundings = cfg.surroundings
        self.border = crop.border
        self.face = face_in_crop(crop)
        self.rng = np.random.default_rng()
        self.neighbours: deque[np.ndarray] = deque(maxlen=32)  # faces of earlier crops, for `crowd`

    def camera(self, bgr: np.ndarray) -> tuple[np.ndarray, Box]:
        """The crop at the size augmentation runs at, with the face box re-cut (box_jitter) and shrunk to a
        small face's pixels and back (small_face); returns it and where the labelled face now is."""
        cfg, rng = self.cfg, self.rng
        out_size = self.input_size if self.order == "resize_first" else bgr.shape[:2]
        region, face = None, self.face
        if cfg.box_jitter and rng.random() < cfg.box_jitter:
            region, face = jitter_box(self.face, cfg.box_jitter_range, rng)
        low = None
        if cfg.small_face and rng.random() < cfg.small_face:
            # the whole cut at the size where the face is small_face_px tall, degraded there, enlarged back
            low_h = int(round(rng.uniform(*cfg.small_face_px) / (face[3] - face[1])))
            low_h = min(low_h, out_size[0])
            low = (max(low_h, 2), max(int(round(low_h * out_size[1] / out_size[0])), 2))
        if region is None and low is None:
            return resize(bgr, out_size), face
        img = cut(bgr, region or (0.0, 0.0, 1.0, 1.0), low or out_size, self.border)
        if low is not None:
            img = camera_degrade(img, rng)
            img = cv2.resize(img, (out_size[1], out_size[0]), interpolation=cv2.INTER_LINEAR)
        return img, face

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        img, face = self.camera(bgr)
        if self.surroundings and self.rng.random() < self.surroundings:
            img = replace_surroundings(img, face, self.rng)
        if self.cfg.crowd:
            patch = neighbour_patch(img, face)
            if self.neighbours and self.rng.random() < self.cfg.crowd:
                other = self.neighbours[int(self.rng.integers(len(self.neighbours)))]
                img = paste_neighbour(img, face, other, self.rng)
            self.neighbours.append(patch)
        rgb = np.ascontiguousarray(img[:, :, ::-1])
        if self.augment is not None:
            rgb = self.augment(image=rgb)["image"]
        return normalize_rgb(resize(rgb, self.input_size), self.mean, self.std)

    def set_seed(self, seed: int) -> None:
        """albumentations keeps its own random state: each DataLoader worker seeds it (train.data.dataset)."""
        self.rng = np.random.default_rng(seed)
        self.neighbours.clear()
        if self.augment is not None:
            self.augment.set_random_seed(seed)
