"""Privacy by default: face files 0600 in 0700 folders, retention (the running monitor and `mask-monitor
prune`), faces blurred in --record but flagged people's, gender and age only with monitor.show_gender_age."""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
import pytest

from engines.config import CollectConfig, ConfigError, MonitorConfig
from engines.faces import Face
from monitor.app import Monitor, Options
from monitor.cli import main
from monitor.config import Config, RecordConfig, SaveFacesConfig, from_dict
from monitor.outputs.retention import Kept, prune, suffix_in, targets
from monitor.sources.kinds import Source, SourceSpec
from tests.monitor.fakes import FakeCamera, ScriptedEngine, read_frames
from train.label import store

LEFT, RIGHT = (16.0, 24.0, 64.0, 88.0), (96.0, 24.0, 144.0, 88.0)
DAY = 86400.0


class TwoFaces:
    def detect(self, frame, **kw):
        return [Face(LEFT, 0.99), Face(RIGHT, 0.99)]

    def detect_region(self, frame, region, **kw):
        return []


class LeftUnmasked(ScriptedEngine):
    """The person on the left wears no mask (flagged), the one on the right wears one (never flagged)."""

    def __init__(self) -> None:
        super().__init__([0], confidence=0.95)

    def classify(self, crops, batch_size: int = 32):
        out = np.full((len(crops), 18), 0.05 / 17, np.float32)
        for i, c in enumerate(crops):  # the left face is textured dark, the right one textured bright
            out[i, 2 * 6 + 3 + 1 if float(np.mean(c)) < 128 else 0 + 3 + 1] = 0.95  # female, 30-59
        return out


def textured_frame() -> np.ndarray:
    """Dark left half, bright right half, each with a strong 4-px checkerboard (detail a blur removes)."""
    y, x = np.mgrid[0:120, 0:160]
    check = (((x // 4) + (y // 4)) % 2 * 80).astype(np.int16)
    f = np.where(x < 80, 20 + check, 150 + check).astype(np.uint8)
    return np.repeat(f[:, :, None], 3, axis=2)


def run(tmp_path, options: Options, cfg: Config | None = None, frames: int = 30) -> tuple[object, str, str]:
    out, err = io.StringIO(), io.StringIO()
    cam = FakeCamera([textured_frame()], fail_after=frames)
    mon = Monitor(
        cfg or Config(monitor=MonitorConfig(detect_every=1, min_votes=3)),
        [Source("door", SourceSpec("video", "door.mp4"))],
        LeftUnmasked(),
        TwoFaces(),
        options,
        opener=lambda spec: cam,
        out=out,
        err=err,
    )
    return mon.run(), out.getvalue(), err.getvalue()


def inner_std(image: np.ndarray, box) -> float:
    """Pixel spread inside a face box, away from the drawn outline."""
    x1, y1, x2, y2 = (int(v) for v in box)
    return float(image[y1 + 6 : y2 - 6, x1 + 6 : x2 - 6].astype(np.float32).std())


# --- files and folders --------------------------------------------------------------------------------------


def test_every_face_and_event_file_is_0600_in_a_0700_folder(tmp_path):
    old = os.umask(0o022)
    try:
        opts = Options(
            headless=True,
            events=tmp_path / "events.jsonl",
            save_faces=tmp_path / "faces",
            record=tmp_path / "rec.avi",
            collect=tmp_path / "collect",
        )
        monitor = MonitorConfig(detect_every=1, min_votes=3)
        cfg = Config(monitor=monitor, collect=CollectConfig(max_confidence=1.0))  # everyone collected
        report, _, _ = run(tmp_path, opts, cfg)
    finally:
        os.umask(old)
    assert report.collected >= 1 and report.recorded == 30
    for folder in ("faces", "collect"):
        assert (tmp_path / folder).stat().st_mode & 0o777 == 0o700
        files = list((tmp_path / folder).iterdir())
        assert files and all(f.stat().st_mode & 0o777 == 0o600 for f in files), files
    for f in ("events.jsonl", "rec.avi"):
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o600


def test_a_record_folder_of_several_sources_is_0700(tmp_path):
    from monitor.outputs.recording import check_record_dir

    old = os.umask(0o022)
    try:
        folder = check_record_dir(tmp_path / "recordings")
    finally:
        os.umask(old)
    assert folder.stat().st_mode & 0o777 == 0o700


# --- the recording's faces ----------------------------------------------------------------------------------


def test_the_recording_blurs_every_face_but_the_flagged_persons(tmp_path):
    report, out, _ = run(tmp_path, Options(headless=True, record=tmp_path / "rec.avi"))
    assert out.count("FLAG person") == 1  # the left one, unmasked
    last = read_frames(tmp_path / "rec.avi")[-1]
    source = textured_frame()
    assert inner_std(source, RIGHT) > 30 and inner_std(source, LEFT) > 30
    assert inner_std(last, RIGHT) < 5, inner_std(last, RIGHT)  # a masked passer-by: blurred
    assert inner_std(last, LEFT) > 25, inner_std(last, LEFT)  # the flagged person: shown
    first = read_frames(tmp_path / "rec.avi", limit=1)[0]
    assert inner_std(first, LEFT) < 5  # not flagged yet on the first frame: blurred too


def test_record_blur_none_keeps_every_face(tmp_path):
    cfg = Config(monitor=MonitorConfig(detect_every=1, min_votes=3), record=RecordConfig(blur="none"))
    run(tmp_path, Options(headless=True, record=tmp_path / "rec.avi"), cfg)
    last = read_frames(tmp_path / "rec.avi")[-1]
    assert inner_std(last, RIGHT) > 25 and inner_std(last, LEFT) > 25


def test_record_blur_takes_only_faces_or_none():
    with pytest.raises(ConfigError, match=r"\[record\]\.blur = 'blurred' is not one of 'faces', 'none'"):
        from_dict({"record": {"blur": "blurred"}}, "my.toml")


# --- gender and age -----------------------------------------------------------------------------------------


def test_gender_and_age_are_hidden_unless_show_gender_age(tmp_path):
    report, out, err = run(tmp_path, Options(headless=True, events=tmp_path / "ev.jsonl"))
    (line,) = [x for x in out.splitlines() if "FLAG person" in x]
    assert "(-, -; confidence" in line and "female" not in report.summary
    assert err.count("gender and age not estimated (monitor.show_gender_age = false)") == 1
    rows = [json.loads(x) for x in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert rows and all(r["gender"] is None and r["age"] is None for r in rows)

    cfg = Config(monitor=MonitorConfig(detect_every=1, min_votes=3, show_gender_age=True))
    report, out, err = run(tmp_path, Options(headless=True), cfg)
    (line,) = [x for x in out.splitlines() if "FLAG person" in x]
    assert "(female, 30-59; confidence" in line and "not estimated" not in err


def test_show_gender_age_must_be_true_or_false():
    with pytest.raises(ConfigError, match=r"\[monitor\]\.show_gender_age must be true or false, got 'yes'"):
        from_dict({"monitor": {"show_gender_age": "yes"}}, "my.toml")


# --- retention ----------------------------------------------------------------------------------------------


def put(folder, name: str, size: int, age_days: float) -> None:
    folder.mkdir(exist_ok=True)
    p = folder / name
    p.write_bytes(b"x" * size)
    t = time.time() - age_days * DAY
    os.utime(p, (t, t))


def test_prune_deletes_by_age_then_the_oldest_over_the_cap_and_only_the_monitors_files(tmp_path):
    f = tmp_path / "faces"
    put(f, "old.jpg", 1000, 40)
    put(f, "a.jpg", 400_000, 3)
    put(f, "b.jpg", 400_000, 2)
    put(f, "c.jpg", 400_000, 1)
    put(f, "notes.txt", 5000, 400)  # not the monitor's
    put(f, ".c.jpg.tmp1.jpg", 900_000, 0)  # a write in progress: never cut for size
    put(f, ".b.jpg.tmp2.jpg", 10, 31)  # a temp file a crash left: goes by age
    res = prune(Kept("--save-faces", f, 30, 1.0, suffix_in((".jpg",))))
    assert sorted(p.name for p in f.iterdir()) == [".c.jpg.tmp1.jpg", "b.jpg", "c.jpg", "notes.txt"]
    assert res.removed == 3 and res.kept == 3 and res.errors == []
    # 0 turns a limit off
    put(f, "ancient.jpg", 10, 3000)
    assert prune(Kept("--save-faces", f, 0, 0, suffix_in((".jpg",)))).removed == 0


def test_pruning_a_collect_folder_drops_the_deleted_crops_lines(tmp_path):
    f = tmp_path / "collect"
    put(f, "1.jpg", 100, 60)
    put(f, "2.jpg", 100, 1)
    lines = [json.dumps({"file": "1.jpg"}), "not json", json.dumps({"file": "2.jpg"})]
    (f / "collected.jsonl").write_text("\n".join(lines) + "\n")
    (k,) = targets(Config(), collect=f)
    assert prune(k).removed == 1
    assert (f / "collected.jsonl").read_text().splitlines() == lines[1:]
    assert (f / "collected.jsonl").stat().st_mode & 0o777 == 0o600
    _, warnings = store.read_crops(f)
    assert not any("has a record but no image" in w for w in warnings)


def test_a_single_recording_is_pruned_alone(tmp_path):
    put(tmp_path, "out.mp4", 10, 45)
    put(tmp_path, "holiday.mp4", 10, 400)  # the user's, beside it
    (k,) = targets(Config(), record=tmp_path / "out.mp4")
    assert prune(k).removed == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["holiday.mp4"]


def test_the_running_monitor_prunes_at_start_and_when_a_write_passes_the_cap(tmp_path):
    f = tmp_path / "faces"
    put(f, "expired.jpg", 100, 31)
    put(f, "older.jpg", 60_000, 2)
    put(f, "newer.jpg", 60_000, 1)
    cfg = Config(
        monitor=MonitorConfig(detect_every=1, min_votes=3),
        save_faces=SaveFacesConfig(max_age_days=30, max_mb=0.1),
    )
    report, _, err = run(tmp_path, Options(headless=True, save_faces=f), cfg)
    names = sorted(p.name for p in f.iterdir())
    assert "expired.jpg" not in names and "older.jpg" not in names  # by age; over 0.1 MB at start
    saved = [n for n in names if n.endswith("_not_wear.jpg")]
    assert len(saved) == 1 and sum((f / n).stat().st_size for n in names) <= 100_000
    assert "retention: --save-faces" in err and "removed 2 files" in err


def test_prune_command_prints_what_it_removed(tmp_path, capsys):
    put(tmp_path / "faces", "old.jpg", 100, 31)
    put(tmp_path / "faces", "new.jpg", 100, 1)
    put(tmp_path / "rec", "door.mp4", 100, 31)
    with pytest.raises(SystemExit) as exc:
        main(["prune", "--save-faces", str(tmp_path / "faces"), "--record", str(tmp_path / "rec")])
    assert exc.value.code == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"mask-monitor: prune --save-faces {tmp_path / 'faces'}: removed 1 files, 0.0 MB "
        "(older than 30 days or over 500 MB); kept 1 files, 0.0 MB",
        f"mask-monitor: prune --record {tmp_path / 'rec'}: removed 1 files, 0.0 MB "
        "(older than 30 days or over 2000 MB); kept 0 files, 0.0 MB",
    ]
    assert [p.name for p in (tmp_path / "faces").iterdir()] == ["new.jpg"]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            [],
            "nothing to prune: give --collect DIR, --save-faces DIR, --record OUT.mp4|DIR and/or "
            "--evidence DIR",
        ),
        (["--collect", "{t}/missing"], "--collect {t}/missing does not exist"),
        (
            ["--save-faces", "{t}/file.txt"],
            "--save-faces {t}/file.txt is a file; give the folder the monitor wrote",
        ),
        (
            ["--record", "{t}/file.txt"],
            "--record {t}/file.txt: give a video (.mp4 .avi .mkv .mov) or a folder of them",
        ),
    ],
)
def test_prune_bad_input_is_one_line_and_deletes_nothing(tmp_path, capsys, args, message):
    put(tmp_path / "faces", "old.jpg", 100, 31)
    (tmp_path / "file.txt").write_text("x")
    argv = ["prune", "--collect", str(tmp_path / "faces"), *[a.format(t=tmp_path) for a in args]]
    with pytest.raises(SystemExit) as exc:
        main(argv if args else ["prune"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mask-monitor: error: {message.format(t=tmp_path)}"]
    assert (tmp_path / "faces" / "old.jpg").exists()  # checked before anything is deleted
