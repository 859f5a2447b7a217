"""`mask-train fit --init-from MODEL.pt`: the new run starts from the parent's weights, refuses a parent of
another network, and its checkpoints and ONNX export name the parent's hash."""

from __future__ import annotations

import shutil

import pytest
import torch

from engines.backends.torch_backend import load_checkpoint
from engines.errors import UserError
from engines.fileio import sha256_file
from engines.formats import read_meta
from tests.conftest import one_torch_thread
from tests.helpers import make_checkpoint
from tests.train.test_fit import CONFIG
from train.cli import _main as cli


@pytest.fixture(scope="module")
def setup(prepared, tmp_path_factory):
    """(config file, parent checkpoint 64x48, the run folder of a 1-epoch fine-tune at lr 0)."""
    data, cache, _ = prepared
    root = tmp_path_factory.mktemp("init_from")
    shutil.copytree(cache, root / "cache")
    config = root / "config.toml"
    config.write_text(CONFIG.format(data=data, cache=root / "cache", runs=root / "runs"))
    parent = make_checkpoint(root / "parent.pt", input_size=(64, 48), seed=3)
    run_dir = root / "runs" / "tuned"
    with one_torch_thread():
        args = ["fit", "--config", str(config), "--init-from", str(parent), "--out", str(run_dir)]
        assert cli([*args, "--epochs", "1", "--lr", "0"]) == 0
    return config, parent, run_dir


def trainable(weights: dict) -> dict:
    """Learned parameters only (BatchNorm running statistics move in train mode even at lr 0)."""
    return {k: v for k, v in weights.items() if "running_" not in k and "num_batches" not in k}


def test_the_run_starts_from_the_parent_weights(setup):
    _, parent, run_dir = setup
    _, mine = load_checkpoint(run_dir / "best.pt")
    _, theirs = load_checkpoint(parent)
    a, b = trainable(mine["model"]), trainable(theirs["model"])
    assert a.keys() == b.keys()
    # at lr 0 nothing learned moves: every weight is the parent's (a fresh ImageNet model differs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_and_the_onnx_export_record_the_parent_hash(setup, tmp_path):
    _, parent, run_dir = setup
    digest = sha256_file(parent)
    for name in ("best.pt", "last.pt"):
        extra = read_meta(run_dir / name).extra
        assert extra["parent_sha256"] == digest and extra["parent"] == "parent.pt"
    out = tmp_path / "tuned.onnx"
    assert cli(["export-onnx", "--checkpoint", str(run_dir / "best.pt"), "--out", str(out)]) == 0
    meta = read_meta(out)
    assert meta.extra["parent_sha256"] == digest
    assert meta.source_sha256 == sha256_file(run_dir / "best.pt")


def test_a_parent_of_another_network_is_one_clear_line(setup, tmp_path):
    config, _, _ = setup
    other = make_checkpoint(tmp_path / "big.pt", input_size=(128, 96))
    args = ["fit", "--config", str(config), "--out", str(tmp_path / "run"), "--epochs", "1"]
    with pytest.raises(
        UserError,
        match=r"big.pt: it is mobilenet_v2 with a single head at 96x128, this run "
        r"trains mobilenet_v2 with a single head at 48x64",
    ):
        cli([*args, "--init-from", str(other)])
    with pytest.raises(UserError, match="does not exist"):
        cli([*args, "--init-from", str(tmp_path / "missing.pt")])
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    with pytest.raises(UserError, match="a .onnx file; fine-tuning starts from a .pt"):
        cli([*args, "--init-from", str(tmp_path / "model.onnx")])
    assert not (tmp_path / "run").exists()


def test_resume_and_init_from_do_not_mix(setup, tmp_path):
    config, parent, run_dir = setup
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    with pytest.raises(UserError, match="--init-from starts a new run"):
        cli(["fit", "--config", str(config), "--resume", "--out", str(copy), "--init-from", str(parent)])


def test_a_resumed_fine_tune_keeps_its_parent(setup, tmp_path):
    config, parent, run_dir = setup
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    with one_torch_thread():
        assert cli(["fit", "--config", str(config), "--resume", "--out", str(copy), "--epochs", "2"]) == 0
    assert read_meta(copy / "last.pt").extra["parent_sha256"] == sha256_file(parent)
