"""Training samples for MTCNN's three nets, from photos of one face as the monitor meets them.

MTCNN learned on bare faces: on masked ones R-Net and O-Net score the face low, and P-Net often proposes no
window of the right size over it (close-ups from the eyebrows down, dark masks). So the three stages are
taught again, the way MTCNN was trained in the first place: each photo is pasted into a 640x480 frame at a
face height drawn from a range, shrunk as the monitor shrinks it (monitor.detect_max_side), and the windows
the stages before see there (P-Net's own windows and random squares for P-Net, P-Net's candidates for
R-Net, R-Net's for O-Net), plus jittered copies of the true box, are labelled by their overlap with the
face: positive (IoU >= 0.65), part (0.4-0.65, box regression only) or negative (< 0.3, and clear of the
photo's other faces). Each sample is the net input exactly as engines.mtcnn cuts it.
The box regression and O-Net's landmark targets are the original net's own outputs on the same crop: the
nets learn which windows are faces, while a face's box stays where facenet-pytorch draws it (the classifier
learnt from crops cut around those boxes; nothing labels landmarks here). A scene's faces are already boxed
where the monitor's detector puts them, so there the box targets can be those boxes (face_offsets)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from engines.faces import Box

POS_IOU, PART_IOU, NEG_IOU = 0.65, 0.4, 0.3
NET_SIZE = {"pnet": 12, "rnet": 24, "onet": 48}
NET_NAMES = tuple(NET_SIZE)
FRAME_W, FRAME_H = 640, 480


@dataclass(frozen=True)
class DetPhoto:
    """A photo of one face: where the face is, and where other faces are (never taught as negatives)."""

    path: str
    box: Box
    others: tuple[Box, ...] = ()
    mask: int = -1  # 0 wear / 1 incorrect / 2 not wear, -1 unknown: only to report recall per state
    close_up: bool = False  # the face fills the photo (no face box was found in it): taught more often


@dataclass(frozen=True)
class DetScene:
    """A street or crowd scene (a PASCAL VOC import) taught as a whole frame: its faces at their own size,
    in their own crowd and light. `faces`: the import's boxes (where the monitor's detector puts each face,
    or the annotated box mapped there); `others`: every annotated face (too small or cut by the frame's edge
    ones included), never taught as a non-face."""

    path: str
    faces: tuple[Box, ...]
    others: tuple[Box, ...] = ()
    states: tuple[int, ...] = ()  # each annotated box's mask state (0 wear / 1 incorrect / 2 not wear)
    close_up: bool = False  # a scene never is (make_samples repeats close-ups)
    hard: bool = False  # the finder misses one of its faces (fit.mark_hard): cut into more frames


SCENE_WIDTHS = (0.8, 2.0)  # a scene scaled to 640 px wide times this (log-uniform): its faces at more sizes
SCENE_INSIDE = 0.8  # a face this much inside the frame is taught; less, it is only kept from negatives


@dataclass
class Samples:
    """Net inputs (N x 3 x S x S float16, already normalised as engines.mtcnn feeds them), labels (1 face,
    0 not, -1 part: box only), box regression targets (N x 4, facenet-pytorch's bbreg convention: the
    original net's own) and, for O-Net, landmark targets (N x 10)."""

    inputs: np.ndarray
    labels: np.ndarray
    regs: np.ndarray
    marks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def concat(parts: Sequence[Samples]) -> Samples:
        marks = [p.marks for p in parts if p.marks is not None]
        return Samples(
            np.concatenate([p.inputs for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.regs for p in parts]),
            np.concatenate(marks) if marks else None,
        )


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of a (N x 4) with every box of b (M x 4)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def as_boxes(faces) -> np.ndarray:
    """One box (x1, y1, x2, y2) or several, as an N x 4 array."""
    return np.asarray(faces, np.float64).reshape(-1, 4)


def squared(boxes) -> np.ndarray:
    """Each box (N x 4) as the square on its longer side around its centre: what MTCNN's candidates are."""
    b = as_boxes(boxes)
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def label_boxes(cands: np.ndarray, faces, others: Sequence[Box] = ()) -> np.ndarray:
    """1 positive, -1 part, 0 negative, -2 dropped (between part and negative, or over another face), by the
    overlap with the best-matching of `faces` (one box, or a scene's several); `others` (faces too small,
    cut by the frame's edge, or not taught) are never negatives. The candidates are squares, so each face is
    matched by its square (squared): a face in profile, its box half as wide as tall, has no square that
    overlaps the box itself at 0.65, and was never a positive (the faces the nets then missed most)."""
    faces = squared(faces)
    overlap = iou_matrix(cands, faces).max(axis=1) if len(faces) else np.zeros(len(cands))
    labels = np.full(len(cands), -2, np.int64)
    labels[overlap >= POS_IOU] = 1
    labels[(overlap >= PART_IOU) & (overlap < POS_IOU)] = -1
    neg = overlap < NEG_IOU
    if len(others):
        neg &= iou_matrix(cands, squared(others)).max(axis=1) < NEG_IOU
    labels[neg] = 0
    return labels


def jittered(face: Box, n: int, rng: np.random.Generator) -> np.ndarray:
    """n square boxes around the face (as P-Net's regressed squares are): its side times 0.8-1.25, the centre
    moved by up to a fifth of the side; half of them overlap it as positives, the rest as parts or less."""
    x1, y1, x2, y2 = face
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    s = side * rng.uniform(0.8, 1.25, n)
    dx, dy = rng.uniform(-0.2, 0.2, (2, n)) * side
    return np.stack([cx + dx - s / 2, cy + dy - s / 2, cx + dx + s / 2, cy + dy + s / 2], axis=1)


def face_offsets(boxes: np.ndarray, faces: np.ndarray, stage: str) -> np.ndarray:
    """The box offsets (facenet-pytorch's convention: x1, y1, x2, y2 moves as shares of the box's width and
    height; R-Net's and O-Net's sizes count one pixel more, as its bbreg does) that take each box (N x 4) to
    the face (of `faces`) whose square it overlaps most: what a stage should regress to reach that face."""
    faces = as_boxes(faces)
    match = faces[iou_matrix(boxes, squared(faces)).argmax(axis=1)]
    extra = 0.0 if stage == "pnet" else 1.0
    w = np.maximum(boxes[:, 2] - boxes[:, 0] + extra, 1e-6)
    h = np.maximum(boxes[:, 3] - boxes[:, 1] + extra, 1e-6)
    return np.stack(
        [
            (match[:, 0] - boxes[:, 0]) / w,
            (match[:, 1] - boxes[:, 1]) / h,
            (match[:, 2] - boxes[:, 2]) / w,
            (match[:, 3] - boxes[:, 3]) / h,
        ],
        axis=1,
    ).astype(np.float32)


WORDS = ("ENTRANCE", "EXIT", "masks please", "OPEN", "PUSH", "Pull", "STAFF ONLY", "No entry", "24h", "SALE")
FONTS = (0, 1, 2, 3, 4, 6, 7)  # cv2.FONT_HERSHEY_*


def clutter_background(rng: np.random.Generator, backgrounds: Sequence[np.ndarray] = ()) -> np.ndarray:
    """A 640x480 frame to paste a face into: a plain noisy colour (as evaluate-frames' frames) or a scene
    without faces, with signs' words and plain shapes drawn over it: what a door camera sees beside faces,
    and what a net taught only faces and plain backgrounds would start to call a face (letters above all)."""
    if backgrounds and rng.random() < 0.5:
        bg = backgrounds[rng.integers(len(backgrounds))]
        frame = cv2.resize(bg, (FRAME_W, FRAME_H), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            frame = frame[:, ::-1].copy()
    else:
        base = rng.integers(40, 220, size=3)
        frame = np.clip(base + rng.normal(0, 12, (FRAME_H, FRAME_W, 3)), 0, 255).astype(np.uint8)
        frame = cv2.GaussianBlur(frame, (5, 5), 0)
    for _ in range(rng.integers(0, 4)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        p1 = rng.integers(0, (FRAME_W, FRAME_H))
        p2 = p1 + rng.integers(10, 200, 2)
        if rng.random() < 0.5:
            cv2.rectangle(frame, tuple(int(v) for v in p1), tuple(int(v) for v in p2), colour, -1)
        else:
            cv2.circle(frame, tuple(int(v) for v in p1), int(rng.integers(5, 60)), colour, -1)
    for _ in range(rng.integers(0, 4)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        org = (int(rng.integers(-50, FRAME_W - 50)), int(rng.integers(20, FRAME_H)))
        scale, thick = float(rng.uniform(0.5, 3.0)), int(rng.integers(1, 6))
        word, font = str(rng.choice(WORDS)), int(rng.choice(FONTS))
        cv2.putText(frame, word, org, font, scale, colour, thick, cv2.LINE_AA)
    return frame


def paste_face(
    img: np.ndarray,
    face: Box,
    others: Sequence[Box],
    height: float,
    rng: np.random.Generator,
    background: np.ndarray | None = None,
) -> tuple[np.ndarray, Box, list[Box]]:
    """The photo scaled so its face is `height` px tall, at a random place of a 640x480 frame (`background`,
    or a plain noisy one as evaluate-frames makes), the face inside; its box and the other faces' there."""
    from train.evaluation.frames import paste

    pasted = paste(img, face, height, rng, background=background)
    s = height / max(face[3] - face[1], 1.0)
    ox, oy = pasted.box[0] - face[0] * s, pasted.box[1] - face[1] * s
    moved = [(b[0] * s + ox, b[1] * s + oy, b[2] * s + ox, b[3] * s + oy) for b in others]
    return pasted.frame, pasted.box, moved


def scene_frame(
    img: np.ndarray, scene: DetScene, rng: np.random.Generator, widths: tuple[float, float] = SCENE_WIDTHS
) -> tuple[np.ndarray, list[Box], list[Box]]:
    """A camera frame of a scene: scaled to 640 px wide times `widths` (log-uniform), a random 640x480 window
    of it (all of it where smaller); the faces at least SCENE_INSIDE inside the window (clipped to it), and
    every face and annotated box moved there (never negatives)."""
    u = float(np.exp(rng.uniform(np.log(widths[0]), np.log(widths[1]))))
    s = FRAME_W * u / img.shape[1]
    scaled = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    h, w = scaled.shape[:2]
    ox, oy = int(rng.integers(0, max(w - FRAME_W, 0) + 1)), int(rng.integers(0, max(h - FRAME_H, 0) + 1))
    frame = np.ascontiguousarray(scaled[oy : oy + FRAME_H, ox : ox + FRAME_W])
    fh, fw = frame.shape[:2]

    def moved(b: Box) -> tuple[Box, float]:
        x1, y1, x2, y2 = b[0] * s - ox, b[1] * s - oy, b[2] * s - ox, b[3] * s - oy
        c = (max(x1, 0.0), max(y1, 0.0), min(x2, float(fw)), min(y2, float(fh)))
        inside = max(c[2] - c[0], 0.0) * max(c[3] - c[1], 0.0) / max((x2 - x1) * (y2 - y1), 1e-9)
        return c, inside

    faces = [c for c, inside in map(moved, scene.faces) if inside >= SCENE_INSIDE]
    others = [c for c, inside in map(moved, (*scene.faces, *scene.others)) if inside > 0]
    return frame, faces, others


def camera_look(
    frame: np.ndarray, faces: Sequence[Box], others: Sequence[Box], rng: np.random.Generator
) -> tuple[np.ndarray, list[Box], list[Box]]:
    """A scene frame as another camera might have taken it: mirrored (half the time: a face turned left is
    as often turned right), its exposure and contrast changed, and at random blurred (out of focus or moving),
    grainy or JPEG-compressed. A few hundred scenes, each cut into several frames, are otherwise learnt by
    heart (the nets' loss falls to nothing while faces in unseen scenes, turned or blurred, are missed).
    Returns the frame and the boxes moved with it."""
    h, w = frame.shape[:2]
    if rng.random() < 0.5:
        frame = np.ascontiguousarray(frame[:, ::-1])
        faces = [(w - b[2], b[1], w - b[0], b[3]) for b in faces]
        others = [(w - b[2], b[1], w - b[0], b[3]) for b in others]
    out = frame.astype(np.float32)
    if rng.random() < 0.8:
        out = (out - 128.0) * rng.uniform(0.6, 1.4) + 128.0 + rng.uniform(-35, 35)
        out *= rng.uniform(0.9, 1.1, 3)  # white balance
    if rng.random() < 0.25:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.6, 2.0)))
    elif rng.random() < 0.2:
        k = int(rng.integers(3, 10))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2] = 1.0 / k
        rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (k, k))
        out = cv2.filter2D(out, -1, kernel / max(float(kernel.sum()), 1e-6))
    if rng.random() < 0.25:
        out += rng.normal(0, rng.uniform(2, 8), out.shape).astype(np.float32)
    frame = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 80))])
        if ok:
            frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return frame, list(faces), list(others)


def shrink(frame: np.ndarray, boxes: Sequence[Box], max_side: int) -> tuple[np.ndarray, list[Box]]:
    """The copy MTCNN sees in the monitor (engines.faces.detect_shrunk) and the boxes in it."""
    h, w = frame.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s >= 1.0:
        return frame, list(boxes)
    small = cv2.resize(frame, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return small, [tuple(v * s for v in b) for b in boxes]


def random_squares(n: int, width: int, height: int, min_side: float, rng: np.random.Generator) -> np.ndarray:
    """n squares anywhere in a frame, their sides log-uniform from `min_side` to half the shorter side: the
    windows P-Net scores across a whole frame, most of them no face."""
    top = max(min(width, height) / 2, min_side + 1)
    side = np.exp(rng.uniform(np.log(min_side), np.log(top), n))
    x = rng.uniform(0, np.maximum(width - side, 1))
    y = rng.uniform(0, np.maximum(height - side, 1))
    return np.stack([x, y, x + side, y + side], axis=1)


def frame_samples(
    rgb: np.ndarray,
    face: Box | Sequence[Box],
    others: Sequence[Box],
    nets: Sequence,
    stage: str,
    rng: np.random.Generator,
    *,
    targets: Sequence | None = None,
    min_face: float = 20,
    thresholds: Sequence[float] = (0.3, 0.1),
    factor: float = 0.709,
    jitter: int = 6,
    max_negatives: int = 8,
    box_targets: bool = False,
) -> Samples | None:
    """The samples one frame (RGB, the size MTCNN sees) gives `stage` ('pnet', 'rnet' or 'onet'): candidates
    from the stages before it (`nets`: the P-Net, R-Net, O-Net as taught so far) with the given (P-Net,
    R-Net) thresholds, plus jittered boxes around the face (`face`: one box, or a scene's faces: `jitter`
    shared among them, at least two each); at most `max_negatives` negatives (the highest
    scored first, then at random: the ones the stage gets wrong). For P-Net the candidates are its own
    windows over a tenth of its threshold, with as many random squares of the frame.
    `targets`: the original (P-Net, R-Net, O-Net), default `nets`; the stage's original outputs on each crop
    are the box (and, for O-Net, landmark) targets. `box_targets`: a face or part's box target is its face
    box instead (where a scene's faces already are where the monitor's detector puts them, or the annotated
    box mapped there): the original nets' own boxes of a face turned aside are half off it, and the next
    stage, cutting its input from them, scores the face low."""
    import torch

    from engines.mtcnn import box_crops, integral_images, pnet_windows, propose, refine

    pnet, rnet, onet = nets
    faces = as_boxes(face)
    targets = nets if targets is None else targets
    integral = integral_images(rgb[None])
    with torch.inference_mode():
        low = thresholds[0] / 10 if stage == "pnet" else thresholds[0]
        proposed = pnet_windows(rgb[None], integral, min_face, pnet, low, factor, "cpu")
        if proposed is not None and stage != "pnet":  # P-Net learns on its windows, the others on its boxes
            proposed = propose(*proposed)
        if proposed is not None and stage == "onet":
            proposed = refine(integral, *proposed, rnet, thresholds[1], "cpu")
    cands, scores = np.zeros((0, 4), np.float64), np.zeros(0)
    if proposed is not None:
        cands, scores = proposed[0][:, :4].numpy().astype(np.float64), proposed[0][:, 4].numpy()
    if stage == "pnet":
        h, w = rgb.shape[:2]
        cands = np.concatenate([cands, random_squares(max_negatives, w, h, min_face, rng)])
        scores = np.concatenate([scores, np.zeros(max_negatives)])
    labels = label_boxes(cands, faces, others)
    neg = np.flatnonzero(labels == 0)
    if len(neg) > max_negatives:  # half the hardest (the highest scored so far), half at random
        hard = neg[np.argsort(-scores[neg])[: max_negatives // 2]]
        rest = rng.choice(np.setdiff1d(neg, hard), max_negatives - len(hard), replace=False)
        neg = np.concatenate([hard, rest])
    keep = np.concatenate([np.flatnonzero((labels == 1) | (labels == -1)), neg])
    each = jitter if len(faces) <= 1 else max(2, jitter // len(faces))
    extra = np.concatenate([jittered(tuple(f), each, rng) for f in faces]) if len(faces) else np.zeros((0, 4))
    extra_labels = label_boxes(extra, faces, ())
    extra, extra_labels = extra[extra_labels != -2], extra_labels[extra_labels != -2]
    boxes = np.concatenate([cands[keep], extra])
    labels = np.concatenate([labels[keep], extra_labels])
    if len(boxes) == 0:
        return None
    size = NET_SIZE[stage]
    t = torch.from_numpy(boxes.astype(np.float32))
    _, _, crops, inside = box_crops(integral, torch.zeros(len(t), dtype=torch.long), t, size, "cpu")
    if crops is None:
        return None
    labels = labels[inside]  # box_crops drops boxes wholly outside the frame
    crops = crops.contiguous()
    # the box and landmark targets are the original net's own: what is taught is which windows are faces;
    # where a face's box lies stays as facenet-pytorch draws it, the box the classifier's crops are cut from
    with torch.inference_mode():
        out = targets[NET_NAMES.index(stage)](crops)
    regs = out[0].reshape(len(crops), 4).numpy().astype(np.float32)  # P-Net's is a 1x1 map
    if box_targets and len(faces):
        regs = np.where((labels != 0)[:, None], face_offsets(boxes[inside], faces, stage), regs)
    marks = out[1].numpy().astype(np.float32) if stage == "onet" else None
    return Samples(crops.numpy().astype(np.float16), labels, regs, marks)
