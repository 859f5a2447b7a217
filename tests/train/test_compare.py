"""`mask-train evaluate --compare OLD NEW`: mask recall per state, mask and flag-or-not accuracy, side by
side, on the same images."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engines.labels import NUM_CLASSES, encode
from tests.conftest import one_torch_thread
from tests.helpers import make_checkpoint
from tests.train.test_fit import CONFIG
from train.cli import _main as cli
from train.config import load_config
from train.evaluation.compare import door_metrics
from train.evaluation.scoring import evaluate


def one_hot(classes: list[int]) -> np.ndarray:
    p = np.full((len(classes), NUM_CLASSES), 0.01, np.float32)
    p[np.arange(len(classes)), classes] = 1.0
    return p / p.sum(axis=1, keepdims=True)


def test_door_metrics_by_hand():
    # truth masks: wear, wear, incorrect, not_wear, not_wear
    # predicted:   wear, incorrect, incorrect, not_wear, wear (gender, age wrong: the mask task ignores them)
    targets = np.array([encode(m, 0, 1) for m in (0, 0, 1, 2, 2)])
    probs = one_hot([encode(m, 1, 2) for m in (0, 1, 1, 2, 0)])
    m = door_metrics(probs, targets, ("incorrect", "not_wear"))
    assert (m["recall_wear"], m["recall_incorrect"], m["recall_not_wear"]) == (0.5, 1.0, 0.5)
    assert m["acc_mask"] == pytest.approx(3 / 5)
    assert m["acc_flag"] == pytest.approx(3 / 5)  # the wear->incorrect and not_wear->wear persons are wrong
    # flagging only not_wear: wear->incorrect is "no flag" on both sides; only not_wear->wear is wrong
    assert door_metrics(probs, targets, ("not_wear",))["acc_flag"] == pytest.approx(4 / 5)
    only_wear = door_metrics(probs[:2], targets[:2], ("incorrect", "not_wear"))
    assert only_wear["recall_incorrect"] is None and only_wear["support_incorrect"] == 0


def test_cli_compare_prints_both_models_on_the_same_images(prepared, tmp_path, capsys):
    data, cache, _ = prepared
    shutil.copytree(cache, tmp_path / "cache")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(data=data, cache=tmp_path / "cache", runs=tmp_path / "runs"))
    old = make_checkpoint(tmp_path / "old.pt", input_size=(64, 48), seed=1)
    new = make_checkpoint(tmp_path / "new.pt", input_size=(64, 48), seed=2)
    report = tmp_path / "report"
    with one_torch_thread():
        args = ["evaluate", "--config", str(config), "--split", "all", "--report", str(report)]
        assert cli([*args, "--compare", str(old), str(new)]) == 0
        out = capsys.readouterr().out
        cfg = load_config(config)
        alone = [evaluate(cfg, [str(m)], split="all", show=False) for m in (old, new)]
    saved = json.loads((report / "comparison.json").read_text())
    flags = cfg.monitor.flag_states
    for side, res in zip(("before", "after"), alone):
        expected = door_metrics(res["probs"], res["targets"], flags)
        assert saved[side] == pytest.approx(expected, nan_ok=True)
        assert f"{expected['acc_flag']:.4f}" in out
    assert saved["before"] != saved["after"]  # two different models
    assert "flag-or-not accuracy" in out and "old.pt -> new.pt" in out
    assert saved["after"]["n"] == len(alone[1]["targets"]) > 0
