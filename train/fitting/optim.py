"""Optimizer (SGD / AdamW) and epoch-level LR schedule (StepLR / cosine / ReduceLROnPlateau)."""

from __future__ import annotations

import math

import torch
from torch import nn

from train.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters only (a frozen backbone has none); no weight decay on biases and norms."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    """None, or a scheduler stepped once per epoch (see step_scheduler)."""
    sched = torch.optim.lr_scheduler
    if cfg.scheduler == "step":
        return sched.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.scheduler == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.lr * 0.01)
    if cfg.scheduler == "plateau":
        return sched.ReduceLROnPlateau(optimizer, mode="max", factor=cfg.gamma, patience=cfg.plateau_patience)
    return None


def stretch_schedule(scheduler, optimizer: torch.optim.Optimizer, epochs: int, start_epoch: int) -> None:
    """A resumed run given more epochs: a cosine schedule anneals over the new length, continuing at its
    closed-form rate for `start_epoch` (setting T_max alone leaves a finished run at the floor rate, since
    CosineAnnealingLR steps recursively from the current rate)."""
    if not isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        return
    scheduler.T_max = epochs
    cos = (1 + math.cos(math.pi * start_epoch / epochs)) / 2
    lrs = [scheduler.eta_min + (base - scheduler.eta_min) * cos for base in scheduler.base_lrs]
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = lrs


def step_scheduler(scheduler, val_f1: float | None) -> None:
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if val_f1 is not None:
            scheduler.step(val_f1)
    else:
        scheduler.step()


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def set_train_mode(model: nn.Module) -> None:
    """Train mode, except BatchNorm layers whose parameters are frozen: a frozen backbone keeps its
    ImageNet statistics (updating them on a small data set would undo the transfer)."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()
