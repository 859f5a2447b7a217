"""eda, bench-loader and the command table."""

import json
import shutil
import subprocess
import sys

import cv2
import pytest

from tests.conftest import REPO, one_torch_thread
from tests.datagen import CORRUPT, DUPLICATE, PEOPLE, SWAPPED
from tests.helpers import make_checkpoint
from train.cli import _main as cli

N_GOOD = len(PEOPLE) * 7 - 1


@pytest.fixture(scope="module")
def eda_report(prepared, tmp_path_factory):
    data, cache, _ = prepared
    report = tmp_path_factory.mktemp("eda")
    with one_torch_thread():
        assert cli(["eda", "--data", str(data), "--cache", str(cache), "--report", str(report)]) == 0
    return report, json.loads((report / "eda.json").read_text())


def test_eda_counts(eda_report):
    _, s = eda_report
    assert s["images"] == N_GOOD + 1 and s["readable"] == N_GOOD and s["people"] == len(PEOPLE)
    assert sum(s["classes"]) == N_GOOD and s["mask"][1] == len(PEOPLE) and s["mask"][2] == len(PEOPLE)
    assert sum(map(sum, s["people_gender_age"])) == len(PEOPLE)
    assert s["people_gender_age"][1][2] == 1  # one woman >= 60
    assert s["sizes"] == [["384x512", N_GOOD]]
    assert s["unreadable"] == [f"{CORRUPT[0]}/{CORRUPT[1]}"]
    assert {p["kind"] for p in s["problems"]} == {"bad_folder", "age_out_of_range"}


def test_eda_finds_duplicates_and_inconsistent_labels(eda_report):
    _, s = eda_report
    dup = sorted(f"{DUPLICATE[0]}/{name}" for name in DUPLICATE[1:])
    assert [sorted(g) for g in s["exact_duplicates"]] == [dup]
    found = {(x["check"], x["key"]) for x in s["inconsistent"]}
    assert found == {
        ("same photo, two labels", dup[0]),
        ("normal photo shows less skin", f"{SWAPPED}/normal.jpg"),
    }  # and nothing else


def test_eda_plots(eda_report):
    report, _ = eda_report
    for name in ("classes.png", "tasks.png", "people.png", "ages.png", "sizes.png"):
        img = cv2.imread(str(report / name))
        assert img is not None and img.shape[1] >= 600 and img.std() > 10, name


def test_eda_model_check_flags_disagreements(prepared, tmp_path):
    data, cache, _ = prepared
    shutil.copytree(cache, tmp_path / "cache")  # the model check brings the cache up to date
    ckpt = make_checkpoint(tmp_path / "random.pt", input_size=(64, 48))
    with one_torch_thread():
        assert (
            cli(
                [
                    "eda",
                    "--data",
                    str(data),
                    "--cache",
                    str(tmp_path / "cache"),
                    "--report",
                    str(tmp_path / "r"),
                    "--checkpoint",
                    str(ckpt),
                ]
            )
            == 0
        )
    s = json.loads((tmp_path / "r" / "eda.json").read_text())
    model = [x for x in s["inconsistent"] if x["check"].startswith("model disagrees")]
    # a random network disagrees with the labels somewhere; every flag names a real image or person
    assert model
    folders = {p.folder for p in PEOPLE}
    assert all(x["key"].split("/")[0] in folders for x in model)
    assert all(("/" in x["key"]) == (x["check"] == "model disagrees (mask)") for x in model)


def test_bench_loader_prints_and_saves_its_table(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        cli(
            [
                "bench-loader",
                "--synthetic",
                "8",
                "--batches",
                "2",
                "--max-workers",
                "1",
                "--batch-size",
                "4",
                "--input-height",
                "64",
                "--input-width",
                "48",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert set(r["workers"]) == {"0", "1"} and all(v > 0 for v in r["workers"].values())
    assert r["best_workers"] in (0, 1)
    assert set(r["order"]) == {"resize_first", "augment_first"} and all(v > 0 for v in r["order"].values())
    text = capsys.readouterr().out
    assert "num_workers=1" in text and "best num_workers" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["bench-loader", "--batches", "0"], "--batches: expected a whole number >= 1, got 0"),
        (["bench-loader", "--max-workers", "-1"], "--max-workers: expected a whole number >= 0, got -1"),
        (["bench-loader", "--synthetic", "-3"], "--synthetic: expected a whole number >= 0, got -3"),
        (["bench-loader", "--batches", "two"], "--batches: expected a whole number, got 'two'"),
        (["bench-engines", "--repeats", "0"], "--repeats: expected a whole number >= 1, got 0"),
    ],
)
def test_bench_counts_must_be_whole_numbers_in_range(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli(args)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_bench_loader_with_a_named_cache_that_does_not_exist_says_so(tmp_path):
    from engines.errors import UserError

    with pytest.raises(UserError, match="has no manifest"):
        cli(["bench-loader", "--cache", str(tmp_path / "nothing")])


def test_predict_refuses_a_bad_out_before_inferring(tmp_path, monkeypatch):
    import train.evaluation.predict
    from engines.errors import UserError

    def no_inference(*args, **kwargs):
        raise AssertionError("inference ran before --out was checked")

    monkeypatch.setattr(train.evaluation.predict, "predict", no_inference)
    (tmp_path / "file").write_text("x")
    cases = (
        ("--out", tmp_path, "is a folder"),
        ("--out", tmp_path / "file" / "s.csv", "not a folder"),
        ("--probs", tmp_path, "is a folder"),
    )
    for flag, value, message in cases:
        args = ["predict", "--checkpoint", "m.onnx", "--eval", str(tmp_path), flag, str(value)]
        with pytest.raises(UserError, match=f"^{flag} .*{message}"):
            cli(args + (["--out", str(tmp_path / "s.csv")] if flag != "--out" else []))


@pytest.mark.parametrize(
    "command, flag, work",
    [
        ("fit", "--out", "train.fitting.session.fit"),
        ("kfold", "--out", "train.fitting.kfold.run_folds"),
        ("evaluate --checkpoint m.pt", "--report", "train.evaluation.scoring.evaluate"),
        ("prepare", "--out", "train.data.prepare.prepare"),
        ("eda", "--report", "train.evaluation.eda.collect"),
    ],
)
def test_an_output_folder_that_is_a_file_is_refused_before_any_work(
    command, flag, work, tmp_path, monkeypatch
):
    import importlib

    from engines.errors import UserError

    module, name = work.rsplit(".", 1)

    def no_work(*args, **kwargs):
        raise AssertionError(f"{name} ran before {flag} was checked")

    monkeypatch.setattr(importlib.import_module(module), name, no_work)
    (tmp_path / "afile").write_text("x")
    argv = command.split() + ["--data", str(tmp_path / "data")]
    with pytest.raises(UserError, match=f"^{flag} {tmp_path / 'afile'} is a file: give a folder$"):
        cli(argv + [flag, str(tmp_path / "afile")])
    with pytest.raises(UserError, match=f"^{flag} .*: {tmp_path / 'afile'} is not a folder$"):
        cli(argv + [flag, str(tmp_path / "afile" / "sub")])


def test_submission_keeps_info_csv_columns_when_a_row_has_an_extra_field(tmp_path):
    """csv.DictReader files extra fields under the key None; they are dropped, not a crash after inference."""
    import numpy as np

    from train.data.layout import scan_eval
    from train.evaluation.predict import submission_csv

    (tmp_path / "images").mkdir()
    (tmp_path / "info.csv").write_text("ImageID,ans\na.jpg,0\nb.jpg,0,surplus\n")
    probs = np.zeros((2, 18), np.float32)
    probs[0, 5] = probs[1, 17] = 1
    assert submission_csv(scan_eval(tmp_path), probs) == "ImageID,ans\na.jpg,5\nb.jpg,17\n"


def test_every_training_command_is_offered():
    r = subprocess.run(
        [sys.executable, "-m", "train", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0
    for name in ("prepare", "eda", "fit", "kfold", "evaluate", "predict", "bench-loader", "tune"):
        assert name in r.stdout


@pytest.mark.parametrize(
    "command, options, rest",
    [
        ("fit", "train.commands.fit:FitOptions", []),
        ("kfold", "train.commands.kfold:KfoldOptions", []),
        ("tune", "train.commands.tune:TuneOptions", []),
        ("evaluate", "train.commands.evaluate:EvaluateOptions", ["--checkpoint", "m.pt"]),
        ("calibrate", "train.commands.calibrate:CalibrateOptions", ["--checkpoint", "m.pt"]),
    ],
)
def test_a_command_types_whether_data_was_given_once_at_the_door(command, options, rest, tmp_path):
    """--data given or not is a field of the command's frozen options value (what the cache refresh below
    reads), not something re-read from the parsed command line further down."""
    import dataclasses
    import importlib

    from train.cli import build_parser

    module, _, name = options.partition(":")
    cls = getattr(importlib.import_module(module), name)
    parser = build_parser()
    without = cls.from_args(parser.parse_args([command, *rest]))
    given = cls.from_args(parser.parse_args([command, *rest, "--data", str(tmp_path)]))
    assert without.data_given is False and given.data_given is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        given.data_given = False


def test_fit_options_carry_resume_and_the_overrides_typed_now(tmp_path):
    from train.cli import build_parser
    from train.commands.fit import FitOptions

    parser = build_parser()
    plain = FitOptions.from_args(parser.parse_args(["fit", "--epochs", "3"]))
    assert not plain.resume and plain.out is None and dict(plain.overrides) == {"train.epochs": 3}
    resumed = FitOptions.from_args(
        parser.parse_args(["fit", "--resume", str(tmp_path / "last.pt"), "--config", "x.toml"])
    )
    assert resumed.resume and resumed.resume_from == tmp_path / "last.pt" and resumed.config_given
    alone = FitOptions.from_args(parser.parse_args(["fit", "--resume", "--out", str(tmp_path)]))
    assert alone.resume and alone.resume_from is None and alone.out == tmp_path
