"""`fit` under torchrun: 2 CPU processes (gloo), DistributedDataParallel, rank 0 alone writes."""
import json
import math
import os
import shutil
import signal
import subprocess
import sys

from engines.backends import load_engine
from engines.backends.torch_backend import load_checkpoint
from tests.conftest import REPO


def run_group(cmd, env, timeout):
    """Run torchrun in its own process group, so that a timeout ends the workers too."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"torchrun timed out after {timeout} s: {err[-2000:]}")
    return proc.returncode, out, err


def test_torchrun_two_processes_train_and_only_rank_0_writes(prepared, tmp_path):
    data, cache, _ = prepared
    shutil.copytree(cache, tmp_path / "cache")
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "train", "fit", "--data", str(data), "--cache", str(tmp_path / "cache"), "--out", str(run_dir),
           "--epochs", "1", "--input-height", "64", "--input-width", "48", "--batch-size", "8",
           "--num-workers", "0", "--no-pretrained", "--threads", "1", "--device", "cpu"]
    code, out, err = run_group(cmd, env, timeout=300)
    assert code == 0, out[-2000:] + err[-2000:]
    assert out.count("epoch 1/1  loss") == 1                      # one rank prints
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["world_size"] == 2
    meta, state = load_checkpoint(run_dir / "last.pt")
    assert meta.extra["written_by_rank"] == 0 and state["epoch"] == 1
    assert not any(k.startswith("module.") for k in state["model"])  # the bare model, not the DDP wrapper
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        ["best.pt", "last.pt", "config.toml", "metrics.jsonl", "split.json", "confusion.png",
         "val_metrics.json", "val_predictions.npz"])                # no stray or temp files from rank 1
    assert load_engine(run_dir / "best.pt", device="cpu").meta.input_size == (64, 48)
    # each rank trained on its half (padded to equal length); the epoch's image count sums both halves
    per_rank = math.ceil(meta.extra["train_images"] / 2)
    assert rows[0]["images"] == 2 * (per_rank - (1 if per_rank % 8 == 1 else 0))
