"""monitor.outputs.screen: the Live screen through a recording console, and the summary at the end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from monitor.decisions.compliance import Compliance
from monitor.decisions.decide import Decider, vote
from monitor.decisions.results import Event, FrameResult, TrackView
from monitor.inference.timing import StageTimer
from monitor.outputs.screen import Dashboard, SourceBoard, SummaryRow, Tally, summary_text
from monitor.sources.capture import Frame
from tests.monitor.fakes import probs_for


def _result(seq, tracks, events=()):
    return FrameResult(Frame(seq, seq / 30, None), seq, tracks=list(tracks), events=list(events))


def test_live_screen_shows_people_flags_and_colours():
    d = Decider(min_votes=1)
    s_no, s_ok, s_inc = d.add(1, probs_for(2, p=0.93)), d.add(2, probs_for(0)), d.add(3, probs_for(1))
    timer = StageTimer()
    timer.add("detect", 21.0)
    board = SourceBoard(
        "entrance",
        False,
        StageTimer(),
        status=lambda: "reconnecting to camera 0 (try 2)",
        described="video entrance.mp4",
    )
    dash = Dashboard([board], timer)
    tracks = [
        TrackView(1, (0, 0, 10, 10), s_no, s_no, True, 0, 30, number=1),
        TrackView(2, (0, 0, 10, 10), s_ok, s_ok, True, 0, 9, number=2),
        TrackView(3, (0, 0, 10, 10), s_inc, s_inc, False, 4, 12, number=3),
        TrackView(4, (0, 0, 10, 10), None, None, True, 0, 1, number=4),
    ]
    dash.update(
        _result(
            45,
            tracks,
            [
                Event("flag", 1.5, 45, 1, (0, 0, 10, 10), s_no),
                Event("flag", 1.5, 45, 3, (0, 0, 10, 10), s_inc),
            ],
        )
    )
    console = Console(record=True, width=130, force_terminal=True, color_system="truecolor")
    console.print(dash.render())
    text = console.export_text(clear=False)
    assert "no mask FLAG" in text and "incorrect mask FLAG" in text and "#4" in text
    assert "latest flags (2)" in text and "FLAG person #1: no mask" in text
    assert "people seen 3" in text and "no mask 1" in text and "reconnecting to camera 0" in text
    assert "detect 21.0" in text
    styled = console.export_text(styles=True)
    assert "\x1b[1;31m#1 " in styled  # the unmasked person's row in red
    assert "\x1b[1;33m#3 " in styled  # the incorrect one's in yellow
    assert "\x1b[32m#2 " in styled  # the masked one's in green


def test_summary_counts_people_and_lists_flags():
    d = Decider(min_votes=1)
    s_no, s_ok = d.add(1, probs_for(2)), d.add(2, probs_for(0))
    tally = Tally()
    tally.update(
        _result(
            0,
            [
                TrackView(1, (0, 0, 1, 1), s_no, s_no, True, 0, 1, number=1),
                TrackView(2, (0, 0, 1, 1), s_ok, s_ok, True, 0, 1, number=2),
            ],
            [Event("flag", 61.5, 0, 1, (0, 0, 1, 1), s_no)],
        )
    )
    unsettled = vote(np.stack([probs_for(2)]), min_votes=3)
    tally.update(_result(1, [], [Event("left", 2.0, 1, 9, (0, 0, 1, 1), unsettled)]))
    text = summary_text([SummaryRow("x", "video x.mp4", tally, live=False)], 2.0)
    assert text.startswith("mask-monitor summary: video x.mp4: 2 frames")  # one source: no name, no total
    assert "total" not in text
    assert "people seen: 2 (mask: 1, incorrect mask: 0, no mask: 1); 1 more too briefly to tell" in text
    assert "flags: 1" in text and "[01:01.50] FLAG person #1: no mask" in text
    assert "2 frames in 2.0 s" in text
    assert "faults" not in text
    faults = {"size": 12, "classify": 1, "corrupt": 3}
    text = summary_text([SummaryRow("x", "video x.mp4", tally, False, faults=faults)], 2.0)
    assert "faults: 1 classifier failures, 12 frames of another size (resized)" in text


def test_a_single_source_is_a_board_of_one_drawn_as_the_single_source_screen_always_was():
    """The screen of one source, rendered now, against the text (with its colours) the single-source screen
    drew before one source became a board of one (tests/monitor/data/one_source_screen.txt)."""
    import io

    from monitor.sources.link import LinkState

    d = Decider(min_votes=1)
    s_no, s_ok, s_inc = d.add(1, probs_for(2, p=0.93)), d.add(2, probs_for(0)), d.add(3, probs_for(1))
    rounds, own = StageTimer(), StageTimer()  # the inference stage's, the source's own (its capture)
    own.add("capture", 2.5)
    for name, ms in (("detect", 21.0), ("classify", 4.2), ("total", 27.9)):
        rounds.add(name, ms)
    board = SourceBoard(
        "entrance",
        False,
        own,
        status=lambda: "reconnecting to camera 0 (try 2)",
        dropped=lambda: 4,
        link=lambda: LinkState.RECONNECTING,
        described="video entrance.mp4",
    )
    # the run's compliance, fed (as by the alerts sink, before the screen's): 2 of 3 without a correct mask
    comp = Compliance(window_s=600.0, threshold=0.3, clear_below=0.2, hold_s=0.0, min_people=3)
    dash = Dashboard([board], rounds, max_rows=3, max_flags=2, detect_every=3, compliance=comp)
    tracks = [
        TrackView(1, (0, 0, 10, 10), s_no, s_no, True, 0, 30, number=1),
        TrackView(2, (0, 0, 10, 10), s_ok, s_ok, True, 0, 9, number=2),
        TrackView(3, (0, 0, 10, 10), s_inc, s_inc, False, 4, 12, number=3),
        TrackView(4, (0, 0, 10, 10), None, None, True, 0, 1, number=4),
        TrackView(5, (0, 0, 10, 10), None, None, True, 0, 1, confirmed=False),
    ]
    flags = [
        Event("flag", 1.5 + i, 45 + i, n, (0, 0, 10, 10), s, "entrance")
        for i, (n, s) in enumerate([(1, s_no), (3, s_inc), (1, s_no)])
    ]
    first = FrameResult(Frame(44, 44 / 30, None), 44, tracks=tracks[:2], events=flags[:1], source="entrance")
    first.messages.append("frame 7 is empty or unreadable: skipped")
    dash.update(first)
    for number, mask in ((1, 2), (2, 0), (3, 1)):
        comp.person("entrance", number, mask, 46 / 30)
    assert [a.event for a in comp.evaluate(46 / 30)] == ["alert", "alert"]  # the source's and the site's
    dash.update(FrameResult(Frame(46, 46 / 30, None), 46, tracks=tracks, events=flags[1:], source="entrance"))
    dash.note("the model was not trained on real gender or age labels")
    console = Console(
        file=io.StringIO(), record=True, width=100, force_terminal=True, color_system="truecolor"
    )
    console.print(dash.render())
    expected = (Path(__file__).parent / "data" / "one_source_screen.txt").read_text(encoding="utf-8")
    assert console.export_text(styles=True) == expected
