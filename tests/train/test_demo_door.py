"""`mask-train demo-door` end to end at tiny settings: the collect folder, labels.csv in the label page's
format, the import, the fine-tune's parent hash, and printed numbers that ARE a separate evaluate run."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from engines.fileio import sha256_file
from tests.conftest import SHARED, one_torch_thread
from tests.helpers import make_checkpoint
from train.cli import main
from train.workflows.door import DoorFace, door_camera, split_door

REAL = SHARED / "datasets" / "face-mask-real"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is missing")


def _code(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(scope="module")
def door(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("door")
    base = make_checkpoint(tmp / "base.pt", head="multi", input_size=(64, 48))
    rows = [("with_mask", "wear"), ("without_mask", "not_wear")]
    photos = tmp / "photos.csv"
    with photos.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "mask", "group"])
        for folder, mask in rows:
            for p in sorted((REAL / folder).glob("*.jpg"))[40:48]:
                w.writerow([f"{folder}/{p.name}", mask, f"{folder}/{p.name}"])
    out = tmp / "out"
    argv = ["demo-door", "--base", str(base), "--photos", str(photos), "--root", str(REAL), "--out", str(out)]
    argv += [
        "--per-state",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--threads",
        "1",
        "--incorrect",
        "none",
    ]
    with one_torch_thread():
        code = _code(argv)
    return code, base, out, tmp


def test_demo_door_runs_through_collect_label_import_and_fine_tune(door, capsys):
    code, base, out, _ = door
    assert code == 0
    report = json.loads((out / "door.json").read_text())
    assert report["faces"] == 16 and report["tune_faces"] + report["held_faces"] == 16
    assert report["tune_faces"] > 0 and report["held_faces"] > 0
    records = [json.loads(line) for line in (out / "collect" / "collected.jsonl").read_text().splitlines()]
    with (out / "collect" / "labels.csv").open() as fh:
        labels = list(csv.DictReader(fh))
    assert len(records) == len(labels) == report["collected"] == report["tune_faces"]  # --max-confidence 1
    assert list(labels[0]) == ["file", "mask", "gender", "age"]  # the label page's file, unchanged
    assert {r["file"] for r in records} == {r["file"] for r in labels}
    assert all(r["mask"] in ("wear", "not_wear") and r["gender"] == r["age"] == "" for r in labels)
    assert all(r["model_sha256"] == sha256_file(base) for r in records)
    assert report["import_counts"]["collected_crop"] == report["collected"]
    assert report["parent_sha256"] == report["base_sha256"] == sha256_file(base)


def test_demo_door_numbers_are_a_separate_evaluate_compare(door):
    _, base, out, tmp = door
    report = json.loads((out / "door.json").read_text())
    new = report["new_model"]
    argv = ["evaluate", "--compare", str(base), new, "--cache", str(out / "heldout-cache"), "--split", "all"]
    with one_torch_thread():
        assert _code(argv + ["--report", str(tmp / "cmp"), "--threads", "1"]) == 0
    separate = json.loads((tmp / "cmp" / "comparison.json").read_text())
    for side in ("before", "after"):
        assert separate[side] == report["comparison"][side]
        assert separate[side]["n"] == report["held_faces"]
        assert 0.0 <= separate[side]["acc_flag"] <= 1.0
        # mask-only labels (the door's) are scored: every face counts in a mask state's support
        supports = [separate[side][f"support_{m}"] for m in ("wear", "incorrect", "not_wear")]
        assert sum(supports) == report["held_faces"] and separate[side]["acc_mask"] is not None


def test_a_photo_group_is_never_on_both_sides_and_the_camera_is_the_doors():
    crop = np.zeros((8, 6, 3), np.uint8)
    faces = [DoorFace(f"p{i}_{j}.jpg", i % 3, f"g{i}", crop) for i in range(40) for j in range(3)]
    tune, held = split_door(faces, 0.4, 0)
    assert {f.group for f in tune}.isdisjoint({f.group for f in held}) and tune and held
    img = np.full((60, 80, 3), (40, 120, 200), np.uint8)
    seen = door_camera(img, 1)
    assert seen.shape == img.shape and seen.mean() < img.mean() / 2  # dim
    assert seen[:, :20].mean() > seen[:, -20:].mean()  # lit from the left
    assert np.allclose(seen[..., 0], seen[..., 1], atol=1) or seen.std(axis=2).mean() < 1  # grey


def test_synthetic_incorrect_masks_join_the_group_of_the_photo_they_were_drawn_on(tmp_path):
    from train.workflows.door import incorrect_rows

    synth = tmp_path / "synth"
    synth.mkdir()
    photos = [{"file": "../shared/datasets/face-mask-real/without_mask/0003.jpg"}, {"file": "x/other.jpg"}]
    (synth / "synth.json").write_text(json.dumps({"settings": {"photos": photos}}))
    (synth / "labels.csv").write_text(
        "file,mask,gender,age,group\na/i.jpg,incorrect,,,photo000000\na/m.jpg,wear,,,photo000000\n"
        "b/i.jpg,incorrect,,,photo000001\n"
    )
    real = [(tmp_path / "r.jpg", "without_mask/0003.jpg", 2, "without_mask/0001.jpg")]
    rows = incorrect_rows(synth / "labels.csv", real)
    assert [(r[1], r[2], r[3]) for r in rows] == [
        ("incorrect:a/i.jpg", 1, "without_mask/0001.jpg"),  # the bare photo's near-duplicate group
        ("incorrect:b/i.jpg", 1, "synth:x/other.jpg"),
    ]


def test_a_single_head_base_is_one_line(tmp_path, capsys):
    base = make_checkpoint(tmp_path / "single.pt", head="single", input_size=(64, 48))
    (tmp_path / "p.csv").write_text("file,mask\nwith_mask/0001.jpg,wear\n")
    argv = ["demo-door", "--base", str(base), "--photos", str(tmp_path / "p.csv"), "--root", str(REAL)]
    assert _code(argv + ["--out", str(tmp_path / "o"), "--incorrect", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "single-head model" in err and "mask-only" in err
