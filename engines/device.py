"""Where PyTorch work runs: one rule for the detector, the .pt classifier and training."""

from __future__ import annotations

import os

from engines.errors import UserError


def cpu_cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_device(pref: str, setting: str) -> str:
    """'auto' takes CUDA when there is one; an explicit 'cuda' without one is a one-line error naming the
    setting it came from (`setting`, e.g. "detector.device")."""
    import torch

    cuda = torch.cuda.is_available()
    if pref == "cuda" and not cuda:
        raise UserError(f"{setting} = 'cuda' but no CUDA device is available; use 'cpu' or 'auto'")
    return "cuda" if pref in ("auto", "cuda") and cuda else "cpu"


def set_torch_threads(threads: int) -> None:
    """threads > 0: PyTorch's CPU threads for this whole process (PyTorch keeps one count per process);
    0 leaves PyTorch's default (all cores)."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
