"""Cross-entropy, focal and label-smoothing losses as one function, per head when the model has three.

    loss = - sum_k q_k (1 - p_k)^gamma log p_k,   q = (1 - eps) one_hot + eps / K

gamma = 0, eps = 0 is cross-entropy; gamma > 0 is the focal loss (Lin et al.), which lowers the weight of
the easy, frequent classes; eps > 0 is label smoothing (torch's definition), which keeps the network from
becoming over-confident on labels that are sometimes wrong (the competition's are).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engines.config import TrainConfig
from engines.labels import split_classes
from engines.models import split_logits


def soft_focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 0.0,
                    smoothing: float = 0.0) -> torch.Tensor:
    logp = F.log_softmax(logits.float(), dim=1)
    k = logits.shape[1]
    q = torch.full_like(logp, smoothing / k)
    q.scatter_add_(1, target.long()[:, None], torch.full_like(logp[:, :1], 1.0 - smoothing))
    weight = (1.0 - logp.exp()).clamp_min(0).pow(gamma) if gamma else 1.0
    return -(q * weight * logp).sum(dim=1).mean()


def class_to_tasks(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class index -> (mask, gender, age) indices (engines.labels.split_classes, the one schema)."""
    return split_classes(target)


class TaskLoss(nn.Module):
    """The configured loss on an 18-way head, or the sum of it over the mask / gender / age heads."""

    def __init__(self, head: str, gamma: float = 0.0, smoothing: float = 0.0) -> None:
        super().__init__()
        self.head, self.gamma, self.smoothing = head, gamma, smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.head == "single":
            return soft_focal_loss(logits, target, self.gamma, self.smoothing)
        parts = zip(split_logits(logits, self.head), class_to_tasks(target))
        return sum(soft_focal_loss(lg, t, self.gamma, self.smoothing) for lg, t in parts)


def build_loss(cfg: TrainConfig, head: str) -> TaskLoss:
    gamma = cfg.focal_gamma if cfg.loss == "focal" else 0.0
    smoothing = cfg.label_smoothing if cfg.loss == "label_smoothing" else 0.0
    return TaskLoss(head, gamma, smoothing)
