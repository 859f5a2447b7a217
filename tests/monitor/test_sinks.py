"""monitor.outputs.sinks: one list, each sink made only where asked for, each fed every event and frame."""

from __future__ import annotations

import io
import json

import numpy as np

from monitor.config import Config
from monitor.decisions.decide import vote
from monitor.decisions.results import Event, FrameResult
from monitor.inference.timing import StageTimer
from monitor.options import Options
from monitor.outputs.base import Context, SourceInfo
from monitor.outputs.events import EventsSink
from monitor.outputs.headless import HeadlessLines
from monitor.outputs.screen import Dashboard, ScreenSink, SourceBoard
from monitor.outputs.sinks import SINKS, make_sinks
from monitor.sources.capture import Frame
from monitor.sources.link import LinkState


def _ctx(options: Options, sources=("door",), out=None, err=None) -> Context:
    infos = tuple(SourceInfo(n, False, 25.0, f"video {n}.mp4") for n in sources)
    return Context(
        options,
        Config(),
        infos,
        out or io.StringIO(),
        err or io.StringIO(),
        lambda m: None,
        screen=Dashboard([SourceBoard(n, False, StageTimer()) for n in sources], StageTimer()),
    )


def test_only_the_outputs_asked_for_are_made_and_every_row_has_a_name():
    assert len({name for name, _ in SINKS}) == len(SINKS)
    kinds = [type(s) for s in make_sinks(_ctx(Options()))]
    assert kinds == [ScreenSink]  # no flag: only the model the summary reads


def test_events_and_link_changes_reach_the_file_and_the_headless_lines(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    ctx = _ctx(Options(headless=True, events=tmp_path / "e.jsonl"), out=out, err=err)
    sinks = make_sinks(ctx)
    assert [type(s) for s in sinks] == [EventsSink, HeadlessLines, ScreenSink]
    state = vote(np.eye(18)[[16, 16, 16]], 3)
    flag = Event("flag", 3.2, 96, 2, (1, 2, 3, 4), state, "door")
    result = FrameResult(Frame(96, 3.2, None), 96, events=[flag], source="door")
    link = Event.link_change("door", LinkState.ENDED, "ended")
    for s in sinks:
        s.event(flag)
        s.event(link)
        s.frame(result)
    for s in sinks:
        s.close()
    rows = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["event"] == "flag" and "source" not in rows[0]  # one source: unnamed
    assert out.getvalue().startswith("[00:03.20] FLAG person #2: no mask")
    assert err.getvalue() == "mask-monitor: video door.mp4: ended\n"
