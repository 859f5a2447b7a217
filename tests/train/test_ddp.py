"""`fit` under torchrun: 2 CPU processes (gloo), DistributedDataParallel, rank 0 alone writes."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys

import numpy as np

from engines.backends.torch_backend import load_checkpoint
from engines.formats import load_engine
from tests.conftest import REPO, one_torch_thread
from tests.helpers import RUN_FILES
from train.config import load_config
from train.evaluation.scoring import evaluate


def run_group(cmd, env, timeout):
    """Run torchrun in its own process group, so that a timeout ends the workers too."""
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"torchrun timed out after {timeout} s: {err[-2000:]}") from None
    return proc.returncode, out, err


def test_torchrun_two_processes_train_and_only_rank_0_writes(prepared, tmp_path):
    data, cache, _ = prepared
    shutil.copytree(cache, tmp_path / "cache")
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "train",
        "fit",
        "--data",
        str(data),
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(run_dir),
        "--epochs",
        "1",
        "--input-height",
        "64",
        "--input-width",
        "48",
        "--batch-size",
        "8",
        "--num-workers",
        "0",
        "--pretrained",
        "--threads",
        "1",
        "--device",
        "cpu",
    ]
    code, out, err = run_group(cmd, env, timeout=300)
    assert code == 0, out[-2000:] + err[-2000:]
    assert out.count("epoch 1/1  loss") == 1  # one rank prints
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["world_size"] == 2
    meta, state = load_checkpoint(run_dir / "last.pt")
    assert meta.extra["written_by_rank"] == 0 and state["epoch"] == 1
    assert meta.extra["ddp"] == {
        "backend": "gloo",
        "world_size": 2,
    }  # really wrapped in DistributedDataParallel
    assert not any(k.startswith("module.") for k in state["model"])  # the bare model, not the DDP wrapper
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        RUN_FILES
    )  # no stray or temp files from rank 1
    assert load_engine(run_dir / "best.pt", device="cpu").meta.input_size == (64, 48)
    # validation, scored half by each rank, is put back in order: the saved predictions are best.pt's, key by
    # key (a rank that trained its own model apart, or shards put back out of order, would differ)
    with one_torch_thread():
        scored = evaluate(load_config(run_dir / "config.toml"), [str(run_dir / "best.pt")], show=False)
    with np.load(run_dir / "val_predictions.npz") as z:
        order = {k: i for i, k in enumerate(z["keys"].tolist())}
        assert sorted(order) == sorted(scored["keys"]) and len(order) > 2
        idx = [order[k] for k in scored["keys"]]
        np.testing.assert_array_equal(z["targets"][idx], scored["targets"])
        np.testing.assert_allclose(z["probs"][idx], scored["probs"], atol=1e-4)
    # ImageNet weights, so that the network's output depends on its input and a mix-up of keys shows
    assert np.abs(scored["probs"] - scored["probs"].mean(axis=0)).max() > 0.05
    # each rank trained on its half (padded to equal length); the epoch's image count sums both halves
    per_rank = math.ceil(meta.extra["train_images"] / 2)
    assert rows[0]["images"] == 2 * (per_rank - (1 if per_rank % 8 == 1 else 0))


def test_validation_shards_are_put_back_in_dataset_order(monkeypatch):
    """Rank r scores items r, r + world, ...; _validate interleaves the gathered shards back (not
    concatenates)."""
    from types import SimpleNamespace

    import torch

    from train.fitting import trainer as trainer_module
    from train.fitting.trainer import Trainer

    n, world = 7, 3
    probs = np.repeat(np.arange(n, dtype=np.float32)[:, None], 18, axis=1)  # row i holds i
    shards = [(probs[r::world], float(r + 1)) for r in range(world)]  # (probs, mean loss) per rank

    class FakeDist:
        rank = 0

        def sync_buffers(self, model):
            pass

        def gather(self, obj):
            assert np.array_equal(obj[0], shards[0][0])  # this rank's own share
            return [(p, loss * len(p)) for p, loss in shards]

    FakeDist.world = world
    monkeypatch.setattr(trainer_module, "predict_loader", lambda *a, **kw: (shards[0][0], None, shards[0][1]))
    fake = SimpleNamespace(
        val_loader=[object()],
        dist=FakeDist(),
        model=torch.nn.Identity(),
        device="cpu",
        amp=False,
        loss_fn=None,
        cfg=SimpleNamespace(model=SimpleNamespace(head="single")),
        val_targets=np.zeros(n, np.int64),
    )
    full, loss = Trainer._validate(fake)
    np.testing.assert_array_equal(full, probs)
    assert loss == (1 * 3 + 2 * 2 + 3 * 2) / n  # weighted by shard size


def test_a_user_error_ends_every_rank_with_one_line(prepared, tmp_path):
    """A cache made from another data folder, under 2 ranks: the error's one line, every rank exits with
    status 2 (no SIGABRT); train.launch leaves out torchrun's own traceback."""
    data, cache, _ = prepared
    shutil.copytree(cache, tmp_path / "cache")
    shutil.copytree(data, tmp_path / "other")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    flags = [
        "fit",
        "--data",
        str(tmp_path / "other"),
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "run"),
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    ranks = ["--standalone", "--nproc_per_node", "2"]
    code, out, err = run_group(
        [sys.executable, "-m", "torch.distributed.run", *ranks, "-m", "train", *flags], env, timeout=180
    )
    assert code != 0 and err.count("mask-train: error:") == 1 and "holds crops of" in err
    assert "terminate called" not in err and "SIGABRT" not in err
    assert err.count("exitcode  : 2 ") == 2  # torchrun's report: both ranks ended with the error's status
    code, out, err = run_group([sys.executable, "-m", "train.launch", *ranks, *flags], env, timeout=180)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("mask-train: error: cache "), err
    assert not (tmp_path / "run" / "last.pt").exists()
