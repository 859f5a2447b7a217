"""The .pt row of engines.formats.FORMATS: the checkpoint every export starts from (read_source), and a slim
inference checkpoint written from it (to_pytorch)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from engines.config import ExportConfig
from engines.contract import CKPT_META, CKPT_MODEL, ModelMeta
from engines.errors import UserError
from engines.fileio import atomic_path, require_file, sha256_file
from engines.formats import format_for


def read_source(checkpoint: str | os.PathLike[str]) -> tuple[ModelMeta, dict]:
    """The .pt checkpoint every export starts from: (its ModelMeta with the source hash filled in, the
    dict)."""
    from engines.backends.torch_backend import load_checkpoint  # imports torch

    path = require_file(checkpoint, "checkpoint")
    if format_for(path).name != "pytorch":
        raise UserError(
            f"checkpoint {path} is a {path.suffix} file; export starts from a .pt "
            f"checkpoint (best.pt or last.pt of `mask-train fit`)"
        )
    meta, ckpt = load_checkpoint(path)
    return replace(meta, source_sha256=sha256_file(path)), ckpt


def load_for_export(checkpoint: str | os.PathLike[str]):
    """Checkpoint -> (InferenceModel in eval mode, its ModelMeta with the source hash filled in)."""
    from engines.backends.torch_backend import build_inference_model  # imports torch

    meta, ckpt = read_source(checkpoint)
    return build_inference_model(meta, ckpt[CKPT_MODEL], str(checkpoint)), meta


def export_pytorch(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str]) -> ModelMeta:
    """A slim inference checkpoint: only the metadata (with the source hash) and the weights."""
    import torch

    meta, ckpt = read_source(checkpoint)
    with atomic_path(out) as tmp:
        torch.save({CKPT_META: meta.to_dict(), CKPT_MODEL: ckpt[CKPT_MODEL]}, tmp)
    return meta


def to_pytorch(checkpoint: Path, out: Path, cfg: ExportConfig, status=lambda _msg: None) -> ModelMeta:
    """The exporter engines.formats names for .pt files (`status` hears each step: the CLI's spinner)."""
    return export_pytorch(checkpoint, out)
