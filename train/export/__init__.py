"""Model files from a checkpoint, one module per engines.formats.FORMATS row (pytorch, onnx, tensorrt), each
with the `to_<format>(checkpoint, out, cfg)` exporter its row names; and the engine benchmarks (bench)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engines.config import ExportConfig
from engines.contract import ModelMeta
from engines.formats import format_for


def export(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    cfg: ExportConfig = ExportConfig(),
    **options: Any,
) -> ModelMeta:
    """Write `out` in the format its suffix names: the exporter of its engines.formats row, so the one table
    decides both what is written and which backend loads it. `options` go to that exporter (e.g. status=)."""
    exporter = format_for(out).load("exporter")
    return exporter(Path(checkpoint), Path(out), cfg, **options)


def written_line(out: Path, meta: ModelMeta, seconds: float, what: str) -> str:
    """The one line an export command prints about the file it wrote."""
    size = out.stat().st_size / 1e6
    return (
        f"wrote {out} ({what}, {meta.precision}, {meta.arch} {meta.head} head, input "
        f"{meta.input_width}x{meta.input_height}, {size:.1f} MB, {seconds:.1f} s)"
    )
