"""One training epoch and one pass of inference over a loader: short, device-agnostic functions."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from engines.labels import NUM_CLASSES
from engines.models import probabilities
from train.config import AugmentConfig
from train.fitting.mixing import mix_batch
from train.fitting.optim import set_train_mode


@dataclass
class EpochStats:
    loss_sum: float = 0.0
    n: int = 0
    seconds: float = 0.0

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.n, 1)


def autocast(device: torch.device, amp: bool):
    """Mixed precision on CUDA only: on a CPU it slows mobilenets down, so it stays off there."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def make_scaler(device: torch.device, amp: bool) -> torch.amp.GradScaler:
    return torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")


def _group_size(i: int, n_batches: int, accumulate: int) -> int:
    """Micro-batches in the accumulation group of batch i (the last group may be shorter)."""
    start = (i // accumulate) * accumulate
    return min(accumulate, n_batches - start)


def train_one_epoch(
    model: nn.Module,
    loader,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    scaler: torch.amp.GradScaler,
    accumulate: int = 1,
    amp: bool = False,
    on_batch: Callable[[int, float], None] | None = None,
    mixing: AugmentConfig | None = None,
) -> EpochStats:
    """Gradient accumulation over `accumulate` batches; DDP gradients synchronised on the last one only.
    With `mixing` ([augment] cutmix / mixup), batches are mixed and the loss with them."""
    set_train_mode(model)
    stats, start = EpochStats(), time.perf_counter()
    n_batches = len(loader)
    optimizer.zero_grad(set_to_none=True)
    for i, (x, y) in enumerate(loader):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        step_now = (i + 1) % accumulate == 0 or i + 1 == n_batches
        sync = contextlib.nullcontext() if step_now or not hasattr(model, "no_sync") else model.no_sync()
        mixed = mix_batch(x, y, mixing) if mixing is not None else None
        with sync:
            with autocast(device, amp):
                if mixed is None:
                    loss = loss_fn(model(x), y)
                else:
                    loss = loss_fn(model(mixed.x), y, mixed.y_b, mixed.lam)
            scaler.scale(loss / _group_size(i, n_batches, accumulate)).backward()
        if step_now:
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        stats.loss_sum += value * len(y)
        stats.n += len(y)
        if on_batch:
            on_batch(len(y), value)
    stats.seconds = time.perf_counter() - start
    return stats


@torch.inference_mode()
def predict_loader(
    model: nn.Module,
    loader,
    head: str,
    *,
    device: torch.device,
    amp: bool = False,
    loss_fn: nn.Module | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """(probabilities [N, 18], targets [N], mean loss) over a loader, in its order."""
    model.eval()
    probs, targets, loss_sum = [], [], 0.0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        if loss_fn is not None:
            loss_sum += float(loss_fn(logits, y)) * len(y)
        probs.append(probabilities(logits, head).cpu().numpy())
        targets.append(y.cpu().numpy())
        if on_batch:
            on_batch(len(y))
    n = sum(len(t) for t in targets)
    if n == 0:
        return np.zeros((0, NUM_CLASSES), np.float32), np.zeros(0, np.int64), 0.0
    return np.concatenate(probs), np.concatenate(targets), loss_sum / n
