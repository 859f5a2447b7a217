"""`mask-train tune` on the small competition-layout set: every trial a real fit process (mobilenet_v2, 64x48,
1-3 epochs). A study finishes and its best.toml trains; a killed study resumes with its finished trials; a
weak trial is pruned; bad [tune] entries and torchrun are refused in one line before any trial."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from engines.config import ConfigError, with_overrides
from engines.errors import UserError
from tests.conftest import REPO, one_torch_thread
from train.cli import _main as cli
from train.config import load_config
from train.fitting.session import fit
from train.tuning.space import parse_space
from train.tuning.study import TuneSetup, open_study, storage_url
from train.tuning.view import run_study

CONFIG = """
[model]
input_height = 64
input_width = 48
[data]
data_dir = "{data}"
cache_dir = "{cache}"
batch_size = 16
num_workers = 0
val_fraction = 0.25
[train]
epochs = 1
lr = 0.001
seed = 0
threads = 1
[tune]
out_dir = "{out}"
startup_trials = 1
warmup_epochs = 0
pruner = "{pruner}"
space = [{space}]
"""
SPACE = '"train.lr = log 3e-4 3e-3", "augment.cutmix = float 0.0 0.5", "model.head = choice single multi"'


def write_config(root, prepared, pruner="median", space=SPACE):
    data, cache, _ = prepared
    if not (root / "cache").exists():
        shutil.copytree(cache, root / "cache")
    path = root / "config.toml"
    text = CONFIG.format(data=data, cache=root / "cache", out=root / "tune", pruner=pruner, space=space)
    path.write_text(text)
    return path


def load(root):
    return optuna.load_study(study_name="mask-train", storage=f"sqlite:///{root / 'tune' / 'study.db'}")


@pytest.fixture(scope="module")
def study3(prepared, tmp_path_factory):
    root = tmp_path_factory.mktemp("tune3")
    path = write_config(root, prepared)
    assert cli(["tune", "--config", str(path), "--trials", "3"]) == 0
    return root, path


def test_a_three_trial_study_writes_its_database_and_reports(study3):
    root, _ = study3
    out = root / "tune"
    trials = load(root).get_trials()
    assert len(trials) == 3 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    for t in trials:  # each trial is a fit run of its own in its own folder
        folder = out / "trials" / f"{t.number:04d}"
        assert (folder / "fit.log").is_file() and (folder / "metrics.jsonl").is_file()
        assert t.user_attrs["folder"] == str(folder)
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == [0, 1, 2]
    assert {"train.lr", "augment.cutmix", "model.head", "state", "value", "error"} <= set(rows[0])
    for png in ("history.png", "importance.png"):
        img = cv2.imread(str(out / png))
        assert img is not None and img.shape[1] >= 600


def test_best_toml_loads_unchanged_and_trains(study3, tmp_path):
    root, _ = study3
    study = load(root)
    best = load_config(root / "tune" / "best.toml")
    for name, value in study.best_trial.params.items():
        section, _, key = name.partition(".")
        assert getattr(getattr(best, section), key) == value
    assert best.model.input_height == 64 and best.train.epochs == 1
    with one_torch_thread():
        result = fit(best, run_dir=tmp_path / "from-best", show=False)
    assert result.history and (tmp_path / "from-best" / "best.pt").is_file()


def test_a_killed_study_resumes_with_its_finished_trials_kept(prepared, tmp_path):
    path = write_config(tmp_path, prepared, pruner="none")
    cmd = [sys.executable, "-m", "train", "tune", "--config", str(path), "--trials", "3"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    second = tmp_path / "tune" / "trials" / "0001" / "trial.toml"
    deadline = time.monotonic() + 240
    while not second.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # tune and the fit of trial 1: no chance to clean up
    proc.wait()
    assert second.exists(), "trial 1 never started"
    before = load(tmp_path).get_trials()
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.RUNNING]
    assert cli(["tune", "--config", str(path), "--trials", "3", "--resume"]) == 0
    after = load(tmp_path).get_trials()
    assert after[0].state == TrialState.COMPLETE and after[0].value == before[0].value  # kept, not rerun
    assert after[1].state == TrialState.FAIL and after[1].user_attrs["error"] == "interrupted"
    assert after[2].params == before[1].params  # the interrupted trial runs again
    assert [t.state for t in after[2:]] == [TrialState.COMPLETE] * 2  # 3 counted trials in all


def test_a_weak_trial_is_pruned_after_one_epoch(prepared, tmp_path):
    """The study holds a strong trial (macro F1 0.9 from epoch 1 on, as a study resumed from a bigger
    machine would); the next trial cannot learn at all (lr 0, frozen backbone: its weights never move) and
    no model reaches 0.9 on this tiny set, so the median pruner must stop its fit after epoch 1 of 5."""
    space = '"train.lr = choice 0.001 0.0", "model.freeze_backbone = choice false true"'
    path = write_config(tmp_path, prepared, space=space)
    cfg = with_overrides(load_config(path), {"train.epochs": 5, "tune.trials": 2})
    out = cfg.resolve(cfg.tune.out_dir)
    out.mkdir(parents=True)
    setup = TuneSetup(cfg, parse_space(cfg), out, storage_url(cfg, out), cfg.tune.study)
    study = open_study(setup, resume=False)
    dists = {
        "train.lr": CategoricalDistribution([0.001, 0.0]),
        "model.freeze_backbone": CategoricalDistribution([False, True]),
    }
    strong = {"train.lr": 0.001, "model.freeze_backbone": False}
    study.add_trial(create_trial(params=strong, distributions=dists, value=0.9, intermediate_values={1: 0.9}))
    study.enqueue_trial({"train.lr": 0.0, "model.freeze_backbone": True})
    run_study(setup, study)
    weak = study.get_trials()[1]
    assert weak.state == TrialState.PRUNED and list(weak.intermediate_values) == [1]
    assert weak.intermediate_values[1] < 0.9
    # its fit was stopped, not left to finish (a frozen epoch is so short that the next one may end before
    # the first is read)
    rows = (out / "trials" / "0001" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) < 5
    assert "interrupted" in (out / "trials" / "0001" / "fit.log").read_text()


def test_a_failed_trial_is_recorded_with_its_reason_and_the_study_goes_on(prepared, tmp_path):
    path = write_config(
        tmp_path, prepared, pruner="none", space='"model.arch = choice not_a_net mobilenet_v2"'
    )
    cfg = with_overrides(load_config(path), {"tune.trials": 2})
    out = cfg.resolve(cfg.tune.out_dir)
    out.mkdir(parents=True)
    setup = TuneSetup(cfg, parse_space(cfg), out, storage_url(cfg, out), cfg.tune.study)
    study = open_study(setup, resume=False)
    study.enqueue_trial({"model.arch": "not_a_net"})
    study.enqueue_trial({"model.arch": "mobilenet_v2"})
    run_study(setup, study)
    failed, done = study.get_trials()
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["error"].startswith("model.arch 'not_a_net' is not a torchvision")
    assert done.state == TrialState.COMPLETE and done.value is not None


def test_a_diverged_loss_stops_fit_in_one_line(prepared, tmp_path, monkeypatch):
    """A NaN loss (what a trial's too-high learning rate gives) is a UserError naming the epoch, which a trial
    records as its reason."""
    from train.fitting import trainer as trainer_module

    path = write_config(tmp_path, prepared)
    real = trainer_module.build_loss

    def nan_loss(cfg, head):
        loss = real(cfg, head)
        return lambda *a: loss(*a) * float("nan")

    monkeypatch.setattr(trainer_module, "build_loss", nan_loss)
    with one_torch_thread(), pytest.raises(UserError, match="training diverged: .* nan in epoch 1"):
        fit(load_config(path), run_dir=tmp_path / "run", show=False)


@pytest.mark.parametrize(
    "entry, message",
    [
        ('"train.lrr = log 1e-5 1e-3"', "unknown parameter 'train.lrr'"),
        ('"train.lr = log 1e-3 1e-5"', "low 0.001 > high 1e-05"),
        ('"train.lr = log 0 1e-3"', "a log range must be above 0"),
        ('"train.weight_decay = log -1e-3 1e-3"', "a log range must be above 0"),
        ('"train.lr = uniform 0 1"', "KIND one of float, log, int, choice"),
        ('"train.optimizer = choice adamw adam"', "train.optimizer = 'adam' is refused"),
        ('"train.label_smoothing = float 0.0 0.9"', "out of range"),
        ('"train.epochs = int 1 5"', "cannot be searched"),
        ('"augment.cutmix = float 0 0.8", "augment.mixup = float 0 0.5"', "add up to more than 1"),
    ],
)
def test_bad_tune_entries_are_one_line_before_any_trial(prepared, tmp_path, entry, message):
    path = write_config(tmp_path, prepared, space=entry)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("+", r"\+")) as info:
        cli(["tune", "--config", str(path), "--trials", "1"])
    assert "\n" not in str(info.value) and "[tune] space" in str(info.value)
    assert not (tmp_path / "tune").exists()  # nothing ran, nothing was written


def test_tune_refuses_under_torchrun_in_one_line(prepared, tmp_path, monkeypatch):
    path = write_config(tmp_path, prepared)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="tune cannot run under torchrun"):
        cli(["tune", "--config", str(path), "--trials", "1"])
    assert not (tmp_path / "tune").exists()


def test_a_new_study_is_not_mixed_into_an_old_one_and_resume_needs_one(study3, tmp_path):
    _, path = study3
    with pytest.raises(UserError, match="already holds study 'mask-train': pass --resume"):
        cli(["tune", "--config", str(path), "--trials", "3"])
    with pytest.raises(UserError, match="holds no study 'other'"):
        cli(["tune", "--config", str(path), "--study", "other", "--resume"])
    # a finished study resumed with no more trials to run: a no-op that keeps its trials
    assert cli(["tune", "--config", str(path), "--trials", "3", "--resume"]) == 0
    assert len(load(study3[0]).get_trials()) == 3
