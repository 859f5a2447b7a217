"""Masks of the bank (train.synth.mask_bank: cut from real photos) warped onto a bare face, and the
placements both renderers share: worn (over the nose), under the nose, on the chin, hanging from one ear.

A placement is where the mask's top edge goes in the target's face frame (mask_render.face_frame: units of
the eye distance from the eyes' midpoint, v down): worn, on the nose bridge (above the nose tip); under the
nose, between the nose tip and the upper lip (the nostrils free, the mouth and chin covered); on the chin,
under the mouth landmarks. Worn and under the nose, the height is held on the nose tip's vertical line, not
the face's middle (a turned face's nose is off it). The mask is scaled to the target face's width by an
affine map from the source face's frame to the target's (the source's eye line and face box onto the
target's). Hanging from an ear: placed under the nose, then turned 30-70 degrees about the ear point of one
side, as a mask held by one loop falls.

The mask takes the target's look, so that no trace of the renderer tells the class: its light (luminance
and colour cast of the target's lower face against the source's skin, and the slow light gradient across
it), the target's sharpness (the source face's sharpness falls with blur along a curve stored in the bank;
the mask is blurred by the sigma at which the source reaches the target's sharpness), soft alpha edges, a
contact shadow, and the target's noise. The drawn masks (mask_render) are given the ear placement by the
same turn (`turn_layer`).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from train.synth.mask_bank import (
    BLUR_SIGMAS,
    CANON_D,
    CANON_EYES,
    CANON_SIZE,
    BankMask,
    sharpness,
    similarity,
)
from train.synth.mask_render import (
    FaceFrame,
    MaskStyle,
    _contact_shadow,
    face_frame,
    mask_layer,
)

CUT_PLACEMENTS = ("over_nose", "under_nose", "chin", "ear")
INCORRECT_PLACEMENTS = ("under_nose", "chin", "ear")


def _to_image(ff: FaceFrame) -> np.ndarray:
    """3x3: face units -> image pixels."""
    m = np.eye(3)
    m[:2, 0] = ff.d * ff.u
    m[:2, 1] = ff.d * ff.v
    m[:2, 2] = ff.origin
    return m


def _affine(a: float, b: float, c: float, d: float, e: float, f: float) -> np.ndarray:
    return np.array([[a, b, c], [d, e, f], [0, 0, 1.0]])


def _turn(pivot: np.ndarray, degrees: float, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """3x3 in face units: turn by `degrees` about `pivot` (positive: the far side drops), then shift."""
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    px, py = pivot
    return (
        _affine(1, 0, px + shift[0], 0, 1, py + shift[1])
        @ _affine(c, -s, 0, s, c, 0)
        @ _affine(1, 0, -px, 0, 1, -py)
    )


def ear_turn(ff: FaceFrame, rng: np.random.Generator) -> np.ndarray:
    """3x3 in face units: a mask hanging from the ear of a random side, 30-70 degrees, pushed outwards."""
    side = -1 if rng.random() < 0.5 else 1
    edge = ff.left if side < 0 else ff.right
    pivot = np.array([edge * 0.95, ff.nose[1] * 0.7])
    degrees = float(rng.uniform(30, 70)) * -side
    return _turn(pivot, degrees, (side * float(rng.uniform(0.0, 0.15)), 0.0))


def top_edge(ff: FaceFrame, placement: str, rng: np.random.Generator) -> float:
    """v (face units) of the mask's top edge at the middle of the face, for a placement."""
    em, nv, chin = ff.mouth[1], ff.nose[1], ff.chin
    if placement == "over_nose":
        return nv * float(rng.uniform(0.3, 0.5))  # on the nose bridge
    if placement == "under_nose":
        return nv + (em - nv) * float(rng.uniform(0.3, 0.5))  # between the nostrils and the upper lip
    if placement == "ear":  # where it starts before it is hung from the ear: under the nose
        return top_edge(ff, "under_nose", rng)
    return em + (chin - em) * float(rng.uniform(0.25, 0.4))


def _top_at(mask: BankMask, u: float) -> float:
    """v (source face units) of the mask's top edge at u: a worn or under-the-nose mask's height is held
    at the target's nose (on a face turned aside the nose tip is off the face's middle, where an arched top
    edge is lower: held at the middle, a worn mask there left the nose tip out). The meta's middle `top`
    where the mask has no alpha at u."""
    x0, y0 = mask.meta["offset"]
    cx, cy = CANON_EYES
    alpha = mask.rgba[..., 3]
    col = int(round(u * CANON_D + cx - x0))
    if 0 <= col < alpha.shape[1]:
        rows = np.flatnonzero(alpha[:, col] > 127)
        if len(rows):
            return (float(rows[0]) + y0 - cy) / CANON_D
    return float(mask.meta["top"])


def cut_transform(
    ff: FaceFrame, mask: BankMask, placement: str, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """2x3 from the mask's PNG pixels to the target image's, and the scale (target px per PNG px)."""
    if placement not in CUT_PLACEMENTS:
        raise ValueError(f"placement must be one of {CUT_PLACEMENTS}, got {placement!r}")
    m = mask.meta
    x0, y0 = m["offset"]
    cx, cy = CANON_EYES
    png_to_src = _affine(1 / CANON_D, 0, (x0 - cx) / CANON_D, 0, 1 / CANON_D, (y0 - cy) / CANON_D)
    src_w = max(float(m["right"]) - float(m["left"]), 0.5)
    src_c = 0.5 * (float(m["left"]) + float(m["right"]))
    width = ff.right - ff.left
    k = {"over_nose": (0.9, 1.04), "under_nose": (0.88, 1.0), "chin": (0.75, 0.9), "ear": (0.78, 0.95)}
    sx = width * float(rng.uniform(*k[placement])) / src_w
    sy = sx * (float(rng.uniform(0.6, 0.8)) if placement == "chin" else float(rng.uniform(0.92, 1.08)))
    centre = 0.5 * (ff.left + ff.right) + float(rng.normal(0, 0.03))
    top = top_edge(ff, placement, rng)
    held = placement in ("over_nose", "under_nose")  # on the chin and off an ear the nose is free anyway
    src_top = _top_at(mask, (ff.nose[0] - centre) / sx + src_c) if held else float(m["top"])
    src_to_tgt = _affine(sx, 0, centre - sx * src_c, 0, sy, top - sy * src_top)
    full = _to_image(ff) @ (ear_turn(ff, rng) if placement == "ear" else np.eye(3)) @ src_to_tgt @ png_to_src
    return full[:2], ff.d / CANON_D * sx


def _target_blur(image: np.ndarray, ff: FaceFrame, mask: BankMask) -> float:
    """Gaussian sigma (target px) that brings the mask to the target face's sharpness."""
    curve = [float(v) for v in mask.meta.get("sharpness") or []]
    if len(curve) != len(BLUR_SIGMAS):
        return 0.0
    # the target's upper face in the canonical frame (the scale the curve was measured at)
    src = np.array([ff.to_image(np.array([-0.5, 0.0])), ff.to_image(np.array([0.5, 0.0]))])
    cx, cy = CANON_EYES
    dst = np.array([[cx - CANON_D / 2, cy], [cx + CANON_D / 2, cy]])
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    canon = cv2.warpAffine(grey, similarity(src, dst), CANON_SIZE, borderMode=cv2.BORDER_REPLICATE)
    region = np.zeros(canon.shape, bool)
    d = CANON_D
    region[int(cy - 0.6 * d) : int(cy + 0.3 * d), int(cx - 0.9 * d) : int(cx + 0.9 * d)] = True
    target = sharpness(canon, region)
    if target >= curve[0]:
        return 0.0
    sigma_c = float(np.interp(target, curve[::-1], BLUR_SIGMAS[::-1]))
    return sigma_c * ff.d / CANON_D


def _noise_sigma(grey: np.ndarray, region: np.ndarray) -> float:
    """The image's noise in a region: MAD of the residual after a 3x3 median."""
    if region.sum() < 20:
        return 0.0
    res = grey.astype(np.float32) - cv2.medianBlur(grey, 3).astype(np.float32)
    return float(1.4826 * np.median(np.abs(res[region])))


def cut_layer(
    image: np.ndarray,
    landmarks: np.ndarray,
    box: Sequence[float] | None,
    mask: BankMask,
    placement: str,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The bank mask on the image's face as a layer: (colour float32 [H,W,3], alpha float32 [H,W])."""
    H, W = image.shape[:2]
    ff = face_frame(landmarks, box)
    m, _ = cut_transform(ff, mask, placement, rng)
    rgba = mask.rgba.astype(np.float32)
    colour = cv2.warpAffine(rgba[..., :3], m, (W, H), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(rgba[..., 3] / 255.0, m, (W, H), flags=cv2.INTER_LINEAR)
    inside = alpha > 0.5
    if not inside.any():
        return colour, alpha
    # light: the target's lower face (what the mask covers, bare in the target) against the source's skin
    under = image[inside].astype(np.float32)
    skin = np.maximum(np.asarray(mask.meta.get("skin_bgr", under.mean(axis=0)), np.float32), 1.0)
    tgt = np.maximum(under.mean(axis=0), 1.0)
    luma = np.array([0.114, 0.587, 0.299], np.float32)
    gain = float(np.clip((tgt @ luma) / (skin @ luma), 0.55, 1.6))
    cast = np.clip((tgt / (tgt @ luma)) / (skin / (skin @ luma)), 0.88, 1.12) ** 0.5
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    slow = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), max(ff.d * 0.45, 1.0)) + 1.0
    slow_mean = float(slow[inside].mean())
    colour = colour * gain * cast * (np.clip(slow / slow_mean, 0.6, 1.4) ** 0.5)[..., None]
    # sharpness, soft edges, contact shadow, noise
    sigma = _target_blur(image, ff, mask)
    if sigma > 0.3:
        colour = cv2.GaussianBlur(colour, (0, 0), sigma)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.5, 0.01 * ff.d, sigma))
    want = _noise_sigma(grey, inside)
    have = _noise_sigma(np.clip(colour.mean(axis=2), 0, 255).astype(np.uint8), inside)
    extra = float(np.sqrt(max(want**2 - have**2, 0.0)))
    if extra > 0.2:
        colour += rng.normal(0, extra, (H, W, 1)).astype(np.float32)
        colour += rng.normal(0, extra * 0.3, (H, W, 3)).astype(np.float32)
    return np.clip(colour, 0, 255), np.clip(alpha, 0, 1)


def turn_layer(
    colour: np.ndarray, alpha: np.ndarray, ff: FaceFrame, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A full-image layer hung from one ear (ear_turn, in image pixels)."""
    H, W = alpha.shape
    to_img = _to_image(ff)
    m = (to_img @ ear_turn(ff, rng) @ np.linalg.inv(to_img))[:2]
    colour = cv2.warpAffine(colour, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return colour, cv2.warpAffine(alpha, m, (W, H), flags=cv2.INTER_LINEAR)


def drawn_layer(
    image: np.ndarray,
    landmarks: np.ndarray,
    box: Sequence[float] | None,
    placement: str,
    rng: np.random.Generator,
    style: MaskStyle | None = None,
    texture: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """mask_render's drawn mask as a full-image layer; "ear": drawn under the nose, then hung from one ear."""
    H, W = image.shape[:2]
    colour_roi, alpha_roi, (x0, y0, x1, y1), _ = mask_layer(
        image, landmarks, box, "under_nose" if placement == "ear" else placement, rng, style, texture
    )
    colour = np.zeros((H, W, 3), np.float32)
    alpha = np.zeros((H, W), np.float32)
    if alpha_roi.size:
        colour[y0:y1, x0:x1], alpha[y0:y1, x0:x1] = colour_roi, alpha_roi
    if placement == "ear":
        colour, alpha = turn_layer(colour, alpha, face_frame(landmarks, box), rng)
    return colour, alpha


def compose(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The image with the layer blended in over a soft contact shadow."""
    out = image.astype(np.float32) * (1.0 - 0.3 * _contact_shadow(alpha, landmarks))[..., None]
    a = alpha[..., None]
    return np.clip(out * (1 - a) + colour * a + 0.5, 0, 255).astype(np.uint8)


def draw_placed(
    image: np.ndarray,
    landmarks: np.ndarray,
    box: Sequence[float] | None,
    placement: str,
    rng: np.random.Generator,
    *,
    bank_mask: BankMask | None = None,
    style: MaskStyle | None = None,
    texture: np.ndarray | None = None,
) -> np.ndarray:
    """A copy of `image` with a mask at `placement` (CUT_PLACEMENTS): a bank mask when given, else drawn."""
    if placement not in CUT_PLACEMENTS:
        raise ValueError(f"placement must be one of {CUT_PLACEMENTS}, got {placement!r}")
    if bank_mask is not None:
        colour, alpha = cut_layer(image, landmarks, box, bank_mask, placement, rng)
    else:
        colour, alpha = drawn_layer(image, landmarks, box, placement, rng, style, texture)
    return compose(image, colour, alpha, landmarks)
