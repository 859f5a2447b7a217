"""The collect folder's record: one line of DIR/collected.jsonl per crop, written by `mask-monitor --collect`
(monitor.outputs.collect) and by `mask-train demo-door` (train.workflows.door), read by the label page, its
store and `mask-train import` (train.label.store). Defined here once, for writers and readers both.

    {"file": "000012.jpg", "source": "entrance.mp4", "time": 3.2, "frame": 96, "track": 2,
     "predicted": {"mask": "not_wear", "gender": "male", "age": "30-59"},
     "probs": {"mask": [0.05, 0.13, 0.82], "gender": [0.7, 0.3], "age": [0.2, 0.7, 0.1]},
     "reason": "uncertain", "model_sha256": "9f2c..."}

Only `file` (a plain name in the folder) is required of a line a reader meets; the rest is shown when present.
`predicted` and `probs` name only the tasks the monitor showed (gender / age where it knows them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

COLLECTED_JSONL = "collected.jsonl"


@dataclass(frozen=True)
class CollectedRecord:
    file: str
    source: str | None = None
    time: float | None = None
    frame: int | None = None
    track: int | None = None
    predicted: dict[str, str] = field(default_factory=dict)  # task -> the model's guess
    probs: dict[str, list[float]] = field(default_factory=dict)  # task -> its probabilities
    reason: str | None = None  # "uncertain" | "confident": why the crop was kept
    model_sha256: str | None = None

    def to_json(self) -> str:
        """The line (without its newline); keys left unknown (None) are left out."""
        return json.dumps({k: v for k, v in self.__dict__.items() if v is not None})

    @classmethod
    def from_json(cls, line: str) -> CollectedRecord:
        """One line as written; ValueError where it is not a record with a plain `file` name. A key of the
        wrong type reads as absent (a hand-edited line still shows its crop)."""
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            d = None
        if not isinstance(d, dict) or not isinstance(d.get("file"), str) or not d["file"] or "/" in d["file"]:
            raise ValueError("not a record with a plain 'file' name")

        def typed(key: str, *types: type) -> Any:
            v = d.get(key)
            return v if isinstance(v, types) and not isinstance(v, bool) else None

        return cls(
            file=d["file"],
            source=typed("source", str),
            time=typed("time", int, float),
            frame=typed("frame", int),
            track=typed("track", int),
            predicted={k: v for k, v in (typed("predicted", dict) or {}).items() if isinstance(v, str)},
            probs={k: v for k, v in (typed("probs", dict) or {}).items() if isinstance(v, list)},
            reason=typed("reason", str),
            model_sha256=typed("model_sha256", str),
        )

    def top_mask_probability(self) -> float | None:
        probs = self.probs.get("mask")
        if probs and all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in probs):
            return float(max(probs))
        return None

    def guess(self) -> str:
        """The model's mask guess ('' where the line has none)."""
        return self.predicted.get("mask", "")
