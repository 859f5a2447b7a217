"""Compliance: the share of people without a correct mask over a rolling window, per source and for the site,
and the alert on it.

People, not frames: a person (a source's person number) counts once, with their last settled mask state;
a person who stays in view keeps being counted, and drops out `window_s` after they were last seen settled.
The share is (incorrect + no mask) / people. An alert rises when the share stays at or above `threshold` for
`hold_s` (with at least `min_people` in the window), and clears when it stays under `clear_below` for
`hold_s` (hysteresis: a share that wavers around the threshold raises no storm of alerts). Pure: every call
takes the time; `ComplianceSink` reads the clock it is given.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.config import ComplianceConfig
    from monitor.decisions.results import Event, FrameResult

WEAR = 0  # the mask state that complies (engines.labels: 0 wear, 1 incorrect, 2 not wear)
SITE = ""  # the key of the site-wide window


@dataclass(frozen=True)
class Alert:
    """An `alert` or `alert_cleared` event: for one source, or for the site (`source` "")."""

    event: str  # "alert" | "alert_cleared"
    time: float
    source: str  # "" for the site
    share: float  # of people without a correct mask, in the window
    people: int
    threshold: float
    window_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "time": round(float(self.time), 3),
            "scope": "site" if self.source == SITE else "source",
            **({"source": self.source} if self.source else {}),
            "share": round(self.share, 4),
            "people": self.people,
            "threshold": self.threshold,
            "window_s": self.window_s,
        }

    def line(self) -> str:
        """The screen's and the headless output's line."""
        where = self.source or "site"
        pct = f"{self.share * 100:.0f}% of {self.people} people without a correct mask"
        if self.event == "alert":
            return f"{where} ALERT: {pct} (threshold {self.threshold * 100:.0f}%, last {self.window_s:g} s)"
        return f"{where} alert cleared: {pct}"


class RollingPeople:
    """The people seen in the last `window_s` seconds, each once with their last state."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._people: OrderedDict[Any, tuple[float, int]] = OrderedDict()  # key -> (last seen, mask)

    def person(self, key: Any, mask: int, now: float) -> None:
        self._people[key] = (now, mask)
        self._people.move_to_end(key)

    def expire(self, now: float) -> None:
        while self._people:
            key, (seen, _) = next(iter(self._people.items()))
            if now - seen <= self.window_s:
                break
            del self._people[key]

    def share(self, now: float) -> tuple[float | None, int]:
        """(share of people without a correct mask or None when nobody is in the window, people)."""
        self.expire(now)
        n = len(self._people)
        if not n:
            return None, 0
        bad = sum(mask != WEAR for _, mask in self._people.values())
        return bad / n, n


class AlertState:
    """threshold / hold / hysteresis over a series of (share, people, time)."""

    def __init__(self, threshold: float, clear_below: float, hold_s: float, min_people: int) -> None:
        self.threshold, self.clear_below = threshold, clear_below
        self.hold_s, self.min_people = hold_s, min_people
        self.on = False
        self._since: float | None = None  # when the share began to be past the line it must stay past

    def update(self, share: float | None, people: int, now: float) -> str | None:
        """'alert' or 'alert_cleared' when the state changes at `now`, else None."""
        if not self.on:
            past = share is not None and people >= self.min_people and share >= self.threshold
        else:
            past = share is None or share < self.clear_below
        if not past:
            self._since = None
            return None
        if self._since is None:
            self._since = now
        if now - self._since < self.hold_s:
            return None
        self.on, self._since = not self.on, None
        return "alert" if self.on else "alert_cleared"


@dataclass(frozen=True)
class Standing:
    """One source's (or the site's) compliance now, for the screen, metrics and Home Assistant."""

    share: float | None  # without a correct mask; None: nobody in the window
    people: int
    alert: bool
    window_s: float = 0.0

    @property
    def compliance(self) -> float | None:
        """The share of people WITH a correct mask (what Home Assistant and the screens show)."""
        return None if self.share is None else 1.0 - self.share

    def text(self) -> str:
        """As the screens show it: `compliance 83% of 12` (with a correct mask, of the people in the window),
        `compliance - (nobody in 600 s)`; the alert is shown beside it (`ALERT`)."""
        if self.compliance is None:
            return f"compliance - (nobody in {self.window_s:g} s)"
        return f"compliance {self.compliance * 100:.0f}% of {self.people}"


class Compliance:
    """Per-source windows and alerts, and the site's over every source."""

    def __init__(
        self, window_s: float, threshold: float, clear_below: float, hold_s: float, min_people: int
    ) -> None:
        self.window_s, self.threshold = window_s, threshold
        self._alert_args = (threshold, clear_below, hold_s, min_people)
        self._windows: dict[str, RollingPeople] = {}
        self._alerts: dict[str, AlertState] = {}
        self._last: dict[str, tuple[float | None, int]] = {}

    @classmethod
    def from_config(cls, c: ComplianceConfig) -> Compliance:
        return cls(c.window_s, c.threshold, c.clear_below, c.hold_s, c.min_people)

    def _scope(self, key: str) -> RollingPeople:
        if key not in self._windows:
            self._windows[key] = RollingPeople(self.window_s)
            self._alerts[key] = AlertState(*self._alert_args)
        return self._windows[key]

    def person(self, source: str, person: Any, mask: int, now: float) -> None:
        """A person of `source` seen at `now` with their settled mask state (0 wear, 1 incorrect, 2 none)."""
        self._scope(source).person(person, mask, now)
        self._scope(SITE).person((source, person), mask, now)

    def evaluate(self, now: float) -> list[Alert]:
        """Update every window and alert; the alerts raised or cleared now (sources first, then the site)."""
        self._scope(SITE)
        out = []
        for key in sorted(self._windows, key=lambda k: (k == SITE, k)):
            share, people = self._windows[key].share(now)
            self._last[key] = (share, people)
            change = self._alerts[key].update(share, people, now)
            if change:
                out.append(Alert(change, now, key, share or 0.0, people, self.threshold, self.window_s))
        return out

    def standing(self, source: str = SITE) -> Standing:
        """As of the last evaluate(); `source` "" = the site."""
        share, people = self._last.get(source, (None, 0))
        alert = self._alerts.get(source)
        return Standing(share, people, bool(alert and alert.on), self.window_s)

    def sources(self) -> list[str]:
        return sorted(k for k in self._windows if k != SITE)


class ComplianceSink:
    """A Sink: counts each settled, confirmed person of every frame and the final state of each who leaves,
    then evaluates the alerts and hands each Alert to `emit` (the events file, MQTT, the screen)."""

    def __init__(
        self,
        compliance: Compliance,
        emit: Callable[[Alert], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.compliance, self.emit, self.clock = compliance, emit, clock

    def frame(self, result: FrameResult) -> None:
        now = self.clock()
        for t in result.tracks:
            if t.confirmed and t.number and t.settled is not None:
                self.compliance.person(result.source, t.number, t.settled.mask, now)
        for ev in result.events:
            if ev.event == "left" and ev.state.settled and ev.track_id:
                self.compliance.person(result.source or ev.source, ev.track_id, ev.state.mask, now)
        for alert in self.compliance.evaluate(now):
            self.emit(alert)

    def event(self, event: Event) -> None:
        """Events come with their frame (FrameResult.events), where they are counted."""

    def close(self) -> None:
        pass


MASK_NAMES = ("wear", "incorrect", "not_wear")


def site_event(compliance: Compliance, event: dict[str, Any], now: float) -> None:
    """`mask-monitor site`: one event as received over MQTT (already checked: monitor.mqtt.check_event).
    A flag counts its person at once, a departure with their last state; the site's sources are
    SOURCE@MACHINE. (MQTT events do not say whether a departing person's state had settled, so the site
    also counts the people who passed too briefly to settle, with their last classification.)"""
    if event.get("event") not in ("flag", "left") or event.get("mask") not in MASK_NAMES:
        return
    source = str(event.get("source", ""))
    if event.get("machine"):
        source = f"{source}@{event['machine']}"
    compliance.person(source, event.get("track_id"), MASK_NAMES.index(event["mask"]), now)
