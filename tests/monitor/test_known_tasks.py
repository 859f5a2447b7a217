"""A model file that says it never learnt gender and age (ModelMeta.knows): the monitor shows '-' on the
screen and in its headless lines, writes null in --events, and says so once at the start."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from engines.config import DetectorConfig
from engines.contract import ModelMeta
from engines.faces import FaceDetector
from monitor.app import Monitor, Options
from monitor.config import Config
from monitor.decisions.decide import Decider
from monitor.inference.timing import StageTimer
from monitor.outputs.screen import Dashboard, SourceBoard
from monitor.sources.kinds import SourceSpec
from tests.monitor.fakes import ColourEngine, probs_for
from tests.videogen import SCENE, SCENE_FRAMES, make_video


class MaskOnlyEngine(ColourEngine):
    def __init__(self) -> None:
        super().__init__()
        self._set_file(
            Path("mask_only.fake"),
            ModelMeta(arch="colour", knows={"mask": True, "gender": False, "age": False}),
        )


def test_old_model_files_know_every_task_and_a_bad_knows_is_refused():
    meta = ModelMeta(arch="x")
    old = {k: v for k, v in meta.to_dict().items() if k != "knows"}
    assert ModelMeta.from_dict(old).known_tasks() == ("mask", "gender", "age")
    partial = ModelMeta.from_dict({**old, "knows": {"mask": True, "gender": False, "age": False}})
    assert partial.known_tasks() == ("mask",)
    with pytest.raises(Exception, match="knows"):
        ModelMeta.from_dict({**old, "knows": {"hair": True}})


def test_screen_shows_a_dash_for_what_the_model_does_not_know():
    d = Decider(min_votes=1, known=("mask",))
    state = d.add(1, probs_for(2, gender=1, age=2, p=0.95))
    assert state.gender_name == "-" and state.age_name == "-" and state.shown("gender") is None
    assert state.mask_name == "not_wear" and state.shown("mask") == "not_wear"
    from monitor.decisions.results import TrackView

    dash = Dashboard([SourceBoard("x", False, StageTimer(), described="video x.mp4")], StageTimer())
    from monitor.decisions.results import FrameResult
    from monitor.sources.capture import Frame

    dash.update(
        FrameResult(Frame(3, 0.1, None), 3, tracks=[TrackView(1, (0, 0, 9, 9), state, state, True, 0, 3)])
    )
    console = Console(record=True, width=130)
    console.print(dash.render())
    text = console.export_text()
    assert "female" not in text and ">=60" not in text


@pytest.fixture(scope="module")
def scene(tmp_path_factory, shared):
    path = tmp_path_factory.mktemp("video") / "scene.mp4"
    make_video(path, SCENE, SCENE_FRAMES)
    return path


def test_headless_run_and_events_of_a_mask_only_model(scene, tmp_path):
    out, err = io.StringIO(), io.StringIO()
    opts = Options(headless=True, events=tmp_path / "ev.jsonl")
    mon = Monitor(
        Config(),
        SourceSpec("video", str(scene)),
        MaskOnlyEngine(),
        FaceDetector(DetectorConfig()),
        opts,
        out=out,
        err=err,
    )
    report = mon.run()
    lines = [line for line in out.getvalue().splitlines() if "FLAG person" in line]
    assert len(lines) == 2 and all("(-, -; confidence" in line for line in lines)
    assert err.getvalue().count("not trained on real gender or age labels") == 1
    rows = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert rows and all(r["gender"] is None and r["age"] is None and r["mask"] for r in rows)
    assert "female" not in report.summary
