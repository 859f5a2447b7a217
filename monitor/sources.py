"""What the monitor can watch: one row per kind of video source (camera, file, stream).

A row gives the command-line flag, how the flag's text becomes a target, whether the source is live (a
newest-frame slot and reconnects) or a file (every frame in order), how it is named to the user, the one
line shown when it will not open, and the function that opens it. `mask-monitor`'s flags are built from
this table, so a new kind of source (a GStreamer pipeline, a folder of images) is one opener and one row.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from engines.errors import UserError
from engines.fileio import require_file

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
    cv2 = _quiet_cv2()
    # a stream that stalls without an error must still end read(), so that the reconnect logic runs
    timeouts = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        STREAM_TIMEOUT_MS,
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        STREAM_TIMEOUT_MS,
    ]
    return cv2.VideoCapture(str(url), cv2.CAP_FFMPEG, timeouts)


@dataclass(frozen=True)
class SourceKind:
    name: str  # SourceSpec.kind
    metavar: str
    help: str
    parse: Callable[[str], int | str]  # the flag's text -> target
    live: bool  # newest frame only, reconnect with back-off
    title: str  # "{target}" -> what the user reads
    unreadable: str  # the one line when it will not open or gives no frame
    open: Callable[[int | str], Device]

    @property
    def flag(self) -> str:
        return f"--{self.name}"


SOURCES: dict[str, SourceKind] = {
    kind.name: kind
    for kind in (
        SourceKind(
            "camera",
            "N",
            "camera index (0 = the first camera)",
            int,
            True,
            "camera {target}",
            "camera {target} cannot be opened (not connected, or in use by another program?)",
            open_camera,
        ),
        SourceKind(
            "video",
            "FILE",
            "a video file",
            str,
            False,
            "video {target}",
            "video {target} cannot be read (not a video file, or its codec is missing)",
            open_file,
        ),
        SourceKind(
            "url",
            "URL",
            "a stream (rtsp://, http://)",
            str,
            True,
            "stream {target}",
            "stream {target} cannot be opened (wrong address, or the server is down?)",
            open_stream,
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
        return self.source_kind.title.format(target=self.target)


Opener = Callable[[SourceSpec], Device]


def open_cv(spec: SourceSpec) -> Device:
    """The default opener: the row's own (tests pass a fake one to Capture instead)."""
    return spec.source_kind.open(spec.target)


def open_error(spec: SourceSpec) -> UserError:
    """The one line for a source that will not open or gives no frame."""
    return UserError(spec.source_kind.unreadable.format(target=spec.target))
