"""The one interface every output implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from monitor.events import Event
    from monitor.pipeline import FrameResult


class Sink(Protocol):
    # every processed frame of every source (result.source names it)
    def frame(self, result: FrameResult) -> None: ...
    # every event
    def event(self, event: Event) -> None: ...
    def close(self) -> None: ...
