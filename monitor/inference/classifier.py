"""Which classifier file the monitor runs, and loading it. Its own module because both commands need it
(`mask-monitor` in monitor.cli, `mask-monitor bench` in monitor.bench.pipeline) and neither
imports the other."""

from __future__ import annotations

from pathlib import Path

from engines.backends.base import Engine
from engines.errors import UserError
from engines.fileio import require_file
from engines.formats import format_for, load_engine
from monitor.config import Config

_MISSING_HINT = (
    "pass --engine FILE (.onnx, .engine or .pt) or build the demo model (`make demo-model`: docs/training.md)"
)


def engine_path(engine: Path | None, cfg: Config) -> Path:
    """`engine` (--engine), else config engine.path; an unknown suffix or a missing file is one line saying
    which."""
    path = engine if engine is not None else cfg.locate(cfg.engine.path)
    format_for(path)  # an unknown suffix says so, whether or not the file exists
    try:
        return require_file(path, "engine file", "--engine" if engine is not None else "config engine.path")
    except UserError as exc:
        raise UserError(f"{exc}; {_MISSING_HINT}") from None


def load_classifier(engine: Path | None, cfg: Config) -> Engine:
    """The classifier file of `engine_path`, loaded by its format's backend on config
    engine.device/threads."""
    return load_engine(engine_path(engine, cfg), cfg.engine.device, cfg.engine.threads)
