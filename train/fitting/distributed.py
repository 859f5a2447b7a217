"""DistributedDataParallel under torchrun, and the same code path on a single process.

`torchrun --nproc_per_node N -m train fit ...` sets RANK / WORLD_SIZE / LOCAL_RANK; `setup` reads them and
joins the process group (nccl on GPUs, gloo on CPU). Rank 0 alone writes files and shows progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from engines.device import resolve_device


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's value on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's value, in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def sum(self, values: list[float]) -> list[float]:
        if not self.active:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def sync_buffers(self, model: nn.Module) -> None:
        """BatchNorm statistics as rank 0 has them: each rank's last forward updated its own copy."""
        if self.active:
            for buf in model.buffers():
                dist.broadcast(buf, src=0)

    def wrap(self, model: nn.Module) -> nn.Module:
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(model, device_ids=ids)

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()


def rank_device(pref: str, local_rank: int = 0) -> torch.device:
    """This rank's device: its own GPU when training runs on CUDA."""
    if resolve_device(pref, "train.device") == "cuda":
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def setup(device_pref: str = "auto") -> Dist:
    """A Dist for this process: the torchrun group when launched by torchrun, else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = rank_device(device_pref, local_rank)
    if world <= 1:
        return Dist(device=device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # rank 0 may spend a long time preparing the cache while the others wait at a barrier
    dist.init_process_group(backend, timeout=timedelta(hours=2))
    return Dist(rank, world, local_rank, device, backend)
