"""mask-monitor --collect DIR: the uncertain settled person's crop and record (read back by the label page's
own reader), the confident share, nothing without the flag, the size cap, a failing disk and a removed folder
(one line each, the monitor goes on)."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import shutil

import numpy as np
import pytest
from rich.console import Console

from engines.config import CollectConfig, MonitorConfig
from engines.contract import ModelMeta
from engines.faces import Face
from monitor.app import Monitor, Options
from monitor.cli import main
from monitor.config import Config
from monitor.decisions.decide import vote
from monitor.decisions.results import candidate
from monitor.outputs import collect as collect_mod
from monitor.outputs.collect import Collector
from monitor.sources.kinds import Source, SourceSpec
from tests.monitor.fakes import FakeCamera, ScriptedEngine, probs_for
from train.label import store

LEFT, RIGHT = (10.0, 30.0, 60.0, 95.0), (100.0, 30.0, 150.0, 95.0)


class TwoFaces:
    """Two people standing still: one in the dark left half, one in the bright right half of the frame."""

    def detect(self, frame, **kw):
        return [Face(LEFT, 0.99), Face(RIGHT, 0.99)]

    def detect_region(self, frame, region, **kw):
        return []


class BrightnessEngine(ScriptedEngine):
    """Unsure ('not_wear' at p 0.5) of a dark crop, sure ('wear' at p 0.95) of a bright one."""

    def __init__(self, model_file, unsure_all: bool = False) -> None:
        super().__init__([0])
        self._set_file(model_file, ModelMeta(arch="brightness"))
        self.unsure_all = unsure_all

    def classify(self, crops, batch_size: int = 32):
        sure = [not self.unsure_all and float(np.mean(c)) > 128 for c in crops]
        return np.stack([probs_for(0, 1, 2, 0.95) if s else probs_for(2, 0, 1, 0.5) for s in sure])


def frames(n: int = 40) -> list[np.ndarray]:
    f = np.full((120, 160, 3), 30, np.uint8)
    f[:, 80:] = 230
    return [f] * n


@pytest.fixture
def model_file(tmp_path):
    p = tmp_path / "door.onnx"
    p.write_bytes(b"a model file")
    return p


def run(
    tmp_path,
    model_file,
    collect=None,
    collect_cfg=None,
    unsure_all=False,
    results=None,
    screen=None,
    show_gender_age=False,
):
    err = io.StringIO()
    cam = FakeCamera(frames(), fail_after=40)
    mon = Monitor(
        Config(
            monitor=MonitorConfig(detect_every=1, min_votes=3, show_gender_age=show_gender_age),
            collect=collect_cfg or CollectConfig(),
        ),
        [Source("door", SourceSpec("video", "door.mp4"))],
        BrightnessEngine(model_file, unsure_all),
        TwoFaces(),
        Options(headless=screen is None, collect=collect),
        opener=lambda spec: cam,
        console=screen,
        out=io.StringIO(),
        err=err,
        on_result=(results.append if results is not None else None),
    )
    report = mon.run()
    if screen is not None:
        err.write("\n".join(mon.dashboard.messages))
    assert report.frames == 40  # the run went on to the end, whatever happened to the collect folder
    return report, err.getvalue()


def records(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "collected.jsonl").read_text().splitlines()]


def test_the_uncertain_person_is_collected_and_read_back_by_the_label_page(tmp_path, model_file):
    folder = tmp_path / "collect"
    report, err = run(tmp_path, model_file, folder, show_gender_age=True)
    assert report.collected == 1 and "warning" not in err
    (rec,) = records(folder)
    assert rec["reason"] == "uncertain" and rec["source"] == "door" and rec["track"] in (1, 2)
    assert rec["predicted"] == {"mask": "not_wear", "gender": "male", "age": "30-59"}
    assert rec["model_sha256"] == hashlib.sha256(b"a model file").hexdigest()
    assert 0.6 < max(rec["probs"]["mask"]) < 0.75 and len(rec["probs"]["age"]) == 3
    assert isinstance(rec["frame"], int) and isinstance(rec["time"], float)
    assert sorted(p.name for p in folder.iterdir()) == sorted([rec["file"], "collected.jsonl"])

    crops, warnings = store.read_crops(folder)  # the label page's own reader
    assert warnings == [] and [c.file for c in crops] == [rec["file"]]
    (crop,) = crops
    assert crop.readable and crop.guess() == "not_wear" and crop.top_mask_probability() < 0.75
    import cv2

    img = cv2.imread(str(folder / rec["file"]))
    assert float(img.mean()) < 128  # the dark person's crop, not the other one's


def test_the_confident_share_adds_confident_people_marked_so(tmp_path, model_file):
    folder = tmp_path / "c"
    cfg = CollectConfig(confident_share=1.0, confident_min_gap_s=0.0)
    report, _ = run(tmp_path, model_file, folder, cfg)
    assert report.collected == 2
    by_reason = {r["reason"]: r for r in records(folder)}
    assert set(by_reason) == {"uncertain", "confident"}
    assert by_reason["confident"]["predicted"]["mask"] == "wear"
    assert max(by_reason["confident"]["probs"]["mask"]) > 0.9


def test_nothing_is_kept_or_written_without_collect(tmp_path, model_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = []
    report, _ = run(tmp_path, model_file, None, results=results)
    assert report.collected == 0
    assert results and all(r.collect == [] for r in results)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["door.onnx"]


def test_the_size_cap_stops_collecting_with_one_warning(tmp_path, model_file):
    folder = tmp_path / "c"
    report, err = run(tmp_path, model_file, folder, CollectConfig(max_mb=0.001), unsure_all=True)
    assert report.collected == 0
    lines = [x for x in err.splitlines() if "collect" in x and "warning" in x]
    assert len(lines) == 1 and "collect.max_mb = 0.001 MB" in lines[0], err
    assert list(folder.iterdir()) == []


def test_a_full_disk_is_one_warning_and_the_run_goes_on(tmp_path, model_file, monkeypatch):
    def full(path, data, mode=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(collect_mod, "atomic_write_bytes", full)
    folder = tmp_path / "c"
    report, err = run(tmp_path, model_file, folder, unsure_all=True)  # two people to collect
    lines = [x for x in err.splitlines() if "collect" in x]
    assert len(lines) == 1 and "No space left on device" in lines[0] and "monitor goes on" in lines[0], err
    assert report.collected == 0 and list(folder.iterdir()) == []


def test_on_the_live_screen_the_warning_is_one_note(tmp_path, model_file, monkeypatch):
    def full(path, data, mode=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(collect_mod, "atomic_write_bytes", full)
    screen = Console(file=io.StringIO(), width=120)
    report, notes = run(tmp_path, model_file, tmp_path / "c", unsure_all=True, screen=screen)
    lines = [x for x in notes.splitlines() if "collect" in x]
    assert len(lines) == 1 and "No space left on device" in lines[0], notes


def _candidate(p: float = 0.5):
    rows = np.stack([probs_for(2, 0, 1, p)] * 3)
    return candidate(1, 7, 1.5, np.full((64, 48, 3), 40, np.uint8), vote(rows, 3), rows)


def test_a_line_the_disk_refuses_is_cut_off_and_its_crop_removed(tmp_path, monkeypatch):
    folder = tmp_path / "c"
    col = Collector(folder, CollectConfig(), "abc")
    assert col.offer(_candidate(), "door") == []
    before = (folder / "collected.jsonl").read_bytes()
    real_write = collect_mod.os.write

    def half_then_full(fd, data):  # /dev/full after a few bytes
        real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(collect_mod.os, "write", half_then_full)
    (line,) = col.offer(_candidate(), "door")
    monkeypatch.undo()
    assert "No space left on device" in line and col.stopped
    assert (folder / "collected.jsonl").read_bytes() == before  # the good line kept, no half line
    assert len(list(folder.glob("*.jpg"))) == 1  # the refused record's crop is gone
    assert col.offer(_candidate(), "door") == []  # stopped: no second warning


def test_the_folder_can_be_deleted_while_collecting(tmp_path):
    folder = tmp_path / "c"
    col = Collector(folder, CollectConfig(), "abc")
    col.offer(_candidate(), "door")
    shutil.rmtree(folder)
    (note,) = col.offer(_candidate(), "door")
    assert "was removed; made it again" in note
    (rec,) = records(folder)
    assert (folder / rec["file"]).is_file() and col.written == 2


def test_a_confident_person_is_not_collected_without_the_share_and_the_share_is_rate_limited(tmp_path):
    now = [0.0]
    col = Collector(
        tmp_path / "c", CollectConfig(confident_share=0.5, confident_min_gap_s=10.0), "", lambda: now[0]
    )
    sure = _candidate(0.95)
    assert [col.reason(sure) for _ in range(4)] == [None, "confident", None, None]  # the gap holds it back
    now[0] = 11.0
    assert col.reason(sure) == "confident"
    assert Collector(tmp_path / "d", CollectConfig(confident_share=0.0), "").reason(sure) is None


def test_the_collect_file_name_is_the_label_pages():
    assert collect_mod.COLLECTED_JSONL == store.COLLECTED_JSONL


def test_collect_on_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "v.mp4").write_bytes(b"")
    (tmp_path / "f").write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(["--video", str(tmp_path / "v.mp4"), "--headless", "--collect", str(tmp_path / "f")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(
        f"--collect {tmp_path / 'f'} is a file; give a folder"
    ) and "Traceback" not in "\n".join(err)


def test_without_show_gender_age_a_record_holds_no_gender_or_age(tmp_path, model_file):
    folder = tmp_path / "collect"
    report, _ = run(tmp_path, model_file, folder)
    (rec,) = records(folder)
    assert rec["predicted"] == {"mask": "not_wear"} and list(rec["probs"]) == ["mask"]
    (crop,), warnings = store.read_crops(folder)
    assert warnings == [] and crop.guess() == "not_wear"


def test_votes_that_disagree_make_a_confident_looking_person_uncertain(tmp_path):
    col = Collector(tmp_path / "c", CollectConfig(max_confidence=0.5, confident_share=0.0), "")
    crop = np.zeros((64, 48, 3), np.uint8)
    split = np.stack([probs_for(2, p=0.99)] * 4 + [probs_for(0, p=0.99)])
    agreed = np.stack([probs_for(2, p=0.99)] * 5)
    c = candidate(1, 0, 0.0, crop, vote(split, 3), split)
    assert c.disagree and c.state.confidence > 0.75 and col.reason(c) == "uncertain"
    assert col.reason(candidate(1, 0, 0.0, crop, vote(agreed, 3), agreed)) is None
