"""What the decisions hand to the outputs: per frame a FrameResult (the tracks as TrackViews, the events of
that frame, faults), the Events themselves (flag, left) and, for --collect, the Candidates of people who
left. Event keys are fixed (EVENT_KEYS): a log reader can rely on them. `time` is the source's clock:
seconds from the start of a video file, Unix time for a camera or stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engines.faces import Box
from engines.labels import marginals
from monitor.decisions.decide import State
from monitor.sources.capture import Frame
from monitor.sources.link import LinkState


@dataclass(frozen=True)
class Candidate:
    """A settled person as their latest settled classification saw them."""

    track: int  # the person number (as track_id in --events)
    frame: int
    time: float
    crop: np.ndarray  # the crop that classification used
    state: State  # the vote it settled
    probs: tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]  # mask, gender, age of the vote
    disagree: bool  # a classification in the vote's window named another mask state


def candidate(
    track: int, frame: int, when: float, crop: np.ndarray, state: State, history: np.ndarray
) -> Candidate:
    """The vote over `history` ([n, 18] rows) read per task, and whether its rows agree on the mask."""
    mean = history.mean(axis=0)
    per_task = tuple(tuple(round(float(p), 4) for p in t) for t in marginals(mean))
    hard = marginals(history)[0].argmax(axis=1)
    return Candidate(track, frame, when, crop, state, per_task, bool((hard != state.mask).any()))  # type: ignore[arg-type]


@dataclass(frozen=True)
class TrackView:
    """A track as the outputs see it on one frame."""

    id: int
    box: Box
    state: State | None  # the current vote (may still be unsettled)
    settled: State | None  # the last settled state
    fresh: bool  # confirmed by a detection on this frame
    missed: int  # frames since the last detection
    frames: int  # frames since the track began
    confirmed: bool = True  # seen by two detections (a tentative track may be a false detection)
    number: int = 0  # the person number users see (confirmed people only, 1, 2, ...); 0 while tentative
    flagged: bool = False  # a flag was raised for this person (--record leaves only these faces unblurred)


@dataclass
class FrameResult:
    frame: Frame
    seq: int  # frames processed so far (0-based)
    tracks: list[TrackView] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # flags and departures, in order
    crops: dict[int, np.ndarray] = field(default_factory=dict)  # crops of flagged tracks (only if asked)
    detected: bool = False  # detection ran on this frame
    faces: int = 0  # faces the detector found (first and second look)
    classified: int = 0  # crops classified
    messages: list[str] = field(default_factory=list)  # faults, each kind reported once
    skipped: bool = False  # the frame was unusable
    final: bool = False  # not a frame: the departures of everyone still in view at the end
    source: str = ""  # the source's name (several sources in one monitor)
    scene_cut: bool = False  # nearly every pixel changed at once: every track ended here
    collect: list[Candidate] = field(default_factory=list)  # settled people who left (--collect only)


EVENT_KEYS = ("event", "time", "frame", "track_id", "box", "mask", "gender", "age", "class", "confidence")


@dataclass(frozen=True)
class Event:
    """A person flagged or gone ("flag", "left"), or a source's link changed ("link": `link` and its `text`;
    no person, `state` None). `source` names the source (every source has a name, one source too)."""

    event: str  # "flag" | "left" | "link"
    time: float
    frame: int
    track_id: int
    box: tuple[int, int, int, int]
    state: State | None
    source: str = ""
    link: LinkState | None = None  # "link" only
    text: str = ""  # "link" only: the state in words ("reconnecting to ... (try 2)"), secrets redacted

    @classmethod
    def link_change(cls, source: str, link: LinkState, text: str, when: float = 0.0) -> Event:
        return cls("link", when, -1, 0, (0, 0, 0, 0), None, source, link, text)

    @property
    def person(self) -> bool:
        """A flag or a departure (not a link change)."""
        return self.state is not None

    def to_dict(self, with_source: bool = True) -> dict[str, Any]:
        """The --events keys (EVENT_KEYS), then `source` (with `with_source`: the events file writes it only
        when the monitor watches several sources)."""
        if self.state is None:
            link = self.link.value if self.link is not None else None
            return {"event": self.event, "source": self.source, "link": link, "text": self.text}
        s = self.state
        out = {
            "event": self.event,
            "time": round(float(self.time), 3),
            "frame": int(self.frame),
            "track_id": int(self.track_id),
            "box": [int(v) for v in self.box],
            "mask": s.mask_name,
            "gender": s.shown("gender"),
            "age": s.shown("age"),
            "class": s.cls,
            "confidence": round(float(s.confidence), 4),
        }
        if with_source and self.source:
            out["source"] = self.source
        return out
