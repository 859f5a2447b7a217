"""The monitor's sections of config.toml: `Config` = the shared sections (engines.config) + these.
Source kinds are the rows of monitor.sources.kinds.SOURCES; `load_config` and friends read a file into this
Config (the training's sections in the same file accepted by name, engines.config.PROGRAM_SECTIONS)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines import config as base
from engines.config import ConfigError, _f
from monitor.sources.kinds import SOURCES


@dataclass(frozen=True)
class UIConfig:
    refresh_hz: float = _f(8.0, min=0.5, max=60.0)
    max_rows: int = _f(12, min=1, max=200)
    max_flags: int = _f(8, min=1, max=200)
    bell: bool = _f(False)


@dataclass(frozen=True)
class SourceConfig:
    """One `[[sources]]` table: a video source of a monitor that watches several. Per-source settings left
    at 0 take the [monitor] value."""

    name: str = _f("")  # letters, digits, - and _ (it names files and MQTT topics); "" = from the address
    kind: str = _f("camera", choices=lambda: tuple(SOURCES))  # a row of monitor.sources.kinds.SOURCES
    address: str = _f("0")  # camera index, video file or stream URL
    realtime: bool = _f(False)  # a video file played at its own fps, like a camera
    detect_every: int = _f(0, min=0, max=100)
    classify_every: int = _f(0, min=0, max=1000)
    detect_max_side: int = _f(0, min=0, max=8192)
    # the zone: a polygon [[x, y], ...] (>= 3 points) inside which faces count (their box's centre);
    # every value in 0-1: fractions of the frame's width and height, else pixels; empty: the whole frame
    zone: tuple[tuple[float, ...], ...] = _f(())
    min_face_height: int = _f(0, min=0, max=10000)  # faces shorter than this (px in the frame) do not count

    @staticmethod
    def prepare(table: dict[str, Any]) -> dict[str, Any]:
        if isinstance(table.get("address"), int) and not isinstance(table["address"], bool):
            return {**table, "address": str(table["address"])}  # a camera index written as a number
        return table

    def check(self, where: str) -> None:
        if why := zone_problem(self.zone):
            raise ConfigError(f"{where}.zone: {why}")


def zone_problem(points: Any) -> str | None:
    """Why `points` is not a zone polygon (None: it is one, or it is empty = no zone)."""
    if not isinstance(points, (list, tuple)):
        return f"must be a list of [x, y] points, got {points!r}"
    if not points:
        return None
    if len(points) < 3:
        return f"a polygon needs at least 3 points [x, y], got {len(points)}"
    for i, pt in enumerate(points):
        if not isinstance(pt, (list, tuple)) or len(pt) != 2:
            return f"point {i + 1} must be [x, y], got {pt!r}"
        for v in pt:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1e6:
                return f"point {i + 1} = {list(pt)!r}: coordinates must be numbers >= 0 (pixels or 0-1)"
    return None


@dataclass(frozen=True)
class MetricsConfig:
    """`mask-monitor --metrics [HOST:PORT]` and `site --metrics`: Prometheus metrics over HTTP."""

    host: str = _f("127.0.0.1")  # the address when --metrics names none (loopback: this machine only)
    port: int = _f(9108, min=0, max=65535)  # ... and the port (0: any free one)


@dataclass(frozen=True)
class HomeAssistantConfig:
    """MQTT discovery for Home Assistant (with --mqtt): entities per source, a device per machine."""

    enabled: bool = _f(False)  # with --mqtt: publish discovery and states, take the pause / resume buttons
    discovery_prefix: str = _f("homeassistant")  # Home Assistant's discovery prefix
    min_interval_s: float = _f(1.0, min=0.0, max=3600.0)  # a source's states at most this often


@dataclass(frozen=True)
class EvidenceConfig:
    """Evidence of each flag: a snapshot (other faces blurred), optionally a clip; 0600 files, 0700 folder."""

    folder: str = _f("", path=True)  # where evidence is written; "" = off (--evidence DIR overrides)
    clip_s: float = _f(0.0, min=0.0, max=60.0)  # s before and after the flag in a clip; 0: snapshot only
    buffer_mb: float = _f(64.0, min=1.0, max=4096.0)  # the ring buffer of encoded frames, per source
    jpeg_quality: int = _f(85, min=10, max=100)
    max_age_days: float = _f(30.0, min=0.0, max=36500.0)  # evidence older than this is deleted; 0 = kept
    max_mb: float = _f(1000.0, min=0.0, max=1e7)  # over this, the oldest evidence is deleted


@dataclass(frozen=True)
class ComplianceConfig:
    """The share of people without a correct mask over a rolling window, and the alert on it."""

    window_s: float = _f(600.0, min=1.0, max=86400.0)  # people who were seen in the last this many seconds
    threshold: float = _f(0.3, min=0.0, max=1.0)  # an alert when the share stays at or above this ...
    hold_s: float = _f(60.0, min=0.0, max=86400.0)  # ... for this long (and cleared after this long below)
    clear_below: float = _f(0.2, min=0.0, max=1.0)  # cleared when the share stays under this (hysteresis)
    min_people: int = _f(5, min=1, max=100000)  # no alert on fewer people in the window

    def check(self, where: str) -> None:
        if self.clear_below > self.threshold:
            raise ConfigError(
                f"{where}.clear_below = {self.clear_below:g} exceeds threshold = {self.threshold:g}"
            )


@dataclass(frozen=True)
class SaveFacesConfig:
    """`mask-monitor --save-faces DIR`: how long the crops of flagged people are kept (0 = no limit)."""

    max_age_days: float = _f(30.0, min=0.0, max=36500.0)
    max_mb: float = _f(500.0, min=0.0, max=1e7)  # over it, the oldest crops are deleted


@dataclass(frozen=True)
class RecordConfig:
    """`mask-monitor --record`: faces blurred or not, and how long recordings are kept (0 = no limit)."""

    blur: str = _f("faces", choices=("faces", "none"))  # faces: every face blurred but flagged people's
    max_age_days: float = _f(30.0, min=0.0, max=36500.0)
    max_mb: float = _f(2000.0, min=0.0, max=1e7)  # over it, the oldest recordings are deleted


@dataclass(frozen=True)
class Config(base.Config, program="monitor"):
    """What mask-monitor reads: the shared sections and the monitor's."""

    ui: UIConfig = field(default_factory=UIConfig)
    sources: tuple[SourceConfig, ...] = ()  # `[[sources]]` tables; none by default (CLI flags name them)
    save_faces: SaveFacesConfig = field(default_factory=SaveFacesConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)


SECTIONS = base.sections_of(Config)


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    return base.load_config(path, overrides, Config)  # type: ignore[return-value]


def from_dict(data: Mapping[str, Any], source: str = "config", base_dir: str | Path | None = None) -> Config:
    return base.from_dict(data, source, base_dir, Config)  # type: ignore[return-value]


def config_from_args(args: Any) -> Config:
    return base.config_from_args(args, Config)  # type: ignore[return-value]


def choices_of(dotted: str) -> Any:
    return base.choices_of(dotted, Config)
