"""PNG charts drawn with OpenCV (matplotlib is not a dependency): bar charts, a confusion matrix and a
reliability diagram."""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

from engines.fileio import atomic_write_bytes

FONT = cv2.FONT_HERSHEY_SIMPLEX
INK, GRID, BAR, WHITE = (30, 30, 30), (210, 210, 210), (180, 120, 40), (255, 255, 255)


def _text(
    img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45, color=INK, thick: int = 1
) -> None:
    cv2.putText(img, text, org, FONT, scale, color, thick, cv2.LINE_AA)


def _text_width(text: str, scale: float = 0.45) -> int:
    return cv2.getTextSize(text, FONT, scale, 1)[0][0]


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, width: int = 900) -> np.ndarray:
    """Horizontal bars, one row per label, the value written at the end of each bar."""
    row, top = 24, 44
    label_w = max([_text_width(str(label)) for label in labels] + [40]) + 16
    img = np.full((top + row * len(labels) + 16, width, 3), 255, np.uint8)
    _text(img, title, (10, 26), 0.6, thick=2)
    vmax = max([float(v) for v in values] + [1e-9])
    span = width - label_w - 90
    for i, (label, v) in enumerate(zip(labels, values)):
        y = top + i * row
        _text(img, str(label), (8, y + 16))
        length = int(round(span * float(v) / vmax))
        cv2.rectangle(img, (label_w, y + 4), (label_w + max(length, 1), y + row - 4), BAR, -1)
        shown = f"{v:.3g}" if isinstance(v, float) and not float(v).is_integer() else f"{int(v)}"
        _text(img, shown, (label_w + length + 6, y + 16))
    return img


def confusion_image(cm: np.ndarray, labels: Sequence[str], title: str, cell: int = 34) -> np.ndarray:
    """Rows = truth (named), columns = prediction (numbered); colour = share of the row."""
    n = len(labels)
    names = [f"{i:2d} {label}" for i, label in enumerate(labels)]
    left, top = max(_text_width(s) for s in names) + 20, 70
    img = np.full((top + n * cell + 40, left + n * cell + 20, 3), 255, np.uint8)
    _text(img, title, (10, 24), 0.6, thick=2)
    _text(img, "rows: truth, columns: prediction", (10, 48), 0.45)
    rows = cm.sum(axis=1, keepdims=True).astype(np.float64)
    share = np.divide(cm, rows, out=np.zeros_like(cm, dtype=np.float64), where=rows > 0)
    for i in range(n):
        _text(img, names[i], (8, top + i * cell + cell // 2 + 5))
        _text(img, str(i), (left + i * cell + 8, top - 6), 0.4)
        for j in range(n):
            x, y = left + j * cell, top + i * cell
            level = int(255 - 200 * share[i, j])
            colour = (level, level, 255) if i != j else (level, 255, level)
            cv2.rectangle(img, (x, y), (x + cell, y + cell), colour if cm[i, j] else WHITE, -1)
            cv2.rectangle(img, (x, y), (x + cell, y + cell), GRID, 1)
            if cm[i, j]:
                _text(img, str(int(cm[i, j])), (x + 4, y + cell // 2 + 5), 0.38)
    return img


def reliability_image(
    after: dict[str, Sequence[float]],
    before: dict[str, Sequence[float]] | None,
    title: str,
    size: int = 420,
) -> np.ndarray:
    """A reliability diagram: per confidence bin, the accuracy (bars; `before` as grey outlines) against the
    diagonal a calibrated model follows; bins with no sample are left empty. Bin dicts as
    engines.calibration.reliability gives them (count, confidence, accuracy)."""
    left, top, pad = 50, 56, 20
    img = np.full((top + size + 50, left + size + pad, 3), 255, np.uint8)
    _text(img, title, (10, 24), 0.5, thick=2)
    legend = "bars: accuracy per confidence bin" + ("; grey: before calibration" if before else "")
    _text(img, legend, (10, 44), 0.4)
    x0, y0 = left, top + size  # the origin, bottom left

    def px(conf: float, acc: float) -> tuple[int, int]:
        return int(round(x0 + conf * size)), int(round(y0 - acc * size))

    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        cv2.line(img, px(0, v), px(1, v), GRID, 1)
        _text(img, f"{v:.2f}", (8, px(0, v)[1] + 4), 0.35)
        _text(img, f"{v:.2f}", (px(v, 0)[0] - 12, y0 + 16), 0.35)
    _text(img, "top probability (confidence)", (left + size // 2 - 90, y0 + 36), 0.4)
    n = len(after["count"])
    for series, colour, filled in ((after, BAR, True), (before, (150, 150, 150), False)):
        if not series:
            continue
        for i in range(n):
            if series["count"][i] <= 0:
                continue
            a, b = px(i / n, series["accuracy"][i]), px((i + 1) / n, 0)
            cv2.rectangle(img, (a[0] + 1, a[1]), (b[0] - 1, b[1]), colour, -1 if filled else 2)
    cv2.line(img, px(0, 0), px(1, 1), (40, 40, 200), 1, cv2.LINE_AA)
    cv2.rectangle(img, px(0, 1), px(1, 0), INK, 1)
    return img


def save_png(path: str | os.PathLike[str], img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover
        raise RuntimeError(f"cannot encode {path}")
    atomic_write_bytes(path, buf.tobytes())
