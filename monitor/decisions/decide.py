"""Per-track votes -> a stable state, and the rule for flags.

One classification of one crop is noisy (blur, a turned head, a hand in front of the mouth). A track's
state is the average of the probabilities of its last K classifications (`vote_window`), read per task
(mask, gender, age are marginals of the 18 classes). It counts as settled once `min_votes`
classifications agree: at least `min_votes` of them exist and a strict majority of them name the voted
mask state. A flag is raised when a settled state is one of `flag_states` that this person has not been
flagged for yet: once per person and state, so a flickering vote never floods the log.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from engines.labels import MASK_NAMES, NUM_CLASSES, TASK_NAMES, Label, marginals


@dataclass(frozen=True)
class State(Label):
    """A track's voted label (mask, gender, age; .cls and the names come from engines.labels.Label)."""

    confidence: float  # averaged probability of the voted mask state
    votes: int  # classifications behind it
    settled: bool
    known: tuple[str, ...] = TASK_NAMES  # tasks the model was trained on (ModelMeta.knows)

    @property
    def gender_name(self) -> str:
        return super().gender_name if "gender" in self.known else "-"

    @property
    def age_name(self) -> str:
        return super().age_name if "age" in self.known else "-"

    def shown(self, task: str) -> str | None:
        """A task's name for outputs that write null for what the model does not know (--events)."""
        return getattr(self, f"{task}_name") if task in self.known else None


def vote(history: np.ndarray, min_votes: int, known: tuple[str, ...] = TASK_NAMES) -> State:
    """State from a [n, 18] stack of probability rows (n >= 1): the tasks are read from the mean row, and
    the agreement from each row's own mask state (engines.labels.marginals folds the classes)."""
    mean = history.mean(axis=0)
    mask_p, gender_p, age_p = marginals(mean)
    mask = int(mask_p.argmax())
    hard = marginals(history)[0].argmax(axis=1)
    agree = int((hard == mask).sum())
    settled = len(history) >= min_votes and agree * 2 > len(history)
    return State(
        mask, int(gender_p.argmax()), int(age_p.argmax()), float(mask_p[mask]), len(history), settled, known
    )


class Decider:
    def __init__(
        self,
        vote_window: int = 7,
        min_votes: int = 3,
        flag_states: tuple[str, ...] = ("incorrect", "not_wear"),
        known: tuple[str, ...] = TASK_NAMES,
    ) -> None:
        self.known = tuple(known)
        self.vote_window = vote_window
        self.min_votes = min_votes
        self.flag_masks = {MASK_NAMES.index(s) for s in flag_states}
        self._history: dict[int, deque[np.ndarray]] = {}
        self._flagged: dict[int, set[int]] = {}
        self._states: dict[int, State] = {}
        self._settled: dict[int, State] = {}  # the last settled state (sticky while a vote wavers)

    def add(self, track_id: int, probs: np.ndarray) -> State:
        probs = np.asarray(probs, dtype=np.float64).reshape(-1)
        if probs.shape != (NUM_CLASSES,) or not np.all(np.isfinite(probs)):
            raise ValueError(f"expected {NUM_CLASSES} finite probabilities, got shape {probs.shape}")
        hist = self._history.setdefault(track_id, deque(maxlen=self.vote_window))
        hist.append(probs)
        state = vote(np.stack(hist), self.min_votes, self.known)
        self._states[track_id] = state
        if state.settled:
            self._settled[track_id] = state
        return state

    def state(self, track_id: int) -> State | None:
        return self._states.get(track_id)

    def settled_state(self, track_id: int) -> State | None:
        return self._settled.get(track_id)

    def history(self, track_id: int) -> np.ndarray | None:
        """The [n, 18] probability rows behind the track's current vote (None before its first one)."""
        hist = self._history.get(track_id)
        return np.stack(hist) if hist else None

    def new_flag(self, track_id: int) -> State | None:
        """The state to flag now, if the track's settled state is a flag state not flagged for it before."""
        s = self._states.get(track_id)
        if s is None or not s.settled or s.mask not in self.flag_masks:
            return None
        done = self._flagged.setdefault(track_id, set())
        if s.mask in done:
            return None
        done.add(s.mask)
        return s

    def flagged(self, track_id: int) -> bool:
        """A flag was raised for this track (once flagged, always: the recording shows this face)."""
        return bool(self._flagged.get(track_id))

    def forget(self, track_id: int) -> None:
        self._history.pop(track_id, None)
        self._flagged.pop(track_id, None)
        self._states.pop(track_id, None)
        self._settled.pop(track_id, None)
