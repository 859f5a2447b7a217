"""CutMix and MixUp: two images of a batch mixed into one, the loss mixed with the same weight.

    x = lam * x_a + (1 - lam) * x_b                         (MixUp: a blend)
    x = x_a with a box of x_b pasted in, lam = 1 - box area (CutMix)
    loss = lam * loss(logits, y_a) + (1 - lam) * loss(logits, y_b)   per head (train.fitting.losses.TaskLoss)

The partner of image i is image perm[i] of the same batch. Training only: evaluation and prediction never
mix. Random draws come from torch's global generator, which the trainer seeds per epoch and rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from train.config import AugmentConfig


@dataclass(frozen=True)
class Mixed:
    """A mixed batch: images, the partners' targets and the weight of the original targets."""

    x: torch.Tensor
    y_b: torch.Tensor
    lam: float
    kind: str  # "cutmix" | "mixup"


def mixup(x: torch.Tensor, perm: torch.Tensor, lam: float) -> torch.Tensor:
    return lam * x + (1.0 - lam) * x[perm]


def cut_box(height: int, width: int, lam: float, cy: float, cx: float) -> tuple[int, int, int, int]:
    """(y1, y2, x1, x2) of a box covering about 1 - lam of the image, centred at (cy, cx) in [0, 1),
    clipped to the image (so the area, and the lam that goes with it, may be smaller)."""
    ratio = math.sqrt(1.0 - lam)
    h, w = int(height * ratio), int(width * ratio)
    y, x = int(cy * height), int(cx * width)
    return max(y - h // 2, 0), min(y + h // 2, height), max(x - w // 2, 0), min(x + w // 2, width)


def cutmix(x: torch.Tensor, perm: torch.Tensor, box: tuple[int, int, int, int]) -> tuple[torch.Tensor, float]:
    """x with the box taken from each image's partner, and lam = the share of the image left as it was."""
    y1, y2, x1, x2 = box
    out = x.clone()
    out[:, :, y1:y2, x1:x2] = x[perm][:, :, y1:y2, x1:x2]
    area = (y2 - y1) * (x2 - x1) / float(x.shape[2] * x.shape[3])
    return out, 1.0 - area


def _beta(alpha: float) -> float:
    return float(torch.distributions.Beta(alpha, alpha).sample())


def mix_batch(x: torch.Tensor, y: torch.Tensor, cfg: AugmentConfig) -> Mixed | None:
    """A batch mixed by CutMix (share cfg.cutmix of batches), MixUp (cfg.mixup), or left alone (None)."""
    if not cfg.enabled or len(x) < 2 or cfg.cutmix + cfg.mixup <= 0:
        return None
    r = float(torch.rand(()))
    if r >= cfg.cutmix + cfg.mixup:
        return None
    perm = torch.randperm(len(x)).to(x.device)
    if r < cfg.cutmix:
        cy, cx = torch.rand(2).tolist()
        box = cut_box(x.shape[2], x.shape[3], _beta(cfg.cutmix_alpha), cy, cx)
        mixed, lam = cutmix(x, perm, box)
        return Mixed(mixed, y[perm], lam, "cutmix")
    lam = _beta(cfg.mixup_alpha)
    return Mixed(mixup(x, perm, lam), y[perm], lam, "mixup")
