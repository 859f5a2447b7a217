"""Masks cut from real photos of masked faces: the bank `mask-train cut-masks` writes and `mask-train synth
--mask-bank` draws from (train.synth.cut_render warps them onto bare faces).

No segmentation model: each photo's face is found by MTCNN (the eyes are reliable on a masked face; its nose
and mouth are guesses), the photo is turned and scaled so that the eyes lie at fixed points of a canonical
frame (CANON_D px apart, their midpoint at CANON_EYES), and the mask is cut with GrabCut seeded from the
face: sure background above the eye line and outside the face box, probable mask below the eye line plus
35% of the eye distance, sure mask a small ellipse where the mouth is. A cut is refused where it is
implausible: too little or too much of the lower face covered, a ragged shape (area over its convex
hull's), a top edge far from the nose, or a colour too close to the skin of the upper face (a bare face's
chin is skin; a mask is not).

The bank folder:

    DIR/bank.json        {"version", "canon": {"d", "eyes"}, "masks": [{"file", "source", "offset", ...}]}
    DIR/masks/NNNNN.png  RGBA, the mask in the canonical frame (shifted by `offset`), soft alpha edges

Per mask the json records the source photo (relative to --data), the canonical face landmarks and box, the
mask's extent in face units (top edge at the middle, bottom, left, right: units of the eye distance from
the eyes' midpoint, v down), the source's skin colour (for matching the target's light) and how the
source face's sharpness falls with blur (for blurring the mask to a target's sharpness).

The bank holds image content of the source photos: keep it with them (a build folder), not in the project.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engines.errors import UserError
from engines.fileio import atomic_path, atomic_write_json
from engines.labels import IMAGE_SUFFIXES

BANK_JSON = "bank.json"
BANK_VERSION = 1
CANON_D = 64.0  # eye distance in the canonical frame, px
CANON_EYES = (160.0, 112.0)  # the eyes' midpoint in the canonical frame
CANON_SIZE = (320, 352)  # width, height
BLUR_SIGMAS = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # canonical px: the sharpness curve's points
MIN_EYE_PX = 14.0  # source faces with eyes closer than this are too small to cut from

# what a plausible cut is (face units = eye distances)
MIN_COVER, MAX_COVER = 0.40, 0.97  # share of the lower face the cut covers
MIN_SOLIDITY = 0.80  # area / convex hull area
TOP_RANGE = (0.05, 1.05)  # v of the cut's top edge at the middle of the face
MIN_COLOUR_DIST = 16.0  # Lab distance from the upper face's skin
MAX_SKINLIKE = 0.35  # share of the cut's pixels within SKIN_DIST of that skin colour
SKIN_DIST = 12.0


@dataclass(frozen=True)
class Cut:
    """One mask cut from a photo: RGBA in the canonical frame (at `offset`), and what the bank records."""

    rgba: np.ndarray
    offset: tuple[int, int]
    meta: dict


@dataclass(frozen=True)
class Rejection:
    reason: str


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (turn, scale, shift) taking two points `src` [2, 2] onto `dst` [2, 2]."""
    s0, s1 = np.asarray(src, np.float64)
    d0, d1 = np.asarray(dst, np.float64)
    vs, vd = s1 - s0, d1 - d0
    scale = np.hypot(*vd) / max(np.hypot(*vs), 1e-9)
    ang = np.arctan2(vd[1], vd[0]) - np.arctan2(vs[1], vs[0])
    c, s = scale * np.cos(ang), scale * np.sin(ang)
    rot = np.array([[c, -s], [s, c]])
    return np.hstack([rot, (d0 - rot @ s0)[:, None]])


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    return pts @ m[:, :2].T + m[:, 2]


def canonical(photo: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo turned and scaled into the canonical frame (eyes level, CANON_D apart) and that 2x3 map."""
    cx, cy = CANON_EYES
    m = similarity(landmarks[:2], np.array([[cx - CANON_D / 2, cy], [cx + CANON_D / 2, cy]]))
    img = cv2.warpAffine(photo, m, CANON_SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return img, m


def _lab(bgr: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(bgr.reshape(-1, 1, 3).astype(np.uint8), cv2.COLOR_BGR2LAB).reshape(-1, 3)
    return lab.astype(np.float32) * [100 / 255, 1, 1] - [0, 128, 128]


def sharpness(grey: np.ndarray, region: np.ndarray) -> float:
    """How much of the region's detail is at the finest scale: mean |img - blur(1)| / mean |img - blur(3)|."""
    g = grey.astype(np.float32)
    fine = np.abs(g - cv2.GaussianBlur(g, (0, 0), 1.0))[region].mean()
    coarse = np.abs(g - cv2.GaussianBlur(g, (0, 0), 3.0))[region].mean()
    return float(fine / max(coarse, 1e-3))


def sharpness_curve(grey: np.ndarray, region: np.ndarray) -> list[float]:
    """sharpness() of the image blurred by each of BLUR_SIGMAS (falls as the blur grows)."""
    g = grey.astype(np.float32)
    return [round(sharpness(cv2.GaussianBlur(g, (0, 0), s) if s > 0 else g, region), 4) for s in BLUR_SIGMAS]


def _upper_skin(img: np.ndarray) -> np.ndarray:
    """Pixels of the upper face that are skin on nearly every face, hair, caps and masks aside: between the
    eyes, down to the top of the nose."""
    cx, cy = CANON_EYES
    d = CANON_D
    return img[int(cy - 0.3 * d) : int(cy + 0.1 * d), int(cx - 0.15 * d) : int(cx + 0.15 * d)].reshape(-1, 3)


def cut_mask(photo: np.ndarray, landmarks: np.ndarray, box, iterations: int = 3) -> Cut | Rejection:
    """The mask of a masked face by GrabCut (see the module's docstring), or why no cut is plausible."""
    lm = np.asarray(landmarks, np.float64).reshape(5, 2)
    d_src = float(np.hypot(*(lm[1] - lm[0])))
    if d_src < MIN_EYE_PX:
        return Rejection("face too small")
    img, m = canonical(photo, lm)
    cx, cy = CANON_EYES
    d = CANON_D
    W, H = CANON_SIZE
    x1, y1, x2, y2 = box
    corners = apply(m, [[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
    bx1, by1 = corners.min(axis=0)
    bx2, by2 = corners.max(axis=0)
    bw, bh = bx2 - bx1, by2 - by1
    seeds = np.full((H, W), cv2.GC_BGD, np.uint8)
    ox1, ox2 = int(max(bx1 - 0.08 * bw, 0)), int(min(bx2 + 0.08 * bw, W))
    oy2 = int(min(by2 + 0.12 * bh, H))
    top = int(cy + 0.1 * d)
    seeds[top:oy2, ox1:ox2] = cv2.GC_PR_BGD
    lower_y1 = int(cy + 0.35 * d)
    lower_y2 = int(min(by2, H))
    lx1, lx2 = int(max(bx1, 0)), int(min(bx2, W))
    if lower_y2 - lower_y1 < 8 or lx2 - lx1 < 8:
        return Rejection("no lower face in the box")
    seeds[lower_y1:lower_y2, lx1:lx2] = cv2.GC_PR_FGD
    sure = np.zeros((H, W), np.uint8)
    cv2.ellipse(sure, (int(cx), int(cy + 1.15 * d)), (int(0.4 * d), int(0.22 * d)), 0, 0, 360, 1, -1)
    seeds[(sure > 0) & (seeds != cv2.GC_BGD)] = cv2.GC_FGD
    # GrabCut over the region that is not sure background (and a margin of it, for its colour model)
    rx1, rx2 = max(ox1 - 16, 0), min(ox2 + 16, W)
    ry1, ry2 = max(top - 24, 0), min(oy2 + 16, H)
    roi_seeds = seeds[ry1:ry2, rx1:rx2].copy()
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    # GrabCut starts its colour models by k-means from OpenCV's own random state, which every earlier call in
    # the thread moves: seeded, a photo gives the same cut whatever ran before it
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(
            np.ascontiguousarray(img[ry1:ry2, rx1:rx2]),
            roi_seeds,
            None,
            bgd,
            fgd,
            iterations,
            cv2.GC_INIT_WITH_MASK,
        )
    except cv2.error:
        return Rejection("grabcut failed")
    fg = np.zeros((H, W), np.uint8)
    fg[ry1:ry2, rx1:rx2] = np.isin(roi_seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    fg = _clean(fg, (int(cx), int(cy + 1.15 * d)))
    if fg is None:
        return Rejection("no mask region at the mouth")
    checked = _check(img, fg, (lx1, lower_y1, lx2, lower_y2))
    if isinstance(checked, Rejection):
        return checked
    return _as_cut(img, fg, m, lm, box, d_src, checked)


def _clean(fg: np.ndarray, centre: tuple[int, int]) -> np.ndarray | None:
    """The connected part of the cut that holds the mouth, opened, its holes filled."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, k)
    n, labels = cv2.connectedComponents(fg)
    lab = labels[centre[1], centre[0]]
    if n < 2 or lab == 0:
        return None
    part = (labels == lab).astype(np.uint8)
    outside = part.copy()
    ff = np.zeros((part.shape[0] + 2, part.shape[1] + 2), np.uint8)
    cv2.floodFill(outside, ff, (0, 0), 2)
    part[outside == 0] = 1  # holes: neither the part nor reachable from the corner
    return cv2.morphologyEx(part, cv2.MORPH_CLOSE, k)


def _check(img: np.ndarray, fg: np.ndarray, lower: tuple[int, int, int, int]) -> dict | Rejection:
    cx, cy = CANON_EYES
    d = CANON_D
    lx1, ly1, lx2, ly2 = lower
    cover = float(fg[ly1:ly2, lx1:lx2].mean())
    if not MIN_COVER <= cover <= MAX_COVER:
        return Rejection(f"covers {cover:.0%} of the lower face")
    contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.contourArea(cv2.convexHull(max(contours, key=cv2.contourArea)))
    solidity = float(fg.sum() / max(hull, 1.0))
    if solidity < MIN_SOLIDITY:
        return Rejection(f"ragged shape (solidity {solidity:.2f})")
    cols = fg[:, int(cx - 0.3 * d) : int(cx + 0.3 * d)]
    tops = [int(np.argmax(c)) for c in cols.T if c.any()]
    top_v = (float(np.median(tops)) - cy) / d if tops else 9.0
    if not TOP_RANGE[0] <= top_v <= TOP_RANGE[1]:
        return Rejection(f"top edge {top_v:.2f} eye distances below the eyes")
    skin = np.median(_lab(_upper_skin(img)), axis=0)
    inner = cv2.erode(fg, np.ones((5, 5), np.uint8)) > 0
    if inner.sum() < 50:
        return Rejection("too thin")
    pix = _lab(img[inner])
    dist = np.linalg.norm(pix - skin, axis=1)
    colour_dist = float(np.linalg.norm(np.median(pix, axis=0) - skin))
    skinlike = float((dist < SKIN_DIST).mean())
    if colour_dist < MIN_COLOUR_DIST or skinlike > MAX_SKINLIKE:
        return Rejection(f"skin-coloured (distance {colour_dist:.0f}, {skinlike:.0%} skin-like)")
    return {
        "cover": round(cover, 3),
        "solidity": round(solidity, 3),
        "colour_distance": round(colour_dist, 1),
        "skinlike": round(skinlike, 3),
    }


def _as_cut(img, fg, m, lm, box, d_src: float, checks: dict) -> Cut:
    cx, cy = CANON_EYES
    d = CANON_D
    ys, xs = np.nonzero(fg)
    x0, y0 = max(int(xs.min()) - 6, 0), max(int(ys.min()) - 6, 0)
    x1, y1 = min(int(xs.max()) + 7, fg.shape[1]), min(int(ys.max()) + 7, fg.shape[0])
    f = fg[y0:y1, x0:x1].astype(np.float32)
    colour = img[y0:y1, x0:x1].astype(np.float32)
    # colour outside the cut: the cut's own colour spread outwards, so a soft edge never shows the background
    k = (0, 0)
    num = cv2.GaussianBlur(colour * f[..., None], k, 3.0)
    den = cv2.GaussianBlur(f, k, 3.0)[..., None]
    spread = num / np.maximum(den, 1e-3)
    for _ in range(3):
        num = cv2.GaussianBlur(spread * (den > 1e-3), k, 6.0)
        den2 = cv2.GaussianBlur((den > 1e-3).astype(np.float32), k, 6.0)[..., None]
        spread = np.where(den > 1e-3, spread, num / np.maximum(den2, 1e-3))
        den = np.maximum(den, den2)
    colour = np.where(f[..., None] > 0, colour, spread)
    alpha = cv2.GaussianBlur(cv2.erode(f, np.ones((3, 3), np.uint8)), (0, 0), 1.2)
    rgba = np.dstack([np.clip(colour + 0.5, 0, 255), np.clip(alpha * 255 + 0.5, 0, 255)]).astype(np.uint8)
    canon_lm = apply(m, lm)
    corners = apply(m, [[box[0], box[1]], [box[2], box[3]]])
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    face = np.zeros(grey.shape, bool)
    face[int(cy - 0.6 * d) : int(cy + 0.3 * d), int(cx - 0.9 * d) : int(cx + 0.9 * d)] = True
    cols = fg[:, int(cx - 0.3 * d) : int(cx + 0.3 * d)]
    tops = [int(np.argmax(c)) for c in cols.T if c.any()]
    meta = {
        "offset": [x0, y0],
        "landmarks": np.round(canon_lm, 1).tolist(),
        "box": np.round(corners.reshape(-1), 1).tolist(),
        "top": round((float(np.median(tops)) - cy) / d, 3),
        "bottom": round((float(ys.max()) - cy) / d, 3),
        "left": round((float(xs.min()) - cx) / d, 3),
        "right": round((float(xs.max()) - cx) / d, 3),
        "skin_bgr": np.round(np.median(_upper_skin(img), axis=0), 1).tolist(),
        "sharpness": sharpness_curve(grey, face),
        "source_eye_px": round(d_src, 1),
        **checks,
    }
    return Cut(rgba, (x0, y0), meta)


# --- the bank --------------------------------------------------------------------------------------------


def masked_photos(data_dir: Path) -> list[Path]:
    """The photos of masked faces of a downloaded set: DIR/with_mask/ (folders layout), else DIR itself."""
    folder = data_dir / "with_mask" if (data_dir / "with_mask").is_dir() else data_dir
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"{folder}: no photos of masked faces ({', '.join(IMAGE_SUFFIXES)})")
    return files


def prepare_out(out: Path, force: bool) -> None:
    """An empty or new folder, or a bank made earlier (replaced only with force)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if (out / BANK_JSON).is_file():
        if not force:
            raise UserError(f"{out} already holds a mask bank; pass --force to cut it again")
        shutil.rmtree(out / "masks", ignore_errors=True)
        (out / BANK_JSON).unlink()
    elif out.is_dir() and any(out.iterdir()):
        raise UserError(f"{out} is not empty and holds no mask bank; choose an empty or new --out")
    (out / "masks").mkdir(parents=True, exist_ok=True)


def write_png(path: Path, rgba: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", rgba)
    if not ok:  # pragma: no cover - OpenCV without a PNG encoder
        raise UserError(f"could not encode {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def write_bank(out: Path, data_dir: Path, entries: list[dict]) -> None:
    atomic_write_json(
        out / BANK_JSON,
        {
            "version": BANK_VERSION,
            "data_dir": str(data_dir),
            "canon": {"d": CANON_D, "eyes": list(CANON_EYES)},
            "masks": entries,
        },
    )


@dataclass(frozen=True)
class BankMask:
    """A mask of the bank, loaded: its RGBA and its bank.json entry."""

    rgba: np.ndarray
    meta: dict

    @property
    def name(self) -> str:
        return str(self.meta.get("file", ""))


def read_bank(folder: str | Path) -> list[BankMask]:
    """Every mask of a bank folder; a missing or damaged bank is one UserError naming the file."""
    folder = Path(folder)
    path = folder / BANK_JSON
    if not path.is_file():
        raise UserError(f"--mask-bank {folder}: no {BANK_JSON} (make one with `mask-train cut-masks`)")
    try:
        bank = json.loads(path.read_text())
        if bank.get("version") != BANK_VERSION or bank.get("canon", {}).get("d") != CANON_D:
            raise UserError(f"{path}: made by another version of cut-masks; cut the masks again")
        entries = list(bank["masks"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: not a mask bank ({exc})") from None
    masks = []
    for e in entries:
        img = cv2.imread(str(folder / "masks" / str(e.get("file"))), cv2.IMREAD_UNCHANGED)
        if img is None or img.ndim != 3 or img.shape[2] != 4:
            raise UserError(f"{folder / 'masks' / str(e.get('file'))}: missing or not an RGBA image")
        masks.append(BankMask(img, e))
    if not masks:
        raise UserError(f"{path}: the bank holds no masks")
    return masks
