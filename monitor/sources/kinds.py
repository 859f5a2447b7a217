"""What the monitor can watch: one row per kind of video source (camera, file, stream).

A row gives the command-line flag, how the flag's text becomes a target, whether the source is live (a
newest-frame slot and reconnects) or a file (every frame in order), how it is named to the user, the one
line shown when it will not open, and the function that opens it. `mask-monitor`'s flags are built from
this table, so a new kind of source (a GStreamer pipeline, a folder of images) is one opener and one row.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from engines.errors import UserError
from engines.fileio import require_file
from engines.secrets import STREAM_PASSWORD_ENV, redact_address, with_password

STREAM_TIMEOUT_MS = 5000


class Device(Protocol):
    """What cv2.VideoCapture offers and the capture thread uses; a fake camera implements the same."""

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, Any]: ...
    def get(self, prop: int) -> float: ...
    def release(self) -> None: ...


def _quiet_cv2() -> Any:
    """cv2, with OpenCV's and libav's own warnings silenced: they would come before our one-line error."""
    import cv2
    from cv2.utils import logging as cv_logging

    cv_logging.setLogLevel(cv_logging.LOG_LEVEL_ERROR)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    return cv2


def open_camera(index: int | str) -> Device:
    return _quiet_cv2().VideoCapture(index)


def open_file(path: int | str) -> Device:
    require_file(str(path), "video file")
    return _quiet_cv2().VideoCapture(str(path))


def open_stream(url: int | str) -> Device:
    """A stream; its password from MASK_MONITOR_STREAM_PASSWORD where the URL names a user and no password
    (read at every reconnect, and never kept in the source's target)."""
    cv2 = _quiet_cv2()
    # a stream that stalls without an error must still end read(), so that the reconnect logic runs
    timeouts = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        STREAM_TIMEOUT_MS,
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        STREAM_TIMEOUT_MS,
    ]
    address = with_password(str(url), os.environ.get(STREAM_PASSWORD_ENV))
    return cv2.VideoCapture(address, cv2.CAP_FFMPEG, timeouts)


@dataclass(frozen=True)
class SourceKind:
    name: str  # SourceSpec.kind
    metavar: str
    help: str
    parse: Callable[[str], int | str]  # the flag's text -> target
    live: bool  # newest frame only, reconnect with back-off
    title: str  # "{target}" -> what the user reads (the target with its user, password and query as ***)
    unreadable: str  # the one line when it will not open or gives no frame
    open: Callable[[int | str], Device]

    @property
    def flag(self) -> str:
        return f"--{self.name}"


SOURCES: dict[str, SourceKind] = {
    kind.name: kind
    for kind in (
        SourceKind(
            name="camera",
            metavar="N",
            help="camera index (0 = the first camera)",
            parse=int,
            live=True,
            title="camera {target}",
            unreadable="camera {target} cannot be opened (not connected, or in use by another program?)",
            open=open_camera,
        ),
        SourceKind(
            name="video",
            metavar="FILE",
            help="a video file",
            parse=str,
            live=False,
            title="video {target}",
            unreadable="video {target} cannot be read (not a video file, or its codec is missing)",
            open=open_file,
        ),
        SourceKind(
            name="url",
            metavar="URL",
            help="a stream (rtsp://, http://)",
            parse=str,
            live=True,
            title="stream {target}",
            unreadable="stream {target} cannot be opened (wrong address, or the server is down?)",
            open=open_stream,
        ),
    )
}


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # a key of SOURCES
    target: int | str  # camera index, file path or URL

    def __post_init__(self) -> None:
        if self.kind not in SOURCES:
            raise ValueError(f"unknown source kind {self.kind!r}; expected one of {', '.join(SOURCES)}")

    @property
    def source_kind(self) -> SourceKind:
        return SOURCES[self.kind]

    @property
    def live(self) -> bool:
        return self.source_kind.live

    def describe(self) -> str:
        """What the user reads: never the address's user, password or query string."""
        return self.source_kind.title.format(target=redact_address(self.target))


Opener = Callable[[SourceSpec], Device]


def open_cv(spec: SourceSpec) -> Device:
    """The default opener: the row's own (tests pass a fake one to Capture instead)."""
    return spec.source_kind.open(spec.target)


def open_error(spec: SourceSpec) -> UserError:
    """The one line for a source that will not open or gives no frame."""
    return UserError(spec.source_kind.unreadable.format(target=redact_address(spec.target)))


# --- several sources in one monitor ---

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # names files and MQTT topics: no / + # or spaces


@dataclass(frozen=True)
class Source:
    """A named source of a monitor: its spec, and the settings it may change for itself."""

    name: str
    spec: SourceSpec
    realtime: bool = False
    monitor: dict[str, Any] = field(default_factory=dict, hash=False)  # [monitor] keys set for this source


def default_name(spec: SourceSpec) -> str:
    """camera 0 -> camera0; door3.mp4 -> door3; rtsp://user:pw@10.0.0.5/stream1?token=x -> 10.0.0.5-stream1
    (host and path only: never the user, password or query)."""
    if spec.kind == "camera":
        text = f"camera{spec.target}"
    elif spec.kind == "video":
        text = Path(str(spec.target)).stem
    else:
        u = urlsplit(str(spec.target))
        text = "-".join(p for p in (u.hostname or "stream", *u.path.split("/")) if p)
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or spec.kind
    return text[:64]


def check_name(name: str, where: str) -> str:
    if not _NAME_OK.match(name):
        raise UserError(
            f"{where}: source name {name!r} must be 1-64 letters, digits, '-', '_' or '.' (it names files "
            "and MQTT topics)"
        )
    return name


def unique_names(sources: list[Source]) -> list[Source]:
    """Sources with distinct names: a repeated default name gets -2, -3, ...; a repeated chosen one is an
    error."""
    seen: dict[str, int] = {}
    out = []
    for s in sources:
        name = s.name
        if name in seen:
            seen[name] += 1
            name = f"{s.name}-{seen[s.name]}"
        seen.setdefault(name, 1)
        out.append(replace(s, name=name))
    return out


def sources_from_config(tables: tuple[Any, ...], where: str = "config [[sources]]") -> list[Source]:
    """`[[sources]]` tables (engines.config.SourceConfig) -> Sources."""
    out, names = [], set()
    for i, t in enumerate(tables):
        kind = SOURCES[t.kind]
        try:
            target = kind.parse(t.address)
        except ValueError:
            address = redact_address(t.address)
            raise UserError(f"{where} #{i + 1}: address {address!r} is not a {kind.metavar}") from None
        spec = SourceSpec(t.kind, target)
        name = check_name(t.name, f"{where} #{i + 1}") if t.name else default_name(spec)
        if t.name and name in names:
            raise UserError(f"{where} #{i + 1}: the name {name!r} is used twice")
        names.add(name)
        overrides = {
            k: getattr(t, k) for k in ("detect_every", "classify_every", "detect_max_side") if getattr(t, k)
        }
        out.append(Source(name, spec, t.realtime, overrides))
    return unique_names(out)
