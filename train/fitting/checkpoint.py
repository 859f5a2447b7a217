"""best.pt / last.pt: what engines.backends loads (meta + bare model weights) plus what --resume needs.

Every value inside is a tensor or plain data, so torch.load(weights_only=True) reads it; each file is
written to a temporary name and renamed, so a crash or Ctrl-C never leaves half a checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engines.backends.torch_backend import load_checkpoint
from engines.contract import CKPT_META, CKPT_MODEL, ModelMeta
from engines.errors import UserError
from engines.fileio import atomic_path


def bare(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (its state_dict keys carry no 'module.')."""
    return getattr(model, "module", model)


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    meta: ModelMeta,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    epoch: int = 0,
    config: dict[str, Any] | None = None,
    metrics: list[dict] | None = None,
    best: dict[str, Any] | None = None,
    split: dict[str, Any] | None = None,
) -> None:
    payload = {
        CKPT_META: meta.to_dict(),
        CKPT_MODEL: {k: v.detach().cpu() for k, v in bare(model).state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "epoch": int(epoch),
        "config": config or {},
        "metrics": metrics or [],
        "best": best or {},
        "split": split or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_training_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint for --resume: the whole dict, read with weights_only=True."""
    p = Path(path)
    if not p.is_file():  # not require_file: the message says why the file was wanted
        raise UserError(f"checkpoint {p} does not exist: nothing to resume")
    _, ckpt = load_checkpoint(p)
    if "optimizer" not in ckpt or "epoch" not in ckpt:
        raise UserError(f"{p} holds weights only (no optimizer state, no epoch): it cannot be resumed")
    ckpt["source"] = str(p)  # for messages; never saved (save_checkpoint writes its own keys)
    return ckpt
