"""`mask-train fit --init-from MODEL.pt`: start a new run from another model's weights (fine-tuning a
model on a door's own labels), with the parent's hash recorded in every checkpoint and export."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.backends.torch_backend import load_checkpoint
from engines.config import ModelConfig
from engines.contract import CKPT_MODEL
from engines.errors import UserError
from engines.fileio import require_file, sha256_file
from engines.formats import format_for


@dataclass(frozen=True)
class Parent:
    """The checkpoint a run started from: its weights and what the new model's metadata says of it."""

    path: Path
    sha256: str
    weights: dict[str, Any]

    def extra(self) -> dict[str, str]:
        return {"parent": self.path.name, "parent_sha256": self.sha256}


def load_parent(path: str | os.PathLike[str], model: ModelConfig) -> Parent:
    """Read MODEL.pt (torch.load weights_only=True); one that is not the run's network is a UserError."""
    p = require_file(path, "--init-from checkpoint")
    if format_for(p).name != "pytorch":
        raise UserError(f"--init-from {p}: a {p.suffix} file; fine-tuning starts from a .pt checkpoint")
    meta, ckpt = load_checkpoint(p)
    mine = (model.arch, model.head, model.input_height, model.input_width)
    theirs = (meta.arch, meta.head, meta.input_height, meta.input_width)
    if mine != theirs:
        raise UserError(
            f"--init-from {p}: it is {_describe(*theirs)}, this run trains {_describe(*mine)}; "
            f"set [model] (--arch, --head, --input-height, --input-width) to match it"
        )
    return Parent(p, sha256_file(p), ckpt[CKPT_MODEL])


def _describe(arch: str, head: str, h: int, w: int) -> str:
    return f"{arch} with a {head} head at {w}x{h}"
