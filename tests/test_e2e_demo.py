"""The README's main job, end to end: the bundled demo model on the bundled sample video.

Compares what the monitor reports with samples/entrance_truth.json: at least 90% of the people get the
right mask state, and nobody is flagged twice for the same state.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict

import pytest

from engines import read_meta
from tests.conftest import REPO

VIDEO = REPO / "samples" / "entrance.mp4"
TRUTH = REPO / "samples" / "entrance_truth.json"
MODEL = REPO / "samples" / "demo_model.onnx"


def _person_at(people: list[dict], frame: int) -> dict | None:
    """The person in the door at `frame` (people come one after another)."""
    for p in people:
        if p["first_frame"] <= frame <= p["last_frame"]:
            return p
    return None


def _person_leaving(people: list[dict], frame: int) -> dict | None:
    """A 'left' event carries the frame in which the person was last seen: one of their own frames."""
    return _person_at(people, frame)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    events = tmp_path_factory.mktemp("e2e") / "events.jsonl"
    r = subprocess.run(
        [sys.executable, "-m", "monitor", "--video", str(VIDEO), "--headless", "--events", str(events)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    return r, rows, json.loads(TRUTH.read_text())


def test_demo_model_is_small_and_carries_its_metadata():
    assert MODEL.stat().st_size <= 20 * 1024 * 1024
    meta = read_meta(MODEL)
    assert meta.arch and meta.source_sha256 and len(meta.labels) == 18
    assert meta.extra.get("epoch")  # trained by mask-train fit, not a random network


def test_main_command_prints_what_it_flagged(run):
    r, rows, truth = run
    flags = [e for e in rows if e["event"] == "flag"]
    assert flags, "the sample video has people without masks: something must be flagged"
    assert "flags:" in r.stdout and "people seen:" in r.stdout
    for e in flags:
        assert f"#{e['track_id']}" in r.stdout
    # person numbers count confirmed people only: the ten people are #1 ... #10
    assert sorted({e["track_id"] for e in rows if e["event"] == "left"}) == list(range(1, 11))


def test_people_get_the_right_mask_state_and_one_flag_per_state(run):
    _, rows, truth = run
    people = truth["people"]
    states: dict[int, list[str]] = defaultdict(list)
    flags: Counter[tuple[int, str]] = Counter()
    for e in rows:
        if e["event"] == "left":
            p = _person_leaving(people, e["frame"])
            states[p["id"]].append(e["mask"])
        elif e["event"] == "flag":
            p = _person_at(people, e["frame"])
            assert p is not None, f"flag outside any person's time in the door: {e}"
            flags[(p["id"], e["mask"])] += 1
    right = []
    for p in people:
        got = states.get(p["id"], [])
        flagged = {m for (pid, m) in flags if pid == p["id"]}
        expected_flags = set() if p["mask"] == "wear" else {p["mask"]}
        right.append(bool(got) and all(s == p["mask"] for s in got) and flagged == expected_flags)
    share = sum(right) / len(people)
    assert share >= 0.9, {p["id"]: (p["mask"], states.get(p["id"])) for p, ok in zip(people, right) if not ok}
    assert max(flags.values()) == 1, flags
