"""The state of a source's link, as one value every part reads (the capture thread sets it; the app, the
screen, the MQTT status and the site view show it): never matched from its text."""

from __future__ import annotations

import enum


class LinkState(enum.Enum):
    CONNECTING = "connecting"  # opening the source (not yet a frame)
    UP = "up"  # frames flow ("live", "playing", "live (reconnected)")
    RECONNECTING = "reconnecting"  # lost: reopening with back-off
    DOWN = "down"  # failed, stalled, or its monitor stopped or vanished
    ENDED = "ended"  # a video file played to its end
    PAUSED = "paused"  # up, but its frames are dropped before detection (Home Assistant's pause button)

    @property
    def up(self) -> bool:
        return self in (LinkState.UP, LinkState.PAUSED)

    @property
    def alarming(self) -> bool:
        """Worth a person's attention (shown in red / magenta)."""
        return self in (LinkState.RECONNECTING, LinkState.DOWN)
