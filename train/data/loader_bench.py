"""The measurement behind `mask-train bench-loader`: images/s of the training data pipeline (read JPEG
crop, resize, augment, normalise, collate) for num_workers 0..N, and resize-then-augment against
augment-then-resize.

It prints numbers; nothing asserts them. Crops come from a prepared cache (--cache) or, without one,
from synthetic 384x512 JPEGs made in a temporary folder.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import UserError
from train.config import Config
from train.data.augment import TrainTransform
from train.data.cache import Cache
from train.data.dataset import CropDataset, EpochSampler, make_loader
from train.progress import task


def synthetic_crops(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """JPEG crops with face-like structure (an ellipse, eyes, a mask band) on noise: realistic decode cost."""
    import cv2

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        img = rng.integers(0, 255, (512, 384, 3), dtype=np.uint8)
        img = cv2.GaussianBlur(img, (0, 0), 3)
        cv2.ellipse(
            img, (192, 230), (110, 150), 0, 0, 360, tuple(int(v) for v in rng.integers(90, 220, 3)), -1
        )
        for x in (150, 234):
            cv2.circle(img, (x, 200), 12, (30, 30, 30), -1)
        cv2.rectangle(img, (110, 260), (274, 360), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
        path = folder / f"crop{i:05d}.jpg"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        paths.append(path)
    return paths


def crop_paths(cfg: Config, synthetic: int, tmp: Path, cache_given: bool = False) -> tuple[list[Path], str]:
    """The cache's crops; synthetic ones with --synthetic, or where no cache was named and none exists."""

    cache = Cache(cfg.resolve(cfg.data.cache_dir))
    if not synthetic and cache.manifest_path.is_file():
        paths = [s.crop for s in cache.samples()]
        return paths, f"{len(paths)} cached crops from {cache.root}"
    if cache_given and not synthetic:
        raise UserError(
            f"cache {cache.root} has no manifest ({cache.manifest_path.name}); make it with "
            f"`mask-train prepare --out {cache.root}`, or pass --synthetic N"
        )
    n = synthetic or 256
    return synthetic_crops(tmp, n), f"{n} synthetic 384x512 JPEG crops"


def measure(cfg: Config, paths: list[Path], workers: int, order: str, batches: int) -> float:
    """Images/s over `batches` batches after one warm-up batch (worker start-up is not timed)."""

    m = cfg.model
    ds = CropDataset(
        paths,
        [0] * len(paths),
        TrainTransform((m.input_height, m.input_width), m.mean, m.std, cfg.augment, order),
    )
    sampler = EpochSampler(len(ds), seed=cfg.train.seed)
    loader = make_loader(ds, cfg.data, train=True, sampler=sampler, num_workers=workers)
    seen, epoch, start = -1, 0, 0.0
    while seen < batches:
        sampler.set_epoch(epoch)
        for x, _ in loader:
            seen += 1
            if seen == 0:
                start, images = time.perf_counter(), 0
            else:
                images += len(x)
            if seen >= batches:
                break
        epoch += 1
    elapsed = time.perf_counter() - start
    del loader
    return images / max(elapsed, 1e-9)


def run_bench(
    cfg: Config, paths: list[Path], max_workers: int, batches: int, show: bool = True
) -> dict[str, Any]:
    settings = [(w, "resize_first") for w in range(max_workers + 1)]
    results: dict[str, Any] = {"workers": {}, "order": {}}
    with task("bench-loader", len(settings) + 2, show) as t:
        for w, order in settings:
            results["workers"][w] = measure(cfg, paths, w, order, batches)
            t.advance(1)
        best = max(results["workers"], key=results["workers"].get)
        results["best_workers"] = best
        for order in ("resize_first", "augment_first"):
            results["order"][order] = measure(cfg, paths, 0, order, batches)
            t.advance(1)
    return results
