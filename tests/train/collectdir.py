"""A collect folder as `mask-monitor --collect` writes it (train/label/store.py documents the format): small
crops cut from the shared real photos, and collected.jsonl with the model's guess for each."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from tests.conftest import FACES

PHOTOS = ("astronaut.png", "biden.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg")
# top mask probability per crop: crops 1 and 3 are "unsure" at label.unsure_below = 0.75
MASK_PROBS = ([0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8], [0.2, 0.5, 0.3], [0.05, 0.05, 0.9])
CROP_SIZE = (96, 128)  # width, height: the page shows them at 120x160, the same 3:4


def make_collect_dir(folder: Path, n: int = 5, jsonl: bool = True) -> list[str]:
    """n crops (000000.jpg, ...) and, with jsonl, one record per crop; returns the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    names, records = [], []
    for i in range(n):
        img = cv2.imread(str(FACES / PHOTOS[i % len(PHOTOS)]))
        h, w = img.shape[:2]
        side = min(h, w * 4 // 3)
        top, width = (h - side) // 2, side * 3 // 4
        left = (w - width) // 2
        crop = cv2.resize(img[top : top + side, left : left + width], CROP_SIZE, interpolation=cv2.INTER_AREA)
        name = f"{i:06d}.jpg"
        cv2.imwrite(str(folder / name), crop)
        names.append(name)
        probs = MASK_PROBS[i % len(MASK_PROBS)]
        records.append(
            {
                "file": name,
                "source": "entrance.mp4",
                "time": 1.5 * i,
                "frame": 40 * i,
                "track": i + 1,
                "predicted": {
                    "mask": ("wear", "incorrect", "not_wear")[int(np.argmax(probs))],
                    "gender": "male",
                    "age": "30-59",
                },
                "probs": {"mask": probs, "gender": [0.6, 0.4], "age": [0.2, 0.6, 0.2]},
                "reason": "uncertain" if max(probs) < 0.75 else "confident",
                "model_sha256": "0" * 64,
            }
        )
    if jsonl:
        (folder / "collected.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return names
