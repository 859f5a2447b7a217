"""fit / resume / Ctrl-C / evaluate / predict on the small competition-layout set (mobilenet_v2, 64x48)."""

import csv
import json
import math
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from engines.backends.torch_backend import load_checkpoint
from engines.config import CropConfig, with_overrides
from engines.errors import UserError
from engines.formats import load_engine
from tests.conftest import REPO, one_torch_thread
from tests.helpers import RUN_FILES
from train.cli import _main as cli
from train.config import load_config
from train.data.cache import Cache, read_crop
from train.evaluation.scoring import evaluate
from train.fitting import trainer as trainer_module
from train.fitting.session import fit
from train.runfiles import config_toml

CONFIG = """
[model]
arch = "mobilenet_v2"
pretrained = true
input_height = 64
input_width = 48
[data]
data_dir = "{data}"
cache_dir = "{cache}"
batch_size = 16
num_workers = 0
val_fraction = 0.25
[train]
epochs = 2
lr = 0.001
seed = 0
threads = 1
out_dir = "{runs}"
"""


@pytest.fixture(scope="module")
def setup(prepared, tmp_path_factory):
    """(config, its file) on a private copy of the session's cache, one torch thread (a busy 2-core
    machine)."""
    data, cache, _ = prepared
    root = tmp_path_factory.mktemp("fit")
    shutil.copytree(cache, root / "cache")
    path = root / "config.toml"
    path.write_text(CONFIG.format(data=data, cache=root / "cache", runs=root / "runs"))
    with one_torch_thread():
        yield load_config(path), path


@pytest.fixture(scope="module")
def run(setup):
    cfg, _ = setup
    result = fit(cfg, run_dir=cfg.resolve(cfg.train.out_dir) / "main", show=False)
    return cfg, result.run_dir, result


def test_fit_lowers_the_loss_and_writes_the_run_folder(run):
    cfg, run_dir, result = run
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 2 and losses[1] < losses[0]
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no temp files left
    saved = load_config(run_dir / "config.toml")  # the resolved config, re-readable
    assert config_toml(saved) == config_toml(cfg) and saved.train == cfg.train and saved.model == cfg.model
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(r["seconds"] > 0 and r["images_per_s"] > 0 and 0 <= r["val_f1"] <= 1 for r in rows)
    png = cv2.imread(str(run_dir / "confusion.png"))
    assert png is not None and png.shape[0] > 18 * 30
    val_people = set(json.loads((run_dir / "split.json").read_text())["val_people"])
    samples = Cache(cfg.resolve(cfg.data.cache_dir)).samples()
    assert val_people and val_people < {s.person for s in samples}
    with np.load(run_dir / "val_predictions.npz") as z:
        keys = set(z["keys"].tolist())
        assert z["probs"].shape == (len(keys), 18)
    assert keys == {s.key for s in samples if s.person in val_people}  # whole people only


def test_best_pt_is_a_model_file_for_every_backend(run, tmp_path):
    cfg, run_dir, result = run
    meta, ckpt = load_checkpoint(run_dir / "best.pt")  # weights_only=True
    assert meta.arch == "mobilenet_v2" and meta.input_size == (64, 48) and meta.head == "single"
    assert meta.crop == CropConfig() and meta.age_old_threshold == cfg.data.age_old_threshold
    assert meta.extra["epoch"] == result.best["epoch"] and "val_f1" in meta.extra
    assert meta.extra["ddp"] is None  # one process, no DDP wrapper
    assert not any(k.startswith("module.") for k in ckpt["model"])
    assert {"optimizer", "scheduler", "epoch", "config", "metrics"} <= set(ckpt)
    engine = load_engine(run_dir / "best.pt", device="cpu")
    crops = [read_crop(s.crop) for s in Cache(cfg.resolve(cfg.data.cache_dir)).samples()[:5]]
    probs = engine.classify(crops)
    assert probs.shape == (5, 18) and np.allclose(probs.sum(1), 1, atol=1e-5)
    from train.export.onnx import export_onnx

    export_onnx(run_dir / "best.pt", tmp_path / "m.onnx")
    onnx_probs = load_engine(tmp_path / "m.onnx", device="cpu").classify(crops)
    np.testing.assert_allclose(onnx_probs, probs, atol=1e-4)


def test_resume_continues_from_the_saved_epoch(run, tmp_path):
    cfg, run_dir, _ = run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    before = (copy / "metrics.jsonl").read_text().splitlines()
    assert cli(["fit", "--resume", "--out", str(copy), "--epochs", "3"]) == 0
    after = (copy / "metrics.jsonl").read_text().splitlines()
    assert after[:2] == before and json.loads(after[2])["epoch"] == 3
    # the cosine schedule stretched to the new length: epoch 3 of 3 runs at its closed-form rate, not the
    # floor
    base, floor = cfg.train.lr, cfg.train.lr * 0.01
    assert json.loads(after[2])["lr"] == pytest.approx(
        floor + (base - floor) * (1 + math.cos(math.pi * 2 / 3)) / 2
    )
    state = load_checkpoint(copy / "last.pt")[1]
    assert state["epoch"] == 3 and len(state["metrics"]) == 3
    assert state["config"]["model"]["input_height"] == 64  # the run's own config, not config.toml's
    assert cli(["fit", "--resume", str(copy / "last.pt")]) == 0  # nothing left to do: a no-op
    assert len((copy / "metrics.jsonl").read_text().splitlines()) == 3


def test_resume_reads_relative_flags_against_the_working_directory(run, tmp_path, monkeypatch):
    """The run's saved config.toml is read back, but a path typed now is relative to where it is typed."""
    from train.cli import build_parser
    from train.commands.fit import FitOptions
    from train.config import config_from_args
    from train.fitting.session import Resume, resume_target

    _, run_dir, _ = run
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(
        ["fit", "--resume", "--out", str(run_dir), "--data", "mydata", "--cache", "sub/cache"]
    )
    opts = FitOptions.from_args(args)
    assert opts.resume and opts.resume_from is None and opts.data_given and not opts.config_given
    resume = Resume(opts.resume_from, opts.out, opts.config_given, opts.overrides)
    cfg, where, state = resume_target(resume, config_from_args(args))
    assert where == run_dir and state["epoch"] == 2
    assert cfg.resolve(cfg.data.data_dir) == tmp_path / "mydata"
    assert cfg.resolve(cfg.data.cache_dir) == tmp_path / "sub" / "cache"
    assert cfg.model.input_height == 64  # the rest: the run's own config


def test_resume_refuses_another_optimizer_and_a_state_that_does_not_fit(run, tmp_path):
    """One line, never a KeyError from inside torch (the optimizer's state is per optimizer); kfold's path
    too."""
    from train.fitting.checkpoint import load_training_state

    cfg, run_dir, _ = run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    metrics = (copy / "metrics.jsonl").read_text()
    with pytest.raises(UserError, match=r"last.pt: .*train.optimizer = 'adamw', not 'sgd'"):
        cli(["fit", "--resume", "--out", str(copy), "--epochs", "3", "--optimizer", "sgd"])
    sgd = with_overrides(cfg, {"train.optimizer": "sgd"})
    (tmp_path / "sgd.toml").write_text(config_toml(sgd))
    with pytest.raises(UserError, match="train.optimizer = 'adamw', not 'sgd'"):
        cli(["fit", "--resume", "--out", str(copy), "--epochs", "3", "--config", str(tmp_path / "sgd.toml")])
    state = load_training_state(copy / "last.pt")
    with pytest.raises(UserError, match="train.optimizer = 'adamw', not 'sgd'"):
        fit(with_overrides(sgd, {"train.epochs": 3}), run_dir=copy, state=state, show=False)
    groups = state["optimizer"]["param_groups"]
    damaged = {**state, "optimizer": {**state["optimizer"], "param_groups": groups[:1]}}
    with pytest.raises(UserError, match=r"last.pt: cannot resume .*optimizer") as info:
        fit(with_overrides(cfg, {"train.epochs": 3}), run_dir=copy, state=damaged, show=False)
    assert "\n" not in str(info.value)
    foreign = {
        **state,
        "optimizer": {
            **state["optimizer"],
            "param_groups": [{k: v for k, v in g.items() if k != "betas"} for g in groups],
        },
    }
    with pytest.raises(UserError, match=r"cannot resume .*optimizer.*betas"):
        fit(with_overrides(cfg, {"train.epochs": 3}), run_dir=copy, state=foreign, show=False)
    assert (copy / "metrics.jsonl").read_text() == metrics  # nothing trained, nothing written


def make_trainer(cfg, run_dir, val_people, dist=None):
    """A Trainer on the module's cache, built (data, model, optimizer) but not run."""
    from train.fitting.distributed import Dist
    from train.fitting.trainer import Trainer

    cache = Cache(cfg.resolve(cfg.data.cache_dir))
    return Trainer(cfg, cache, cache.samples(), set(val_people), run_dir, dist or Dist(), show=False)


def test_restore_loads_the_weights_and_optimizer_state_of_last_pt(run, tmp_path):
    from train.fitting.checkpoint import load_training_state

    cfg, run_dir, _ = run
    state = load_training_state(run_dir / "last.pt")
    trainer = make_trainer(cfg, tmp_path / "run", state["split"]["val_people"])
    trainer.restore(state)
    weights = trainer.model.state_dict()
    assert weights.keys() == state["model"].keys()
    assert all(torch.equal(weights[k], v) for k, v in state["model"].items())
    saved, restored = state["optimizer"], trainer.optimizer.state_dict()
    assert saved["state"] and restored["state"].keys() == saved["state"].keys()  # Adam moments and steps
    for i, moments in saved["state"].items():
        assert moments.keys() == restored["state"][i].keys()
        assert all(torch.equal(restored["state"][i][k], v) for k, v in moments.items())
    for mine, theirs in zip(restored["param_groups"], saved["param_groups"]):
        assert {k: v for k, v in mine.items() if k != "lr"} == {k: v for k, v in theirs.items() if k != "lr"}
    assert trainer.scheduler.last_epoch == 2 and trainer.start_epoch == 2 and trainer.best == state["best"]


def test_validation_scores_the_competition_labels_whatever_the_training_threshold(setup, tmp_path):
    """Trained with people of 58+ counted as >= 60, validated on the competition's labels (>= 60 only)."""
    from engines.labels import decode

    cfg, _ = setup
    cfg = with_overrides(cfg, {"data.age_old_threshold": 58, "train.epochs": 1, "augment.enabled": False})
    people = {"000011": 1, "000003": 2, "000008": 0}  # 59 -> 30-59 in validation; 65; 28
    trainer = make_trainer(cfg, tmp_path / "unused", people)
    samples = Cache(cfg.resolve(cfg.data.cache_dir)).samples()
    assert {s.age_years for s in samples if s.person == "000011"} == {59}
    trained = [s for s in samples if s.person not in people]
    fit(cfg, run_dir=tmp_path / "run", val_people=set(people), show=False)
    with np.load(tmp_path / "run" / "val_predictions.npz") as z:
        keys, targets = z["keys"].tolist(), z["targets"]
    assert {k.split("_")[0] for k in keys} == set(people)
    for key, target in zip(keys, targets):
        assert decode(int(target)).age == people[key.split("_")[0]], key
    assert trainer.train_ds.targets == [s.cls(58) for s in trained]  # training itself uses 58
    assert load_checkpoint(tmp_path / "run" / "best.pt")[0].age_old_threshold == 58


def test_a_finished_run_is_not_overwritten(run):
    cfg, run_dir, _ = run
    with pytest.raises(UserError, match="already holds a run"):
        fit(cfg, run_dir=run_dir, show=False)


def test_ctrl_c_leaves_a_usable_last_pt(setup, tmp_path, monkeypatch):
    cfg, _ = setup
    real, calls = trainer_module.train_one_epoch, []

    def interrupted(*args, **kw):
        calls.append(1)
        if len(calls) in (1, 3):
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(trainer_module, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):  # in epoch 1: nothing saved yet
        fit(cfg, run_dir=tmp_path / "run", show=False)
    meta, state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 0 and meta.extra["interrupted"] is True and state["metrics"] == []
    assert load_engine(tmp_path / "run" / "last.pt", device="cpu").meta.arch == "mobilenet_v2"
    state["source"] = str(tmp_path / "run" / "last.pt")
    with pytest.raises(KeyboardInterrupt):  # resumed, then in epoch 2
        fit(cfg, run_dir=tmp_path / "run", state=state, show=False)
    meta, state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 1 and "interrupted" not in meta.extra  # epoch 1's own last.pt, kept
    monkeypatch.setattr(trainer_module, "train_one_epoch", real)
    result = fit(cfg, run_dir=tmp_path / "run", state=state, show=False)  # and it resumes
    assert [h["epoch"] for h in result.history] == [1, 2]


def fake_epochs(cfg, run_dir, monkeypatch, losses):
    """A Trainer whose epochs take no time (no optimizer steps): the losses given, then 1.0."""
    trainer = make_trainer(cfg, run_dir, set())
    it = iter(losses)
    monkeypatch.setattr(trainer, "_train_epoch", lambda epoch: (next(it, 1.0), 0.1, 10))
    return trainer


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
def test_ctrl_c_after_an_epochs_last_pt_keeps_it_and_the_schedule_resumes_in_step(
    setup, tmp_path, monkeypatch
):
    """Ctrl-C after last.pt of epoch 2 was written (here: in the console line) must not turn it into
    'epoch 1 done' with epoch 2's schedule: the resumed run would redo epoch 2 and decay the rate early."""
    from train.fitting.checkpoint import load_training_state

    cfg, _ = setup
    cfg = with_overrides(
        cfg,
        {
            "data.val_fraction": 0.0,
            "train.scheduler": "step",
            "train.step_size": 1,
            "train.gamma": 0.5,
            "train.epochs": 3,
        },
    )
    trainer = fake_epochs(cfg, tmp_path / "run", monkeypatch, [3.0, 2.0])
    real = trainer_module.epoch_line

    def line(row, *args):
        if row["epoch"] == 2:
            raise KeyboardInterrupt
        return real(row, *args)

    monkeypatch.setattr(trainer_module, "epoch_line", line)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    state = load_training_state(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 2 and [h["epoch"] for h in state["metrics"]] == [1, 2]
    assert state["scheduler"]["last_epoch"] == 2
    monkeypatch.setattr(trainer_module, "epoch_line", real)
    resumed = fake_epochs(cfg, tmp_path / "run", monkeypatch, [])
    resumed.restore(state)
    result = resumed.fit()
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert [h["lr"] for h in result.history] == pytest.approx([1e-3, 5e-4, 2.5e-4])  # one decay per epoch


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
def test_ctrl_c_after_the_scheduler_step_of_a_first_epoch_saves_the_start_schedule(
    setup, tmp_path, monkeypatch
):
    """Before any last.pt exists, a Ctrl-C saves 'start epoch done': its schedule and metrics too, even when
    the epoch's scheduler step and metrics row already happened."""
    from train.fitting.checkpoint import load_training_state

    cfg, _ = setup
    cfg = with_overrides(
        cfg,
        {
            "data.val_fraction": 0.0,
            "train.scheduler": "step",
            "train.step_size": 1,
            "train.gamma": 0.5,
            "train.epochs": 2,
        },
    )
    trainer = fake_epochs(cfg, tmp_path / "run", monkeypatch, [3.0])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "_write_best", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    state = load_training_state(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 0 and state["metrics"] == [] and state["scheduler"]["last_epoch"] == 0
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == pytest.approx([1e-3] * 2)
    resumed = fake_epochs(cfg, tmp_path / "run", monkeypatch, [])
    resumed.restore(state)
    assert [h["lr"] for h in resumed.fit().history] == pytest.approx([1e-3, 5e-4])


def test_ctrl_c_while_writing_best_pt_records_only_a_best_that_was_written(setup, tmp_path, monkeypatch):
    """last.pt (written on Ctrl-C) must not name as best an epoch whose best.pt was never written."""
    cfg, _ = setup
    cfg = with_overrides(
        cfg, {"data.val_fraction": 0.0, "train.scheduler": "none"}
    )  # no optimizer steps here
    trainer = make_trainer(cfg, tmp_path / "run", set())
    losses = iter([2.0, 1.0])  # epoch 2 improves on epoch 1
    monkeypatch.setattr(trainer, "_train_epoch", lambda epoch: (next(losses), 0.1, 10))
    real = trainer._write_best

    def interrupted(epoch, *args, **kwargs):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(epoch, *args, **kwargs)

    monkeypatch.setattr(trainer, "_write_best", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    best_meta, best_pt = load_checkpoint(tmp_path / "run" / "best.pt")
    last = load_checkpoint(tmp_path / "run" / "last.pt")[1]
    assert best_meta.extra["epoch"] == 1 and best_pt["best"]["epoch"] == 1
    assert last["best"]["epoch"] == 1 and last["best"]["score"] == -2.0 and last["epoch"] == 1


def test_ddp_ranks_draw_their_own_augmentation_and_dropout_streams(setup, tmp_path, monkeypatch):
    """Each rank sees other images (the sampler splits one permutation that all ranks share) and must also
    draw its own augmentations and dropout masks; one process (rank 0) seeds as it always did."""
    from train.fitting.loop import EpochStats

    cfg, _ = setup
    trainer = make_trainer(cfg, tmp_path / "run", set())
    augment_seeds, seen = [], []
    monkeypatch.setattr(trainer.train_ds.transform, "set_seed", augment_seeds.append)

    def one_epoch(*args, **kwargs):
        seen.append((torch.initial_seed(), augment_seeds[-1]))  # dropout's stream, augmentation's stream
        return EpochStats(1.0, 1, 0.1)

    monkeypatch.setattr(trainer_module, "train_one_epoch", one_epoch)

    class FakeDist:
        world, main = 2, False

        def __init__(self, rank):
            self.rank = rank

        def sum(self, values):
            return values

    for epoch, rank in ((3, 0), (3, 1), (4, 0), (4, 1)):
        trainer.dist = FakeDist(rank)
        trainer._train_epoch(epoch)
    (t0, a0), (t1, a1), (t2, a2), (t3, a3) = seen
    assert t0 == a0 == cfg.train.seed + 3 and t2 == a2 == cfg.train.seed + 4  # rank 0: unchanged
    assert len({t0, t1, t2, t3}) == 4 and len({a0, a1, a2, a3}) == 4  # per rank and per epoch


def test_other_options_train_too(setup, tmp_path):
    """Multi-head, focal loss, frozen backbone, SGD + StepLR, accumulation, weighted sampler, age
    threshold."""
    cfg, _ = setup
    cfg = with_overrides(
        cfg,
        {
            "model.head": "multi",
            "model.freeze_backbone": True,
            "train.loss": "focal",
            "train.optimizer": "sgd",
            "train.scheduler": "step",
            "train.accumulate": 2,
            "train.epochs": 1,
            "data.weighted_sampler": True,
            "data.age_old_threshold": 58,
            "augment.enabled": False,
            "data.val_fraction": 0.0,
        },
    )
    result = fit(cfg, run_dir=tmp_path / "multi", show=False)
    assert np.isfinite(result.history[0]["train_loss"]) and "val_f1" not in result.history[0]
    assert result.best["metric"] == "-train_loss" and result.best["epoch"] == 1
    assert result.best["score"] == pytest.approx(-result.history[0]["train_loss"], abs=1e-4)
    assert not (tmp_path / "multi" / "confusion.png").exists()  # no validation set, no confusion matrix
    engine = load_engine(tmp_path / "multi" / "best.pt", device="cpu")
    assert engine.meta.head == "multi" and engine.meta.age_old_threshold == 58
    probs = engine.infer(np.random.default_rng(0).normal(size=(3, 3, 64, 48)).astype(np.float32))
    assert probs.shape == (3, 18) and np.allclose(probs.sum(1), 1, atol=1e-5)
    trained = load_checkpoint(tmp_path / "multi" / "best.pt")[1]["model"]
    from engines.models import create_model

    imagenet = create_model("mobilenet_v2", "multi", pretrained=True).state_dict()
    for key in ("features.0.0.weight", "features.5.conv.1.0.weight", "features.5.conv.1.1.running_mean"):
        assert torch.equal(trained[key], imagenet[key]), key  # the backbone and its statistics frozen


def test_evaluate_tta_and_ensemble(run):
    cfg, run_dir, _ = run
    best, last = str(run_dir / "best.pt"), str(run_dir / "last.pt")
    plain = evaluate(cfg, [best], show=False)
    val_people = set(json.loads((run_dir / "split.json").read_text())["val_people"])
    assert plain["n"] == len(plain["keys"]) and {k.split("_")[0] for k in plain["keys"]} == val_people
    assert plain["probs"].shape == (plain["n"], 18)
    assert plain["acc"] == pytest.approx(np.mean(plain["probs"].argmax(1) == plain["targets"]))
    # evaluate reproduces fit's validation of the best epoch: same crops, same preprocessing, same metric
    val = json.loads((run_dir / "val_metrics.json").read_text())
    assert plain["f1"] == pytest.approx(val["f1"], abs=1e-6) and plain["acc"] == pytest.approx(val["acc"])
    with np.load(run_dir / "val_predictions.npz") as z:
        order = {k: i for i, k in enumerate(z["keys"].tolist())}
        np.testing.assert_allclose(plain["probs"], z["probs"][[order[k] for k in plain["keys"]]], atol=1e-4)
    tta = evaluate(cfg, [best], tta=True, show=False)
    engine = load_engine(best, device="cpu")
    samples = {s.key: s for s in Cache(cfg.resolve(cfg.data.cache_dir)).samples()}
    crops = [read_crop(samples[k].crop) for k in tta["keys"]]
    flipped = [c[:, ::-1].copy() for c in crops]
    expected = (engine.classify(crops) + engine.classify(flipped)) / 2
    np.testing.assert_allclose(tta["probs"], expected, atol=1e-5)
    assert not np.allclose(tta["probs"], plain["probs"], atol=1e-4)
    ens = evaluate(cfg, [best, last], split="val", show=False)
    single_last = evaluate(cfg, [last], split="val", show=False)
    np.testing.assert_allclose(ens["probs"], (plain["probs"] + single_last["probs"]) / 2, atol=1e-5)
    everything = evaluate(cfg, [best], split="all", show=False)
    assert everything["n"] == len(samples)


def test_an_ensemble_is_scored_only_on_people_every_model_held_out(run, tmp_path):
    """An ensemble of fold models: each other model trained on the first one's validation people, so only
    the people that every model held out are a fair validation set; none in common is an error."""
    from train.evaluation.scoring import select

    cfg, run_dir, _ = run
    samples = Cache(cfg.resolve(cfg.data.cache_dir)).samples()
    ckpt = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    held = sorted(ckpt["split"]["val_people"])
    others = sorted({s.person for s in samples} - set(held))
    assert len(held) >= 2 and others

    def variant(name, people):
        torch.save({**ckpt, "split": {"val_people": people} if people is not None else {}}, tmp_path / name)
        return str(tmp_path / name)

    a, b = variant("a.pt", held), variant("b.pt", held[1:] + others[:1])
    result = evaluate(cfg, [a, b], show=False)
    assert {k.split("_")[0] for k in result["keys"]} == set(held[1:])
    assert "2 models" in result["images"]
    disjoint, bare = variant("c.pt", others), variant("d.pt", None)
    for models in ([a, disjoint], [disjoint, a]):
        with pytest.raises(UserError, match="no validation people in common.*--split all"):
            select(samples, "auto", models)
    for split in ("auto", "val"):
        with pytest.raises(UserError, match="d.pt carries no validation split.*--split all"):
            select(samples, split, [a, bare])
    assert len(select(samples, "all", [a, disjoint])[0]) == len(samples)
    assert len(select(samples, "auto", [bare])[0]) == len(samples)  # one model without a split: all images
    assert {s.person for s in select(samples, "auto", [a])[0]} == set(held)


def test_predict_writes_the_submission_in_info_order(run, prepared, tmp_path):
    cfg, run_dir, _ = run
    data = prepared[0]
    shutil.copytree(data / "eval", tmp_path / "eval")
    info = list(csv.DictReader(open(tmp_path / "eval" / "info.csv")))
    (tmp_path / "eval" / "images" / info[2]["ImageID"]).write_bytes(b"not an image")
    config = str(run_dir / "config.toml")
    out, probs_path = tmp_path / "submission.csv", tmp_path / "probs.npy"
    assert (
        cli(
            [
                "predict",
                "--config",
                config,
                "--checkpoint",
                str(run_dir / "best.pt"),
                str(run_dir / "last.pt"),
                "--eval",
                str(tmp_path / "eval"),
                "--tta",
                "--out",
                str(out),
                "--probs",
                str(probs_path),
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(open(out)))
    assert [r["ImageID"] for r in rows] == [r["ImageID"] for r in info]
    assert list(rows[0]) == ["ImageID", "ans"]
    probs = np.load(probs_path)
    assert probs.shape == (len(info), 18) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert [int(r["ans"]) for r in rows] == probs.argmax(1).tolist()
    assert all(0 <= int(r["ans"]) <= 17 for r in rows)
    # the unreadable image still has its row (the mean of the others)
    others = np.delete(probs, 2, axis=0)
    np.testing.assert_allclose(probs[2], others.mean(0), atol=1e-6)


def test_bad_checkpoint_and_missing_info_csv_are_one_line_errors(run, tmp_path):
    cfg, run_dir, _ = run
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage, not a checkpoint")
    with pytest.raises(UserError):
        evaluate(cfg, [str(bad)], show=False)
    with pytest.raises(UserError, match="info.csv is missing"):
        cli(
            [
                "predict",
                "--config",
                str(run_dir / "config.toml"),
                "--checkpoint",
                str(run_dir / "best.pt"),
                "--eval",
                str(tmp_path),
            ]
        )
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "train",
            "evaluate",
            "--config",
            str(run_dir / "config.toml"),
            "--checkpoint",
            str(bad),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "bad.pt" in r.stderr


def test_kfold_runs_every_fold_and_scores_out_of_fold(setup, tmp_path):
    cfg, path = setup
    out = tmp_path / "kfold"
    args = ["kfold", "--config", str(path), "--folds", "2", "--epochs", "1", "--out", str(out)]
    assert cli(args) == 0
    folds = json.loads((out / "folds.json").read_text())["folds"]
    assert len(folds) == 2 and not set(folds[0]) & set(folds[1])
    summary = json.loads((out / "kfold.json").read_text())
    samples = Cache(cfg.resolve(cfg.data.cache_dir)).samples()
    assert summary["oof"]["n"] == len(samples)  # every image scored exactly once
    assert [f["fold"] for f in summary["folds"]] == [0, 1]
    with np.load(out / "oof_predictions.npz") as z:
        assert sorted(z["keys"].tolist()) == sorted(s.key for s in samples)
    for i in range(2):
        assert load_engine(out / f"fold{i}" / "best.pt", device="cpu").meta.arch == "mobilenet_v2"
    stamp = (out / "fold0" / "last.pt").stat().st_mtime_ns
    assert cli(args) == 0  # again: finished folds are kept
    assert (out / "fold0" / "last.pt").stat().st_mtime_ns == stamp
