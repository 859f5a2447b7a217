"""Model files from a checkpoint, one module per engines.formats.FORMATS row (pytorch, onnx, tensorrt), each
with the `to_<format>(checkpoint, out, cfg)` exporter its row names; `export_file`, what `mask-train export`
(and its aliases export-onnx, export-trt) runs; and the engine benchmarks (bench)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from engines.config import ExportConfig
from engines.contract import ModelMeta
from engines.errors import UserError
from engines.formats import format_for
from train.config import Config


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


def export_file(source: Path, out: Path, cfg: Config, given: Iterable[str] = ()) -> str:
    """`mask-train export`: check that `out`'s format is exported from `source`'s suffix and reads every
    flag given (`given`: the export flags on the command line), write it, and return the line to print."""
    from train.progress import spinner

    fmt = format_for(out)
    if source.suffix.lower() not in fmt.sources:
        raise UserError(
            f"--checkpoint {source}: a {fmt.suffix} file is exported from {' or '.join(fmt.sources)}, "
            f"not {source.suffix or 'a file without a suffix'}"
        )
    unused = sorted(set(given) - {opt.flag for opt in fmt.options})
    if unused:
        raise UserError(f"{', '.join(unused)}: not a setting of {fmt.suffix} files ({fmt.runtime})")
    export_cfg = cfg.export  # a timing cache named in a config file is read against that file's folder
    if cfg.export.timing_cache:
        export_cfg = replace(cfg.export, timing_cache=str(cfg.resolve(cfg.export.timing_cache)))
    t0 = time.perf_counter()
    with spinner(f"Exporting {source.name} to {fmt.runtime}") as status:
        meta = export(source, out, export_cfg, status=status)
    built = meta.extra.get(fmt.name, {})  # how a plan was built (TensorRT), beside the model's metadata
    what = " ".join([fmt.runtime, *([built["version"]] if "version" in built else [])])
    if any(opt.key == "opset" for opt in fmt.options):
        what += f", opset {export_cfg.opset}"
    return written_line(out, meta, time.perf_counter() - t0, what)
