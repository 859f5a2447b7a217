"""Faces of street and crowd scenes (PASCAL VOC boxes) where the monitor's detector puts them.

An annotator's box and MTCNN's box of one face differ (MTCNN's is taller, from the brows to below the chin),
and the crop the classifier learns is cut around the box: a model taught crops of annotated boxes meets other
crops live. So `mask-train import` looks for each annotated face with the monitor's own detector, in a region
around the box (`[scenes] search_grow`) scaled so the face is `search_face_px` tall (a small face upscaled:
MTCNN's minimum face size fits), and cuts around the detection that overlaps the annotation (`match`);
where the detector finds nothing, around the annotated box mapped as the detector's boxes sit relative to
the annotations (`fit_mapping`: median scale and offset over the faces found). `mask-train evaluate-scenes`
uses the same matching and mapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from engines.faces import Box, Face, iou
from train.config import ScenesConfig

MIN_FIT_FACES = 5  # fewer detected faces than this: no mapping is fitted (the annotated box as it is)


@dataclass(frozen=True)
class BoxMapping:
    """The detector's box from an annotated one: width and height scaled, centre moved by a share of the
    annotated box's width / height. `faces`: how many detected faces it was fitted on (0: identity)."""

    scale_w: float = 1.0
    scale_h: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    faces: int = 0

    def apply(self, box: Box) -> Box:
        w, h = box[2] - box[0], box[3] - box[1]
        cx, cy = (box[0] + box[2]) / 2 + self.shift_x * w, (box[1] + box[3]) / 2 + self.shift_y * h
        nw, nh = w * self.scale_w, h * self.scale_h
        return cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> BoxMapping:
        return cls(**{k: type(getattr(cls(), k))(d[k]) for k in asdict(cls()) if k in d})


def fit_mapping(pairs: Sequence[tuple[Box, Box]]) -> BoxMapping:
    """The median scale and offset of detector boxes relative to annotated ones, over (annotated, detected)
    pairs; the identity where fewer than MIN_FIT_FACES pairs exist."""
    if len(pairs) < MIN_FIT_FACES:
        return BoxMapping()
    a = np.array([p[0] for p in pairs], np.float64)
    d = np.array([p[1] for p in pairs], np.float64)
    aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    dw, dh = d[:, 2] - d[:, 0], d[:, 3] - d[:, 1]
    sx = ((d[:, 0] + d[:, 2]) - (a[:, 0] + a[:, 2])) / 2 / aw
    sy = ((d[:, 1] + d[:, 3]) - (a[:, 1] + a[:, 3])) / 2 / ah
    return BoxMapping(
        float(np.median(dw / aw)),
        float(np.median(dh / ah)),
        float(np.median(sx)),
        float(np.median(sy)),
        len(pairs),
    )


def _inside(point: tuple[float, float], box: Box) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def overlaps(face: Face, truth: Box, min_iou: float) -> bool:
    """A detection can be the annotated face's: one box's centre lies in the other and the IoU is high enough
    (a neighbour's face in a crowd has its centre elsewhere)."""
    near = _inside(face.center, truth) or _inside(_centre(truth), face.box)
    return near and iou(face.box, truth) >= min_iou


def match(faces: Sequence[Face], truth: Box, min_iou: float) -> Face | None:
    """The detection that overlaps the annotated box most, among those that can be its face."""
    return max(
        (f for f in faces if overlaps(f, truth, min_iou)), key=lambda f: iou(f.box, truth), default=None
    )


def assign(truths: Sequence[Box], faces: Sequence[Face], min_iou: float) -> list[Face | None]:
    """One detection per annotated face at most, and each detection to one face: pairs taken greedily by
    IoU (in a crowd one detection can overlap two annotated faces)."""
    pairs = sorted(
        (
            (iou(f.box, t), i, j)
            for i, t in enumerate(truths)
            for j, f in enumerate(faces)
            if overlaps(f, t, min_iou)
        ),
        reverse=True,
    )
    out: list[Face | None] = [None] * len(truths)
    used: set[int] = set()
    for _, i, j in sorted(pairs, reverse=True):
        if out[i] is None and j not in used:
            out[i] = faces[j]
            used.add(j)
    return out


def search_region(box: Box, shape: Sequence[int], grow: float) -> tuple[int, int, int, int]:
    """The annotated box grown `grow` times around its centre (a square on its longer side), in the image."""
    h, w = shape[:2]
    side = max(box[2] - box[0], box[3] - box[1]) * grow
    cx, cy = _centre(box)
    x1, y1 = max(int(cx - side / 2), 0), max(int(cy - side / 2), 0)
    return x1, y1, min(int(np.ceil(cx + side / 2)), w), min(int(np.ceil(cy + side / 2)), h)


def detect_near(detector, image: np.ndarray, box: Box, cfg: ScenesConfig) -> Face | None:
    """The detector's face for an annotated box: MTCNN (the detector's own settings) on the region around
    it, scaled so the annotated face is cfg.search_face_px tall; the box in the image's coordinates."""
    import cv2

    x1, y1, x2, y2 = search_region(box, image.shape, cfg.search_grow)
    s = cfg.search_face_px / max(box[3] - box[1], 1.0)
    rw, rh = int(round((x2 - x1) * s)), int(round((y2 - y1) * s))
    if rw < 12 or rh < 12:
        return None
    region = cv2.resize(
        image[y1:y2, x1:x2], (rw, rh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    )
    sx, sy = rw / (x2 - x1), rh / (y2 - y1)
    faces = [
        Face((f.box[0] / sx + x1, f.box[1] / sy + y1, f.box[2] / sx + x1, f.box[3] / sy + y1), f.score)
        for f in detector.detect(region)
    ]
    return match(faces, box, cfg.match_iou)


NEIGHBOURS = 8  # scenes compared with each one: the closest by colour histogram
MIN_INLIERS = 40  # ORB matches one similarity transform explains: a crop or copy of the same photo
ORB_SIDE = 400


def same_photo_groups(files: Sequence, read) -> dict:
    """Scenes cut from one photo (crops at other windows and scales, which a dHash of the whole image misses):
    each scene is compared with its NEIGHBOURS closest by colour histogram, and a pair whose ORB keypoints
    agree on one similarity transform (RANSAC, at least MIN_INLIERS matches) is the same photo. A group name
    (its first file) per file linked to another; files linked to none are left out."""
    import cv2

    orb = cv2.ORB_create(500)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
    files = list(files)
    feats, hists = [], []
    for f in files:
        img = read(f)
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        s = ORB_SIDE / max(grey.shape)
        grey = cv2.resize(grey, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else grey
        feats.append(orb.detectAndCompute(grey, None))
        h = cv2.calcHist([img], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3).flatten()
        hists.append(h / max(h.sum(), 1))
    if len(files) < 2:
        return {}
    hs = np.array(hists)
    parent = list(range(len(files)))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i] = parent[parent[i]]
        return i

    checked: set[tuple[int, int]] = set()
    for i in range(len(files)):
        sim = np.minimum(hs[i][None], hs).sum(axis=1)
        sim[i] = -1
        for j in np.argsort(-sim)[:NEIGHBOURS]:
            a, b = min(i, int(j)), max(i, int(j))
            if (a, b) in checked or find(a) == find(b):
                continue
            checked.add((a, b))
            if _same_photo(feats[a], feats[b], matcher):
                parent[max(find(a), find(b))] = min(find(a), find(b))
    members: dict[int, list[int]] = {}
    for i in range(len(files)):
        members.setdefault(find(i), []).append(i)
    return {files[i]: str(files[m[0]]) for m in members.values() if len(m) > 1 for i in m}


def _same_photo(fa, fb, matcher) -> bool:
    import cv2

    (ka, da), (kb, db) = fa, fb
    if da is None or db is None or len(ka) < MIN_INLIERS or len(kb) < MIN_INLIERS:
        return False
    m = matcher.match(da, db)
    if len(m) < MIN_INLIERS:
        return False
    pa = np.float32([ka[x.queryIdx].pt for x in m])
    pb = np.float32([kb[x.trainIdx].pt for x in m])
    transform, inliers = cv2.estimateAffinePartial2D(pa, pb, method=cv2.RANSAC, ransacReprojThreshold=4.0)
    return transform is not None and int(inliers.sum()) >= MIN_INLIERS
