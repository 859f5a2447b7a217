"""Cross-entropy, focal and label-smoothing losses as one function, per head when the model has three.

    loss = - sum_k q_k (1 - p_k)^gamma log p_k,   q = (1 - eps) one_hot + eps / K

gamma = 0, eps = 0 is cross-entropy; gamma > 0 is the focal loss (Lin et al.), which lowers the weight of
the easy, frequent classes; eps > 0 is label smoothing (torch's definition), which keeps the network from
becoming over-confident on labels that are sometimes wrong (the competition's are).

Partial labels (train.data.targets: a sample may lack gender, age or both) need the multi head: each head's
loss is taken over the samples that have that task and scaled by their share of the batch,

    loss = sum_heads  n_labelled(head) / N * per_head(logits[labelled], target[labelled])

so a sample without gender and age teaches only the mask head, and a head with few labelled samples in a
batch pulls as much as those samples are worth (no more). An 18-way single head cannot be trained on a
sample whose class is unknown; the trainer refuses that combination with one line.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from engines.models import split_logits
from train.data.targets import split_targets


def soft_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, gamma: float = 0.0, smoothing: float = 0.0
) -> torch.Tensor:
    logp = F.log_softmax(logits.float(), dim=1)
    k = logits.shape[1]
    q = torch.full_like(logp, smoothing / k)
    q.scatter_add_(1, target.long()[:, None], torch.full_like(logp[:, :1], 1.0 - smoothing))
    weight = (1.0 - logp.exp()).clamp_min(0).pow(gamma) if gamma else 1.0
    return -(q * weight * logp).sum(dim=1).mean()


PerHeadLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits [N, K], targets [N]) -> loss


class TaskLoss(nn.Module):
    """A per-head loss on an 18-way head, or its sum over the mask / gender / age heads.

    With a mixed batch (train.fitting.mixing: CutMix, MixUp) each head's loss is mixed on its own,
    lam * loss(logits, y_a) + (1 - lam) * loss(logits, y_b), so whatever a per-head loss does with its
    targets (smoothing, focal weights, unknown targets it skips) holds for both partners: a partner whose
    gender or age is unknown adds nothing to that head's (1 - lam) part."""

    def __init__(self, head: str, per_head: PerHeadLoss = soft_focal_loss) -> None:
        super().__init__()
        self.head, self.per_head = head, per_head

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        target_b: torch.Tensor | None = None,
        lam: float = 1.0,
    ) -> torch.Tensor:
        if self.head == "single":
            return self._mixed(logits, target, target_b, lam)
        heads = split_logits(logits, self.head)
        parts = split_targets(target)
        parts_b = split_targets(target_b) if target_b is not None else [None] * len(heads)
        return sum(self._mixed(lg, t, tb, lam) for lg, t, tb in zip(heads, parts, parts_b))

    def _mixed(
        self, logits: torch.Tensor, target: torch.Tensor, target_b: torch.Tensor | None, lam: float
    ) -> torch.Tensor:
        own = masked(self.per_head, logits, target)
        if target_b is None or lam >= 1.0:
            return own
        return lam * own + (1.0 - lam) * masked(self.per_head, logits, target_b)


def masked(per_head: PerHeadLoss, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """per_head over the samples whose target is known (>= 0), weighted by their share of the batch."""
    known = target >= 0
    n = int(known.sum())
    if n == len(target):
        return per_head(logits, target)
    if n == 0:
        return logits.sum() * 0.0  # keeps the graph (DDP needs every parameter used)
    return per_head(logits[known], target[known]) * (n / len(target))


class LossSettings(Protocol):
    """What a loss reads of [train] (a train.config.TrainConfig; not imported: the config reads LOSSES)."""

    loss: str
    focal_gamma: float
    label_smoothing: float


# config train.loss -> the per-head loss it means. A new loss is its function above and one row here: the
# rows are the choices of train.config.TrainConfig.loss.
LOSSES: dict[str, Callable[[LossSettings], PerHeadLoss]] = {
    "ce": lambda cfg: soft_focal_loss,
    "focal": lambda cfg: partial(soft_focal_loss, gamma=cfg.focal_gamma),
    "label_smoothing": lambda cfg: partial(soft_focal_loss, smoothing=cfg.label_smoothing),
}


def build_loss(cfg: LossSettings, head: str) -> TaskLoss:
    return TaskLoss(head, LOSSES[cfg.loss](cfg))
