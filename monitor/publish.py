"""What the monitor tells other machines: the interface the output thread calls (monitor.mqtt implements it
over MQTT), kept apart so that the app does not import paho-mqtt unless --mqtt is given."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from monitor.events import Event
from monitor.ui import PanelInfo

if TYPE_CHECKING:
    from monitor.mqtt import MqttUrl


class Publisher(Protocol):
    def attach(self, snapshot: Callable[[], list[PanelInfo]]) -> None:
        """Where the periodic status of each source comes from (the monitor's panels)."""

    def event(self, source: str, event: Event) -> None:
        """Every flag and departure of `source` (called from the output thread; must not block long)."""

    def note(self, source: str, message: str) -> None:
        """A change of the source's link ("reconnecting ...", "live (reconnected)", "ended")."""

    def close(self) -> None:
        """Say every source is down, deliver what is queued (bounded wait), disconnect."""


def connect_publisher(broker: MqttUrl, sources: list[str]) -> Publisher:
    """The broker of --mqtt (monitor.mqtt.broker_from_args) -> a connected publisher (paho-mqtt is imported
    only here); a login the broker refuses is one UserError."""
    from monitor.mqtt import MqttPublisher

    return MqttPublisher(broker, sources)
