import csv
import json
import shutil
import subprocess
import sys

import cv2
import pytest

from engines.config import CropConfig, with_overrides
from engines.errors import UserError
from tests.conftest import REPO
from tests.datagen import BAD_FOLDER, CORRUPT, EVAL_COUNT, OLD_FOLDER, PEOPLE
from train.config import Config
from train.data.cache import Cache
from train.data.layout import scan_eval, scan_train
from train.data.prepare import prepare

N_GOOD = len(PEOPLE) * 7 - 1  # every person's 7 photos, less the corrupt one


def _manifest(cache):
    with open(cache / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_scan_lists_images_and_problems_without_raising(competition_data):
    scan = scan_train(competition_data)
    assert scan.people == len(PEOPLE)
    assert len(scan.images) == len(PEOPLE) * 7  # the corrupt file is found only when decoded
    kinds = {(p.kind, p.path.split("/")[2]) for p in scan.problems}
    assert kinds == {("bad_folder", BAD_FOLDER), ("age_out_of_range", OLD_FOLDER)}
    assert scan.hidden == 1  # '._mask1.jpg' is skipped silently
    person2 = [i for i in scan.images if i.person == "000002"]
    assert sorted(i.path.suffix for i in person2) == [".jpeg"] * 2 + [".jpg"] * 3 + [".png"] * 2
    assert {i.mask for i in person2} == {0, 1, 2}
    ev = scan_eval(competition_data)  # the competition folder or eval/ itself
    assert len(ev.images) == EVAL_COUNT and not ev.problems


def test_prepare_counts_manifest_report_and_crops(prepared):
    data, cache, report = prepared
    c = report.counts
    assert c["people"] == len(PEOPLE) and c["images"] == N_GOOD and c["cropped"] == N_GOOD
    assert c["corrupt"] == 1 and c["bad_folder"] == 1 and c["age_out_of_range"] == 1
    assert c["faces"] + c["centred"] == N_GOOD
    # the drawn person (7 images, a cartoon head) falls back to the centred crop; the masked-face nets
    # (samples/detector_masked.pt) take two or three of its masked images for faces
    assert c["centred"] >= 4
    assert c["faces"] >= N_GOOD - 14  # the photo people are found (masked ones too)
    assert c["eval_images"] == EVAL_COUNT
    rows = _manifest(cache)
    assert len(rows) == N_GOOD and len({r["key"] for r in rows}) == N_GOOD
    assert f"{CORRUPT[0]}/{CORRUPT[1]}" not in {r["key"] for r in rows}
    drawn = [r for r in rows if r["person"] == "000012"]
    missed = [r for r in drawn if r["found"] == "0"]
    assert len(drawn) == 7 and len(missed) >= 4 and all(float(r["score"]) == 0.0 for r in missed)
    for r in rows:
        crop = cv2.imread(str(cache / r["crop"]))
        assert crop.shape == (512, 384, 3)
        assert r["mask"] in "012" and r["gender"] in "01" and float(r["x2"]) > float(r["x1"])
    saved = json.loads((cache / "report.json").read_text())
    assert saved["counts"]["corrupt"] == 1
    assert {p["kind"] for p in saved["problems"]} == {"corrupt", "bad_folder", "age_out_of_range"}
    assert len(saved["centred"]) == c["centred"]
    assert Cache(cache).crop_config() == CropConfig()  # the geometry that fit puts into ModelMeta.crop
    samples = Cache(cache).samples()
    assert len(samples) == N_GOOD and all(s.crop.is_file() for s in samples)


def test_second_run_skips_and_a_changed_file_is_redone(prepared, tmp_path):
    data, cache, _ = prepared
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    again = prepare(data, copy, Config(), show=False)
    assert again.counts["skipped"] == N_GOOD and again.counts["cropped"] == 0
    assert again.counts["eval_skipped"] == EVAL_COUNT
    assert again.counts["faces"] == prepared[2].counts["faces"]
    # a changed crop geometry re-crops every image from the stored face boxes (no second detection)
    before = cv2.imread(str(copy / _manifest(copy)[0]["crop"]))
    wider = with_overrides(Config(), {"crop.margin": 0.8})
    redo = prepare(data, copy, wider, include_eval=False, show=False)
    assert redo.counts["recropped"] == N_GOOD and redo.counts["cropped"] == 0
    assert redo.counts["faces"] == again.counts["faces"]
    assert Cache(copy).crop_config().margin == 0.8
    after = cv2.imread(str(copy / _manifest(copy)[0]["crop"]))
    assert after.shape == before.shape and cv2.absdiff(after, before).mean() > 5  # a wider view of the face
    # a changed detector setting detects again
    strict = with_overrides(wider, {"detector.min_face_size": 300})
    redone = prepare(data, copy, strict, include_eval=False, show=False)
    assert redone.counts["cropped"] == N_GOOD and redone.counts["faces"] < again.counts["faces"]


def test_training_commands_keep_the_cache_settings_and_its_eval_rows(prepared, tmp_path):
    """fit / evaluate / kfold bring the cache up to date (ensure_prepared) with the settings it was made with:
    they neither re-crop a `prepare --margin 0.3` cache with config.toml's margin nor drop its eval rows."""
    from train.data.prepare import ensure_prepared

    data, cache, _ = prepared
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    narrow = prepare(data, copy, with_overrides(Config(), {"crop.margin": 0.3}), show=False)
    assert narrow.counts["recropped"] == N_GOOD and narrow.counts["eval_images"] == EVAL_COUNT
    crops = {r["crop"]: (copy / r["crop"]).read_bytes() for r in _manifest(copy)}
    eval_rows = Cache.read_rows(copy / "eval_manifest.csv")
    before = json.loads((copy / "report.json").read_text())
    cfg = with_overrides(Config(), {"data.data_dir": str(data), "data.cache_dir": str(copy)})  # margin 0.6
    _, samples = ensure_prepared(cfg, data_given=True, show=False)
    assert len(samples) == N_GOOD and Cache(copy).crop_config().margin == 0.3
    assert {r["crop"]: (copy / r["crop"]).read_bytes() for r in _manifest(copy)} == crops  # not re-cropped
    assert Cache.read_rows(copy / "eval_manifest.csv") == eval_rows and len(eval_rows) == EVAL_COUNT
    after = json.loads((copy / "report.json").read_text())
    assert after["counts"]["skipped"] == N_GOOD and "recropped" not in after["counts"]
    for key in ("eval_images", "eval_faces", "eval_centred"):
        assert after["counts"][key] == before["counts"][key], key
    assert after["centred"] == before["centred"] and after["problems"] == before["problems"]
    # prepare --no-eval with the same settings keeps the eval half too; with other settings it is dropped
    prepare(data, copy, with_overrides(Config(), {"crop.margin": 0.3}), include_eval=False, show=False)
    assert len(Cache.read_rows(copy / "eval_manifest.csv")) == EVAL_COUNT
    prepare(data, copy, Config(), include_eval=False, show=False)
    assert not Cache.read_rows(copy / "eval_manifest.csv")
    assert "eval_images" not in json.loads((copy / "report.json").read_text())["counts"]


def test_a_cache_of_other_data_is_refused(prepared, tmp_path):
    data, cache, _ = prepared
    other = tmp_path / "other"
    (other / "train" / "images").mkdir(parents=True)
    (other / "train" / "train.csv").write_text("id,gender,race,age,path\n")
    with pytest.raises(UserError, match="holds crops of"):
        prepare(other, cache, Config(), show=False)


def moved_copy(data, cache, tmp_path):
    """A copy of the data folder and one of its cache that records the copy as its source (copytree keeps
    sizes and mtimes, so every crop stays current), less one image of the data: (data, cache, images left)."""
    mine, copy = tmp_path / "data", tmp_path / "cache"
    shutil.copytree(data, mine)
    shutil.copytree(cache, copy)
    info = json.loads((copy / "cache.json").read_text())
    (copy / "cache.json").write_text(json.dumps({**info, "data_dir": str(mine.resolve())}))
    (mine / "train" / "images" / _manifest(copy)[0]["key"]).unlink()
    return mine, copy, N_GOOD - 1


def test_without_data_a_cache_is_refreshed_from_the_folder_it_was_made_of(prepared, tmp_path):
    """Not from config.toml's data.data_dir (another folder: refused as other data before); and used as it
    is once its own folder is gone, even where config.toml names a folder that exists."""
    from train.data.prepare import ensure_prepared

    data, cache, _ = prepared
    mine, copy, left = moved_copy(data, cache, tmp_path)
    cfg = with_overrides(Config(), {"data.data_dir": str(data), "data.cache_dir": str(copy)})
    assert len(ensure_prepared(cfg, data_given=False, show=False)[1]) == left  # refreshed from `mine`
    assert len(_manifest(copy)) == left and Cache(copy).made_from(mine)
    shutil.rmtree(mine)
    assert len(ensure_prepared(cfg, data_given=False, show=False)[1]) == left  # as it is, not from `data`
    assert Cache(copy).made_from(mine)


def test_a_cache_of_other_data_names_the_command_that_rebuilds_it(prepared, tmp_path):
    """fit / kfold / evaluate have no --force: their message names `mask-train prepare --force`."""
    from train.data.prepare import ensure_prepared

    data, cache, _ = prepared
    mine, copy, _ = moved_copy(data, cache, tmp_path)
    cfg = with_overrides(Config(), {"data.data_dir": str(data), "data.cache_dir": str(copy)})
    with pytest.raises(
        UserError,
        match=r"choose another --cache, or rebuild it with `mask-train prepare --force "
        rf"--data {data} --out {copy}`$",
    ):
        ensure_prepared(cfg, data_given=True, show=False)
    with pytest.raises(UserError, match=r"\(--out\) or pass --force to rebuild it$"):
        prepare(data, copy, Config(), show=False)


def test_evaluate_without_config_or_data_uses_the_caches_own_data_folder(prepared, tmp_path, monkeypatch):
    from tests.helpers import make_checkpoint
    from train.cli import _main as cli

    data, cache, _ = prepared
    mine, copy, left = moved_copy(data, cache, tmp_path)
    make_checkpoint(tmp_path / "m.pt", input_size=(64, 48))
    monkeypatch.chdir(tmp_path)  # no config.toml here
    assert (
        cli(["evaluate", "--checkpoint", "m.pt", "--cache", "cache", "--split", "all", "--threads", "1"]) == 0
    )
    assert json.loads((tmp_path / "evaluate-m" / "metrics.json").read_text())["n"] == left


def test_cache_made_from_compares_whole_resolved_folders(prepared, tmp_path, monkeypatch):
    """The one check that eda (face boxes), predict (eval boxes) and prepare (refusal) share."""
    data, cache, _ = prepared
    c = Cache(cache)
    assert c.made_from(data) and c.made_from(data / "eval", "eval") and not c.made_from(data / "eval")
    assert (
        not c.made_from(data / "train")
        and not c.made_from(data.parent)
        and not Cache(tmp_path).made_from(data)
    )
    monkeypatch.chdir(data.parent)
    assert c.made_from(data.name) and c.made_from(f"./{data.name}/eval", "eval")


def test_missing_inputs_are_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        scan_train(tmp_path / "nope")
    (tmp_path / "train" / "images").mkdir(parents=True)
    with pytest.raises(UserError, match="train.csv is missing"):
        scan_train(tmp_path)
    (tmp_path / "eval" / "images").mkdir(parents=True)
    with pytest.raises(UserError, match="info.csv is missing"):
        scan_eval(tmp_path)
    (tmp_path / "train" / "train.csv").write_text("id,gender\n1,male\n")
    with pytest.raises(UserError, match="missing column"):
        scan_train(tmp_path)


def test_cli_missing_data_folder_is_one_line_exit_2(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "train",
            "prepare",
            "--data",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "cache"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_an_interrupted_prepare_keeps_its_progress_and_never_mixes_settings(prepared, tmp_path, monkeypatch):
    import train.data.prepare as prep

    data, cache, _ = prepared
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    # another detector setting: everything is detected again (a large minimum face size keeps MTCNN quick)
    other = with_overrides(Config(), {"detector.min_face_size": 300})
    real, calls = prep.write_crop, []

    def write_then_interrupt(path, crop):
        calls.append(path)
        if len(calls) == 17:
            raise KeyboardInterrupt
        real(path, crop)

    monkeypatch.setattr(prep, "FLUSH_EVERY", 8)
    monkeypatch.setattr(prep, "write_crop", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        prepare(data, copy, other, include_eval=False, show=False)
    assert len(_manifest(copy)) == 16  # what was saved holds only crops of the new settings
    monkeypatch.setattr(prep, "write_crop", real)
    again = prepare(data, copy, other, include_eval=False, show=False)
    assert again.counts["skipped"] == 16 and again.counts["cropped"] == N_GOOD - 16
    assert len(_manifest(copy)) == N_GOOD and again.counts["faces"] < prepared[2].counts["faces"]


def test_a_cache_made_with_facenet_nets_keeps_them_under_the_masked_face_default(tmp_path):
    """Caches recorded no detector weights before that key existed: they were facenet-pytorch's nets, and a
    cache made with them is reused as it is, not cropped again with config.toml's masked-face nets."""
    from engines.config import DetectorConfig
    from train.data.cache import Cache, settings_of
    from train.data.prepare import cache_settings

    made = settings_of(Config(detector=DetectorConfig(weights="")))
    assert "weights" not in made["detector"]
    cache = Cache(tmp_path / "cache")
    cache.root.mkdir()
    cache.write_info({"data_dir": None, "settings": made})
    cfg = cache_settings(Config(), cache)
    assert Config().detector.weights and cfg.detector.weights == ""
    assert settings_of(cfg) == made
    assert settings_of(Config())["detector"]["weights"] == "samples/detector_masked.pt"
