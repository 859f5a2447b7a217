"""How a monitor run was asked to behave: `mask-monitor`'s flags as one frozen value (monitor.cli)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Options:
    headless: bool = False
    bell: bool = False
    realtime: bool = False
    events: Path | None = None
    save_faces: Path | None = None
    record: Path | None = None
    max_frames: int | None = None
    duration: float | None = None
    collect: Path | None = None  # --collect DIR: crops of the people the model was unsure of (opt-in)
    metrics: tuple[str, int] | None = None  # --metrics [HOST:PORT]: Prometheus metrics served there
    evidence: Path | None = None  # --evidence DIR: a snapshot (and clip) of each flag
