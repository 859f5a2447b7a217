"""Draw a plausible face mask on a photo from MTCNN's five landmarks.

The mask is built in a face frame (origin between the eyes, x along the eye line, y down; lengths in
units of the eye distance), so it follows the face's roll, scale and (roughly) yaw. Its outline is a top
edge (a tent over the nose bridge, or flat under the nose / on the chin) and a rounded bottom edge under
the chin; a texture (procedural fabric with pleats, seams, patterns, or a caller's image) is warped onto
that shape piecewise-affinely, shaded like a curved surface, matched to the photo's light and given ear
loops. Used by `mask-train synth` and by samples/make_entrance_video.py.

Everything here takes and returns BGR uint8 images (OpenCV's order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

STATES = ("wear", "incorrect", "not_wear")
PLACEMENTS = (
    "over_nose",
    "under_nose",
    "chin",
)  # where the top edge sits; "incorrect" is one of the last two

# name -> (kind, base colour BGR, second colour BGR or None, pattern, weight when drawn at random)
PALETTE: dict[str, tuple[str, tuple[int, int, int], tuple[int, int, int] | None, str, float]] = {
    "surgical_blue": ("surgical", (222, 196, 138), None, "none", 0.26),
    "surgical_light_blue": ("surgical", (236, 214, 172), None, "none", 0.08),
    "surgical_white": ("surgical", (236, 236, 232), None, "none", 0.10),
    "surgical_green": ("surgical", (176, 196, 132), None, "none", 0.04),
    "surgical_pink": ("surgical", (206, 186, 236), None, "none", 0.03),
    "cloth_black": ("cloth", (40, 40, 42), None, "none", 0.14),
    "cloth_grey": ("cloth", (138, 136, 132), None, "none", 0.08),
    "cloth_dark_grey": ("cloth", (82, 80, 78), None, "none", 0.05),
    "cloth_navy": ("cloth", (92, 52, 34), None, "none", 0.04),
    "cloth_beige": ("cloth", (168, 192, 212), None, "none", 0.03),
    "pattern_dots": ("cloth", (96, 56, 36), (232, 232, 232), "dots", 0.04),
    "pattern_stripes": ("cloth", (232, 232, 232), (52, 48, 170), "stripes", 0.04),
    "pattern_checks": ("cloth", (60, 60, 150), (40, 40, 40), "checks", 0.04),
    "pattern_camo": ("cloth", (80, 110, 96), (50, 70, 60), "blobs", 0.03),
}


@dataclass(frozen=True)
class MaskStyle:
    """How a mask looks. `kind` surgical: pleats, hems, white ear loops; cloth: centre seam, no pleats."""

    name: str = "surgical_blue"
    kind: str = "surgical"
    color: tuple[int, int, int] = (222, 196, 138)
    color2: tuple[int, int, int] | None = None
    pattern: str = "none"  # none | dots | stripes | checks | blobs
    straps: bool = True

    @classmethod
    def named(cls, name: str) -> MaskStyle:
        if name not in PALETTE:
            raise ValueError(f"unknown mask style {name!r}; one of {', '.join(PALETTE)}")
        kind, color, color2, pattern, _ = PALETTE[name]
        return cls(name, kind, color, color2, pattern)


def random_style(rng: np.random.Generator, names: Sequence[str] | None = None) -> MaskStyle:
    """A style drawn by the palette's weights, with its colour shifted a little (no two masks alike)."""
    names = list(names or PALETTE)
    w = np.array([PALETTE[n][4] for n in names], dtype=float)
    style = MaskStyle.named(names[int(rng.choice(len(names), p=w / w.sum()))])
    jitter = rng.normal(0, 6, 3)
    color = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(style.color, jitter))
    return replace(style, color=color)


# --- geometry ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceFrame:
    """The face's own axes from the landmarks: origin between the eyes, u along the eye line, v down."""

    origin: np.ndarray  # [2] image coordinates
    u: np.ndarray  # [2] unit vector, left eye -> right eye
    v: np.ndarray  # [2] unit vector, perpendicular, towards the mouth
    d: float  # eye distance in pixels (the unit of every length below)
    nose: np.ndarray  # [2] nose tip in face units
    mouth: np.ndarray  # [2] mouth centre in face units
    chin: float  # v of the chin in face units
    left: float  # u of the face's left / right edge at cheek height, face units
    right: float

    def to_image(self, pts: np.ndarray) -> np.ndarray:
        """[..., 2] face units -> [..., 2] image pixels."""
        pts = np.asarray(pts, dtype=np.float64)
        return self.origin + self.d * (pts[..., :1] * self.u + pts[..., 1:2] * self.v)

    @property
    def roll_degrees(self) -> float:
        return float(np.degrees(np.arctan2(self.u[1], self.u[0])))


def face_frame(landmarks: np.ndarray, box: Sequence[float] | None = None) -> FaceFrame:
    """Landmarks [5, 2] (left eye, right eye, nose, mouth left, mouth right) -> FaceFrame.

    The chin is not a landmark: it sits about 0.85 eye-to-mouth distances below the mouth, pulled towards
    the box's bottom when a box is given (MTCNN's box ends near the chin). The face's sides come from the
    eyes, widened on the side the nose turns away from (yaw).
    """
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    le, re, nose, ml, mr = lm
    origin = (le + re) / 2
    ex = re - le
    d = float(np.hypot(*ex))
    if d < 1.0:
        raise ValueError("landmarks: the eyes are less than a pixel apart")
    u = ex / d
    v = np.array([-u[1], u[0]])
    rel = lambda p: np.array([(p - origin) @ u, (p - origin) @ v]) / d  # noqa: E731
    nose_f, mouth_f = rel(nose), rel((ml + mr) / 2)
    em = max(mouth_f[1], 0.6)  # eye-to-mouth, face units (about 1.0-1.2 on a frontal face)
    nose_f[1] = float(np.clip(nose_f[1], 0.25 * em, 0.85 * em))
    mouth_f[1] = em
    chin = 1.85 * em
    if box is not None:
        x1, y1, x2, y2 = (float(b) for b in box)
        box_chin = rel(np.array([(x1 + x2) / 2, y2]))[1]
        chin = float(np.clip(0.5 * chin + 0.5 * box_chin, 1.6 * em, 2.1 * em))
    yaw = float(np.clip(nose_f[0] / 0.5, -0.7, 0.7))  # nose offset from the eyes' middle, -1..1 roughly
    left = -0.5 - 0.58 * float(np.clip(1 + 1.4 * yaw, 0.3, 1.9))
    right = 0.5 + 0.58 * float(np.clip(1 - 1.4 * yaw, 0.3, 1.9))
    return FaceFrame(origin, u, v, d, nose_f, mouth_f, chin, left, right)


@dataclass(frozen=True)
class MaskShape:
    """The mask's outline in face units: top and bottom edges sampled left to right."""

    top: np.ndarray  # [n, 2]
    bottom: np.ndarray  # [n, 2]
    placement: str

    def grid(self, ny: int) -> np.ndarray:
        """[ny, n, 2] points between the two edges (straight lines, slightly bulging sides)."""
        t = np.linspace(0.0, 1.0, ny)[:, None, None]
        pts = self.top[None] * (1 - t) + self.bottom[None] * t
        x = np.linspace(-1.0, 1.0, self.top.shape[0])[None, :, None]
        bulge = 0.05 * np.sin(np.pi * t) * x**3
        return pts + np.concatenate([bulge, np.zeros_like(bulge)], axis=-1)

    def outline(self) -> np.ndarray:
        g = self.grid(12)
        return np.concatenate([g[0], g[1:, -1], g[-1, ::-1], g[-2:0:-1, 0]])


def _edge(
    x: np.ndarray,
    left_u: float,
    centre_u: float,
    right_u: float,
    side_v: float,
    centre_v: float,
    profile: np.ndarray,
) -> np.ndarray:
    u = np.where(x < 0, centre_u + x * (centre_u - left_u), centre_u + x * (right_u - centre_u))
    return np.stack([u, side_v + (centre_v - side_v) * profile], axis=-1)


def mask_shape(ff: FaceFrame, placement: str, rng: np.random.Generator, n: int = 33) -> MaskShape:
    """Where the mask sits, for `placement` over_nose (worn), under_nose or chin, with a little randomness."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    em, nv, chin = ff.mouth[1], ff.nose[1], ff.chin
    nu, mu = ff.nose[0], ff.mouth[0]
    L, R = ff.left, ff.right
    x = np.linspace(-1.0, 1.0, n)
    if placement == "over_nose":
        top_c = nv * rng.uniform(0.28, 0.45)  # on the nose bridge
        top_s = nv * rng.uniform(0.78, 0.95)  # on the cheekbones, under the eyes
        top_u, width_top, width_bot = 0.55 * nu, 0.97, 0.86
        bot_c = chin + em * rng.uniform(0.04, 0.14)  # under the chin
        bot_s = em * rng.uniform(1.2, 1.4)  # jaw corners
        peak = rng.uniform(0.4, 0.55)
    elif placement == "under_nose":
        top_c = nv + (em - nv) * rng.uniform(0.35, 0.5)  # between the nostrils and the upper lip
        top_s = top_c + em * rng.uniform(0.06, 0.14)
        top_u, width_top, width_bot = 0.8 * nu + 0.2 * mu, 0.93, 0.82
        bot_c = chin + em * rng.uniform(0.1, 0.22)
        bot_s = em * rng.uniform(1.35, 1.5)
        peak = rng.uniform(0.7, 0.95)
    else:  # chin: the mouth is free, the mask hangs under it
        top_c = em + (chin - em) * rng.uniform(0.3, 0.42)
        top_s = top_c + em * rng.uniform(0.0, 0.08)
        top_u, width_top, width_bot = mu, 0.8, 0.66
        bot_c = chin + em * rng.uniform(0.28, 0.42)
        bot_s = top_s + em * rng.uniform(0.35, 0.45)
        peak = rng.uniform(0.8, 1.0)
    centre = 0.5 * (L + R)
    lt, rt = centre + (L - centre) * width_top, centre + (R - centre) * width_top
    lb, rb = centre + (L - centre) * width_bot, centre + (R - centre) * width_bot
    tent = np.exp(-((x / peak) ** 2))
    tent = (tent - np.exp(-((1 / peak) ** 2))) / (1 - np.exp(-((1 / peak) ** 2)))
    top = _edge(x, lt, top_u, rt, top_s, top_c, tent)
    bottom = _edge(x, lb, 0.8 * mu, rb, bot_s, bot_c, np.clip(1 - x**2, 0, 1) ** 0.6)
    return MaskShape(top, bottom, placement)


# --- texture ----------------------------------------------------------------------------------------------


def _fabric(
    style: MaskStyle, size: tuple[int, int], rng: np.random.Generator, texture: np.ndarray | None
) -> np.ndarray:
    """The flat mask (h x w float32 BGR 0..255) before it is bent onto the face."""
    h, w = size
    if texture is not None:
        tex = np.asarray(texture)
        if tex.ndim == 2:
            tex = cv2.cvtColor(tex, cv2.COLOR_GRAY2BGR)
        if tex.ndim != 3 or tex.shape[2] < 3:
            raise ValueError(f"texture must be an HxWx3 image, got shape {tex.shape}")
        return cv2.resize(tex[:, :, :3], (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = style.color
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if style.color2 is not None and style.pattern != "none":
        period = w / rng.uniform(7, 12)
        if style.pattern == "dots":
            on = (xx % period - period / 2) ** 2 + (
                (yy + (xx // period % 2) * period / 2) % period - period / 2
            ) ** 2 < (period * 0.22) ** 2
        elif style.pattern == "stripes":
            on = ((xx + yy) % period) < period * 0.4
        elif style.pattern == "checks":
            on = ((xx // period + yy // period) % 2) == 0
        else:  # blobs: smooth noise, thresholded
            small = rng.normal(0, 1, (max(h // 12, 2), max(w // 12, 2))).astype(np.float32)
            on = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) > 0.3
        img[on] = style.color2
        img = cv2.GaussianBlur(img, (0, 0), 0.7)
    grain = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.8)
    img += (grain * (5.0 if style.kind == "surgical" else 8.0))[..., None]
    shade = np.ones((h, w), np.float32)
    t, x = yy / max(h - 1, 1), xx / max(w - 1, 1) * 2 - 1
    if style.kind == "surgical":
        for tk in np.linspace(0.3, 0.7, 3) + rng.uniform(-0.03, 0.03, 3):
            dt = (t - tk) * h
            amp = 0.35 + 0.65 * np.abs(x)  # pleats open in the middle, tight at the sides
            shade -= amp * 0.22 * np.exp(-((dt / max(h * 0.012, 0.8)) ** 2))
            shade += amp * 0.08 * np.exp(-(((dt + h * 0.03) / max(h * 0.02, 1.0)) ** 2))
        hem = (np.abs(x) > 0.9) | (t < 0.05) | (t > 0.95)
        shade[hem] *= 0.93
        stitch = (np.abs(np.abs(x) - 0.91) < 0.006) & ((yy.astype(int) // 3) % 2 == 0)
        shade[stitch] *= 0.85
    else:
        shade -= 0.12 * np.exp(-((x * w / max(w * 0.012, 0.8)) ** 2))  # the centre seam of a cloth mask
        weave = 0.03 * np.sin(xx * 2.2) * np.sin(yy * 2.2)
        shade += weave
    return img * shade[..., None]


def _surface_light(size: tuple[int, int], rng: np.random.Generator, yaw: float, placement: str) -> np.ndarray:
    """A curved surface under a soft light: darker towards the sides and the chin, brighter on the nose."""
    h, w = size
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    light = rng.uniform(-0.4, 0.4)
    shade = 0.72 + 0.28 * np.cos(x * np.pi / 2 * 0.95) ** 0.6
    shade = shade + 0.1 * np.exp(-(((x - 0.3 * light) / 0.45) ** 2)) * np.exp(
        -(((t - 0.45) / 0.4) ** 2)
    )  # sheen
    shade = shade + 0.12 * light * x - 0.18 * yaw * x
    shade = shade - (0.16 if placement != "chin" else 0.1) * t**2
    if placement == "over_nose":
        shade = shade + 0.08 * np.exp(-((x / 0.12) ** 2)) * np.exp(-((t / 0.35) ** 2))  # the nose bridge
    return np.clip(shade, 0.35, 1.15).astype(np.float32)


# --- rendering --------------------------------------------------------------------------------------------


def _warp_mesh(src: np.ndarray, grid_px: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """Warp `src` (h x w x 3) onto the mesh `grid_px` [ny, nx, 2] (image px) inside roi, piecewise
    affinely."""
    x0, y0, x1, y1 = roi
    h, w = src.shape[:2]
    ny, nx = grid_px.shape[:2]
    sy, sx = np.meshgrid(np.linspace(0, h - 1, ny), np.linspace(0, w - 1, nx), indexing="ij")
    src_pts = np.stack([sx, sy], axis=-1)
    dst_pts = grid_px - np.array([x0, y0])
    ids = np.zeros((y1 - y0, x1 - x0), np.uint16)
    mats = []
    for j in range(ny - 1):
        for i in range(nx - 1):
            for tri in (((j, i), (j, i + 1), (j + 1, i + 1)), ((j, i), (j + 1, i + 1), (j + 1, i))):
                d = np.array([dst_pts[a, b] for a, b in tri], np.float32)
                s = np.array([src_pts[a, b] for a, b in tri], np.float32)
                e1, e2 = d[1] - d[0], d[2] - d[0]
                if abs(e1[0] * e2[1] - e1[1] * e2[0]) < 1e-6:
                    continue
                mats.append(cv2.getAffineTransform(d, s))
                cv2.fillConvexPoly(ids, np.round(d * 16).astype(np.int32), len(mats), cv2.LINE_8, 4)
    if (ids == 0).any():  # pixels just outside the mesh (anti-aliased edge): borrow the nearest triangle
        ids = np.where(ids == 0, cv2.dilate(ids, np.ones((3, 3), np.uint8), iterations=2), ids)
    m = np.concatenate([np.zeros((1, 2, 3), np.float64), np.array(mats)])[ids]  # [H, W, 2, 3]
    yy, xx = np.mgrid[0 : ids.shape[0], 0 : ids.shape[1]].astype(np.float64)
    mx = (m[..., 0, 0] * xx + m[..., 0, 1] * yy + m[..., 0, 2]).astype(np.float32)
    my = (m[..., 1, 0] * xx + m[..., 1, 1] * yy + m[..., 1, 2]).astype(np.float32)
    return cv2.remap(src, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _straps(canvas: np.ndarray, ff: FaceFrame, shape: MaskShape, value: int, offset: tuple[int, int]) -> None:
    """Ear loops (drawn with `value` into a one-channel canvas) from the mask's side corners to the ears."""
    thick = max(1, int(round(ff.d * 0.035)))
    ear_v = ff.nose[1] * 0.55
    for side, edge in ((0, ff.left), (-1, ff.right)):
        if abs(edge) <= 0.62:  # that side of the face is turned away: its loop is hidden
            continue
        sign = -1 if side == 0 else 1
        ear = np.array([edge + sign * 0.1, ear_v])
        for corner in (shape.top[side], shape.bottom[side]):
            ctrl = np.array([edge + sign * 0.16, 0.5 * (corner[1] + ear_v)])
            tt = np.linspace(0, 1, 12)[:, None]
            curve = (1 - tt) ** 2 * corner + 2 * (1 - tt) * tt * ctrl + tt**2 * ear
            pts = ff.to_image(curve) - np.array(offset)
            cv2.polylines(canvas, [np.round(pts * 16).astype(np.int32)], False, value, thick, cv2.LINE_AA, 4)


def mask_layer(
    image: np.ndarray,
    landmarks: np.ndarray,
    box: Sequence[float] | None = None,
    placement: str = "over_nose",
    rng: np.random.Generator | None = None,
    style: MaskStyle | None = None,
    texture: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int], MaskShape]:
    """The mask as a layer: (colour float32 [h,w,3], alpha float32 [h,w] in 0..1, roi x0,y0,x1,y1, shape).

    The layer covers only `roi` of the image; draw_mask blends it in. Exposed so that callers (tests, the
    video script) can see exactly which pixels the mask covers.
    """
    rng = rng if rng is not None else np.random.default_rng()
    style = style or random_style(rng)
    ff = face_frame(landmarks, box)
    shape = mask_shape(ff, placement, rng)
    grid = ff.to_image(shape.grid(12))
    outline = ff.to_image(shape.outline())
    H, W = image.shape[:2]
    pad = int(ff.d * 0.4) + 2
    x0, y0 = (int(max(np.floor(outline.min(axis=0)[k]) - pad, 0)) for k in range(2))
    x1 = int(min(np.ceil(outline[:, 0].max()) + pad, W))
    y1 = int(min(np.ceil(outline[:, 1].max()) + pad, H))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros((0, 0, 3), np.float32), np.zeros((0, 0), np.float32), (0, 0, 0, 0), shape
    roi = (x0, y0, x1, y1)
    width_px = (
        float(np.linalg.norm(grid[0, -1] - grid[0, 0]) + np.linalg.norm(grid[-1, -1] - grid[-1, 0])) / 2
    )
    height_px = float(np.linalg.norm(grid[-1, grid.shape[1] // 2] - grid[0, grid.shape[1] // 2]))
    tw = int(np.clip(width_px * 1.3, 48, 512))
    th = int(np.clip(tw * height_px / max(width_px, 1.0), 24, 512))
    yaw = float(np.clip((ff.left + ff.right) / 1.2, -1, 1))
    fabric, light = (
        _fabric(style, (th, tw), rng, texture),
        _surface_light((th, tw), rng, yaw, placement)[..., None],
    )
    dark = 1.0 - np.clip(fabric.mean(axis=2, keepdims=True) / 90.0, 0, 1)
    flat = fabric * light + 40.0 * dark * (light - 0.7).clip(0) ** 1.5  # dark cloth still shows its curve
    colour = _warp_mesh(flat, grid, roi)
    # match the photo's light: overall level and its slow gradient across the mask
    alpha8 = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(alpha8, [np.round((outline - [x0, y0]) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    alpha = alpha8.astype(np.float32) / 255.0
    lum = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY).astype(np.float32)
    inside = alpha > 0.5
    level = 1.0
    if inside.any():
        slow = cv2.GaussianBlur(lum, (0, 0), max(ff.d * 0.45, 1.0)) + 1.0
        mean = float(slow[inside].mean())
        level = float(np.clip(mean / 135.0, 0.5, 1.1)) ** 0.6
        colour *= (level * np.clip(slow / mean, 0.6, 1.4) ** 0.5)[..., None]
    colour = cv2.GaussianBlur(colour, (0, 0), max(ff.d / 120.0, 0.5))
    colour += rng.normal(0, 2.0, colour.shape).astype(np.float32)
    if style.straps:
        strap = (238, 238, 236) if style.kind == "surgical" else tuple(int(c) for c in style.color)
        strap_layer = np.zeros((y1 - y0, x1 - x0), np.uint8)
        _straps(strap_layer, ff, shape, 255, (x0, y0))
        s = strap_layer.astype(np.float32) / 255.0 * (1 - alpha)
        strap_col = np.array(strap, np.float32) * 0.85 * level  # in the face's light, a little shaded
        colour = colour * (1 - s[..., None]) + strap_col * s[..., None]
        alpha = np.maximum(alpha, s)
    return np.clip(colour, 0, 255), alpha, roi, shape


def _contact_shadow(alpha: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """A soft shadow the mask casts on the skin just around its edge (0..1, zero under the mask)."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    d = float(np.hypot(*(lm[1] - lm[0])))
    blurred = cv2.GaussianBlur(alpha, (0, 0), max(d * 0.03, 0.6))
    return np.clip(blurred - alpha, 0, 1)


def placement_for(state: str, rng: np.random.Generator, placement: str | None = None) -> str | None:
    """Mask state -> placement of the top edge (None: no mask). 'incorrect' is under the nose 2 times in 3."""
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}, got {state!r}")
    if state == "not_wear":
        return None
    if state == "wear":
        if placement not in (None, "over_nose"):
            raise ValueError(f"a worn mask sits over the nose, got placement {placement!r}")
        return "over_nose"
    if placement is None:
        return "under_nose" if rng.random() < 2 / 3 else "chin"
    if placement not in ("under_nose", "chin"):
        raise ValueError(f"an incorrect mask sits under_nose or on the chin, got {placement!r}")
    return placement


def draw_mask(
    image_bgr: np.ndarray,
    landmarks: np.ndarray,
    box: Sequence[float] | None = None,
    state: str = "wear",
    rng: np.random.Generator | None = None,
    texture: np.ndarray | None = None,
    *,
    style: MaskStyle | None = None,
    placement: str | None = None,
) -> np.ndarray:
    """A copy of `image_bgr` with a face mask drawn on the face given by MTCNN's `landmarks` [5, 2].

    state: "wear" (nose bridge to under the chin, to the face's sides), "incorrect" (under the nose, or
    on the chin with the mouth free: `placement` "under_nose" / "chin", random when None), "not_wear"
    (the image comes back unchanged). `box` (MTCNN's face box) refines where the chin is. `style` fixes
    the colour/kind (random when None); `texture`, an image of mask fabric, replaces the procedural one.
    `rng` makes the drawing reproducible.
    """
    if image_bgr is None or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {getattr(image_bgr, 'shape', None)}")
    rng = rng if rng is not None else np.random.default_rng()
    where = placement_for(state, rng, placement)
    out = image_bgr.copy()
    if where is None:
        return out
    colour, alpha, (x0, y0, x1, y1), _ = mask_layer(image_bgr, landmarks, box, where, rng, style, texture)
    if alpha.size:
        region = out[y0:y1, x0:x1].astype(np.float32)
        region *= 1.0 - 0.3 * _contact_shadow(alpha, landmarks)[..., None]
        a = alpha[..., None]
        out[y0:y1, x0:x1] = np.clip(region * (1 - a) + colour * a + 0.5, 0, 255).astype(np.uint8)
    return out
