"""monitor.inference.timing: the stage timer's window and totals."""

from __future__ import annotations

import pytest

from monitor.inference.timing import StageTimer


def test_stage_timer_window_and_totals():
    t = StageTimer(window=4)
    for ms in (1, 2, 3, 4, 100, 100, 100, 100):
        t.add("detect", ms)
    for _ in range(8):
        t.frame_done()
    st = t.stats()["detect"]
    assert st.runs == 8 and st.median_ms == 100 and st.mean_ms_per_frame == pytest.approx(410 / 8)
    with t.stage("classify"):
        pass
    assert t.stats()["classify"].runs == 1
    assert list(t.stats()) == ["detect", "classify"]
