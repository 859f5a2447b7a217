"""The small files of a run folder: the resolved config (a TOML that `--config` reads back), metrics.jsonl,
the split. All written atomically."""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from engines.errors import UserError
from engines.fileio import atomic_path, atomic_write_text
from train.config import SECTIONS, Config


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string is JSON-escaped text
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def config_toml(cfg: Config) -> str:
    """The whole config with path keys made absolute, so the file works from any folder ("" stays "":
    the default it means, not the config's folder)."""
    lines = ["# resolved config of this run: `mask-train fit --config <this file>` repeats it"]
    for name in SECTIONS:
        section = getattr(cfg, name)
        lines.append(f"\n[{name}]")
        for f in fields(section):
            v = getattr(section, f.name)
            if f.metadata.get("path") and v:
                v = str(cfg.locate(v) if f.metadata.get("bundled") else cfg.resolve(v))
            lines.append(f"{f.name} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def write_config(run_dir: Path, cfg: Config) -> Path:
    path = run_dir / "config.toml"
    atomic_write_text(path, config_toml(cfg))
    return path


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl: one JSON object per epoch, rewritten whole (a resumed run keeps its history)."""
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))


def _check_writable_parent(p: Path, flag: str) -> None:
    """The nearest existing folder above `p` is a folder this process may write in (missing ones are made)."""

    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag} {p}: {parent} is not a folder")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{flag} {p}: no permission to write in {parent}")


def check_output_file(path: str | os.PathLike[str], flag: str) -> Path:
    """Refuse an output file that cannot be written, before the long work that produces it (atomic writes
    make missing folders, so only a folder in the way or a file where a folder should be is an error)."""

    p = Path(path)
    if p.is_dir():
        raise UserError(f"{flag} {p} is a folder: give a file name")
    _check_writable_parent(p, flag)
    return p


def check_output_dir(path: str | os.PathLike[str], flag: str) -> Path:
    """Refuse an output folder that cannot be made or written in (a file of that name, a file above it, no
    permission), before the long work that fills it."""

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag} {p} is a file: give a folder")
    if p.is_dir():
        if not os.access(p, os.W_OK):
            raise UserError(f"{flag} {p}: no permission to write in it")
    else:
        _check_writable_parent(p, flag)
    return p


def save_npz(path: str | os.PathLike[str], **arrays: Any) -> None:
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
