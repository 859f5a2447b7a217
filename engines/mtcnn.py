"""MTCNN's three stages over facenet-pytorch's nets and box helpers, with the resizing done at once.

facenet-pytorch (MIT) resizes the image pyramid and then each candidate box with torch's 'area' interpolation,
one tensor op per box: on a CPU that was a fifth of a 320x240 frame's detection (about 50 boxes a frame, tens
of microseconds each, GIL held between them). Here one integral image per frame gives every window mean of the
same interpolation (adaptive average pooling's windows) for all pyramid levels and all boxes of a stage in a
few array gathers, so the nets see the same input as in facenet-pytorch and find the same faces. The stages,
box arithmetic and non-maximum suppression are facenet-pytorch's own functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def pyramid_scales(height: int, width: int, min_face: float, factor: float) -> list[float]:
    """P-Net sees 12-px faces: scale the image so `min_face` becomes 12 px, then shrink by `factor` until
    the shorter side drops under 12."""
    scale = 12.0 / min_face
    side = min(height, width) * scale
    scales = []
    while side >= 12:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def _windows(origin, length, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each of `size` output cells over `length` input pixels from `origin`:
    adaptive average pooling's windows, floor(i * n / size) to ceil((i + 1) * n / size), which is what torch's
    'area' interpolation averages over. origin, length: (K,) ints; returns (K, size) each."""
    i = np.arange(size)
    length = np.asarray(length)[:, None]
    origin = np.asarray(origin)[:, None]
    return origin + (i * length) // size, origin - ((-(i + 1) * length) // size)


def _area(integral: np.ndarray, image, rows, cols) -> np.ndarray:
    """Window means from the integral images (N, H+1, W+1, 3): `image` (K,) which frame, rows / cols the
    (start, end) pairs of _windows; returns (K, R, C, 3) float32. Four row gathers on the flattened sums
    (numpy's broadcast fancy indexing over three index arrays is several times slower)."""
    (r0, r1), (c0, c1) = rows, cols
    _, hp, wp, _ = integral.shape
    flat = integral.reshape(-1, 3)
    base = np.asarray(image)[:, None, None] * hp
    r0, r1, c0, c1 = r0[:, :, None], r1[:, :, None], c0[:, None, :], c1[:, None, :]

    def at(r, c):
        return np.take(flat, ((base + r) * wp + c).ravel(), axis=0)

    total = at(r1, c1) - at(r0, c1) - at(r1, c0) + at(r0, c0)
    area = ((r1 - r0) * (c1 - c0)).reshape(-1, 1)
    return (total / area).astype(np.float32).reshape(*np.broadcast_shapes(r0.shape, c0.shape), 3)


def _net_input(batch: np.ndarray, device):
    """NHWC float pixels -> the nets' normalised NCHW input (channels-last in memory, as the nets are)."""
    import torch

    return (torch.from_numpy(batch).to(device).permute(0, 3, 1, 2) - 127.5) * 0.0078125


def box_crops(integral: np.ndarray, inds, boxes, size: int, device):
    """Each candidate box cut from its image (clipped to the image, as facenet-pytorch does) and averaged down
    or up to the next net's `size` x `size` input, all boxes at once; boxes wholly outside the image are
    dropped (facenet-pytorch would fail on them). Returns the boxes kept, their image indices, the net input
    (None when no box is left) and which of the given boxes were kept (a bool array)."""
    import torch
    from facenet_pytorch.models.utils.detect_face import pad

    h, w = integral.shape[1] - 1, integral.shape[2] - 1
    y, ey, x, ex = pad(boxes, w, h)
    inside = (ey > y - 1) & (ex > x - 1)
    if not inside.all():
        keep = torch.from_numpy(inside).to(boxes.device)
        boxes, inds = boxes[keep], inds[keep]
        y, ey, x, ex = y[inside], ey[inside], x[inside], ex[inside]
    if len(y) == 0:
        return boxes, inds, None, inside
    rows = _windows(y - 1, ey - y + 1, size)
    cols = _windows(x - 1, ex - x + 1, size)
    crops = _area(integral, inds.cpu().numpy(), rows, cols)
    return boxes, inds, _net_input(crops, device), inside


def integral_images(rgb: np.ndarray) -> np.ndarray:
    """One integral image per frame (float64: the sums of a frame exceed float32's exact integers); it serves
    the whole pyramid and every box crop of both later stages."""
    return np.stack([cv2.integral(im, sdepth=cv2.CV_64F) for im in rgb])


def pnet_windows(
    rgb: np.ndarray,
    integral: np.ndarray,
    min_face: float,
    pnet,
    threshold: float,
    factor: float,
    device,
    torch_pyramid: bool | None = None,
):
    """P-Net over the pyramid: the windows it scores over `threshold` (k x 9: the window's x1, y1, x2, y2 in
    the image, score, its four box offsets), NMS within each scale and image, then within each image, and
    their image indices; None where the pyramid is empty. mask-train fit-detector teaches P-Net on them."""
    import torch
    from facenet_pytorch.models.utils.detect_face import generateBoundingBox
    from torch.nn.functional import interpolate
    from torchvision.ops.boxes import batched_nms

    n, h, w = rgb.shape[:3]
    if torch_pyramid is None:
        torch_pyramid = str(device) != "cpu"
    frames = torch.from_numpy(rgb).to(device).permute(0, 3, 1, 2).float() if torch_pyramid else None
    boxes, image_inds, picks, offset = [], [], [], 0
    for scale in pyramid_scales(h, w, min_face, factor):
        hs, ws = int(h * scale + 1), int(w * scale + 1)
        if frames is not None:
            level = (interpolate(frames, size=(hs, ws), mode="area") - 127.5) * 0.0078125
        else:
            rows = _windows(np.zeros(n, int), np.full(n, h), hs)
            cols = _windows(np.zeros(n, int), np.full(n, w), ws)
            level = _net_input(_area(integral, np.arange(n), rows, cols), device)
        reg, probs = pnet(level)
        found, inds = generateBoundingBox(reg, probs[:, 1], scale, threshold)
        boxes.append(found)
        image_inds.append(inds)
        picks.append(batched_nms(found[:, :4], found[:, 4], inds, 0.5) + offset)
        offset += found.shape[0]
    if not boxes:
        return None
    pick = torch.cat(picks)
    boxes, image_inds = torch.cat(boxes)[pick], torch.cat(image_inds)[pick]
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    return boxes[pick], image_inds[pick]


def propose(boxes, image_inds):
    """Stage 1's candidates: P-Net's windows (pnet_windows) regressed and made square. Returns (k x 5 boxes
    with P-Net's score, their image indices) as tensors."""
    import torch
    from facenet_pytorch.models.utils.detect_face import rerec

    regw = boxes[:, 2] - boxes[:, 0]
    regh = boxes[:, 3] - boxes[:, 1]
    boxes = torch.stack(
        [
            boxes[:, 0] + boxes[:, 5] * regw,
            boxes[:, 1] + boxes[:, 6] * regh,
            boxes[:, 2] + boxes[:, 7] * regw,
            boxes[:, 3] + boxes[:, 8] * regh,
            boxes[:, 4],
        ],
        dim=1,
    )
    return rerec(boxes), image_inds


def refine(integral: np.ndarray, boxes, image_inds, rnet, threshold: float, device):
    """Stage 2: R-Net on 24x24 crops of the candidates; those above `threshold`, NMS, regressed, square."""
    import torch
    from facenet_pytorch.models.utils.detect_face import bbreg, rerec
    from torchvision.ops.boxes import batched_nms

    boxes, image_inds, crops, _ = box_crops(integral, image_inds, boxes, 24, device)
    if crops is None:
        return boxes, image_inds
    reg, probs = rnet(crops)
    score = probs[:, 1]
    keep = score > threshold
    boxes = torch.cat((boxes[keep, :4], score[keep].unsqueeze(1)), dim=1)
    image_inds, reg = image_inds[keep], reg[keep]
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    return rerec(bbreg(boxes[pick], reg[pick])), image_inds[pick]


def output(integral: np.ndarray, boxes, image_inds, onet, threshold: float, device):
    """Stage 3: O-Net on 48x48 crops: final score, box and the five landmarks. Returns (boxes, image indices,
    landmarks k x 5 x 2)."""
    import torch
    from facenet_pytorch.models.utils.detect_face import batched_nms_numpy, bbreg

    points = torch.zeros(0, 5, 2)
    boxes, image_inds, crops, _ = box_crops(integral, image_inds, boxes, 48, device)
    if crops is None:
        return boxes, image_inds, points
    reg, marks, probs = onet(crops)
    score = probs[:, 1]
    keep = score > threshold
    boxes = torch.cat((boxes[keep, :4], score[keep].unsqueeze(1)), dim=1)
    image_inds, reg, marks = image_inds[keep], reg[keep], marks[keep]
    bw = (boxes[:, 2] - boxes[:, 0] + 1).unsqueeze(1)
    bh = (boxes[:, 3] - boxes[:, 1] + 1).unsqueeze(1)
    points = torch.stack((bw * marks[:, :5] + boxes[:, :1] - 1, bh * marks[:, 5:] + boxes[:, 1:2] - 1), dim=2)
    boxes = bbreg(boxes, reg)
    pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
    return boxes[pick], image_inds[pick], points[pick]


def detect_faces(
    rgb: np.ndarray,
    min_face: float,
    nets: Sequence,
    thresholds: Sequence[float],
    factor: float,
    device,
    torch_pyramid: bool | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Boxes (k x 5: x1, y1, x2, y2, score) and landmarks (k x 5 x 2) for each of N equal-size RGB images
    (N x H x W x 3 uint8). Call under torch.inference_mode(). `torch_pyramid`: shrink the pyramid levels with
    torch on `device` (the same values) instead of from the integral image; None = on a GPU only, where the
    frames are better sent once than every level."""
    pnet, rnet, onet = nets
    n = rgb.shape[0]
    integral = integral_images(rgb)
    windows = pnet_windows(rgb, integral, min_face, pnet, thresholds[0], factor, device, torch_pyramid)
    if windows is None:
        return [np.zeros((0, 5), np.float32)] * n, [np.zeros((0, 5, 2), np.float32)] * n
    boxes, image_inds = refine(integral, *propose(*windows), rnet, thresholds[1], device)
    boxes, image_inds, points = output(integral, boxes, image_inds, onet, thresholds[2], device)
    boxes, points, image_inds = boxes.cpu().numpy(), points.cpu().numpy(), image_inds.cpu().numpy()
    return (
        [boxes[image_inds == i] for i in range(n)],
        [points[image_inds == i] for i in range(n)],
    )
