"""monitor.outputs.events and recording: the events log's schema, and recordings that cannot be written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engines import fileio
from engines.errors import UserError
from engines.labels import encode
from monitor.decisions.decide import Decider
from monitor.decisions.results import EVENT_KEYS, Event
from monitor.outputs import recording
from monitor.outputs.events import EventLog
from tests.monitor.fakes import probs_for


def test_event_schema_and_append(tmp_path):
    d = Decider(min_votes=1)
    state = d.add(1, probs_for(1, gender=1, age=2, p=0.9))
    log = EventLog(tmp_path / "ev.jsonl")
    log.write(Event("flag", 1.23456, 37, 1, (10, 20, 110, 145), state))
    log.close()
    log = EventLog(tmp_path / "ev.jsonl")  # appends
    log.write(Event("left", 2.0, 60, 1, (12, 20, 112, 145), state))
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert [tuple(r) for r in rows] == [EVENT_KEYS, EVENT_KEYS]
    assert rows[0] == {
        "event": "flag",
        "time": 1.235,
        "frame": 37,
        "track_id": 1,
        "box": [10, 20, 110, 145],
        "mask": "incorrect",
        "gender": "female",
        "age": ">=60",
        "class": encode(1, 1, 2),
        "confidence": pytest.approx(0.9 + 0.1 / 17 * 5, abs=1e-3),
    }


def test_a_record_folder_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    def refuse(*a, **k):  # what mkstemp does in a folder this user may not write in
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fileio.tempfile, "mkstemp", refuse)
    with pytest.raises(UserError, match=r"--record .*rec.mp4: cannot write \(Permission denied\)"):
        recording.Recorder(tmp_path / "rec.mp4", 25.0)


def test_a_recorder_that_cannot_open_leaves_no_empty_file(tmp_path, monkeypatch):
    class Refusing:
        def __init__(self, *a, **k):
            pass

        def isOpened(self):
            return False

        def release(self):
            pass

    out = tmp_path / "rec.mp4"
    out.write_bytes(b"an earlier good recording")
    monkeypatch.setattr(recording.cv2, "VideoWriter", Refusing)
    rec = recording.Recorder(out, 25.0)
    with pytest.raises(UserError, match="cannot write this video format"):
        rec.write(np.zeros((48, 64, 3), np.uint8))
    rec.close()
    assert out.read_bytes() == b"an earlier good recording"
    assert [p.name for p in tmp_path.iterdir()] == ["rec.mp4"]
