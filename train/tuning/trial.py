"""One trial: a real `mask-train fit` in a process and a folder of its own, watched epoch by epoch.

The trial's config is written to its folder and `python -m train fit --config trial.toml --out FOLDER` runs
it; its output goes to fit.log there. Each epoch's validation macro F1 (metrics.jsonl) is reported to the
pruner as it appears; a pruned trial is stopped with SIGINT (fit keeps its last.pt). A process that fails
(a UserError, a NaN loss, out of memory, killed) makes a TrialFailed carrying the reason: its last line.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.config import REPO_ROOT
from engines.fileio import atomic_write_text
from train.config import Config
from train.runfiles import config_toml

POLL_S = 0.5
# environment of a torchrun worker: a trial is a single process, never a rank of the tune process's group
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class TrialFailed(Exception):
    """The trial's fit process failed; the message is the reason recorded in the study."""


class Pruned(Exception):
    """The pruner stopped the trial after `epoch` epochs."""


@dataclass
class TrialRun:
    folder: Path
    best_f1: float
    epochs: int
    history: list[dict[str, Any]]


def read_metrics(folder: Path) -> list[dict[str, Any]]:
    path = folder / "metrics.jsonl"
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # written atomically, so only a stale partial read could get here
    return rows


def failure_reason(code: int, log: Path) -> str:
    """The last meaningful line of the fit log (a UserError's one line, or an exception's last line)."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    last = lines[-1] if lines else ""
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"fit was killed by {name}{hint}" + (f"; last output: {last[:200]}" if last else "")
    return last.removeprefix("mask-train: error: ")[:300] or f"fit exited with status {code}"


def _default_sigint() -> None:
    """In the fit process before it starts: Ctrl-C (SIGINT) raises KeyboardInterrupt there even when tune
    itself runs with SIGINT ignored (a background job of a shell), so that a pruned fit stops at once."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop(proc: subprocess.Popen, grace_s: float = 60.0) -> None:
    """Ctrl-C for the fit process (it saves last.pt and exits), then a kill if it does not."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_trial(
    cfg: Config,
    folder: Path,
    report: Callable[[int, float], bool],
    on_epoch: Callable[[int], None] | None = None,
) -> TrialRun:
    """Train `cfg` in `folder` in a process of its own. report(epoch, val_f1) -> True prunes the trial."""
    folder.mkdir(parents=True, exist_ok=True)
    trial_toml = folder / "trial.toml"
    atomic_write_text(trial_toml, config_toml(cfg))
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "train", "fit", "--config", str(trial_toml), "--out", str(folder)]
    seen = 0
    with open(folder / "fit.log", "w") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder, preexec_fn=_default_sigint
        )
        try:
            while True:
                done = proc.poll() is not None
                rows = read_metrics(folder)
                for row in rows[seen:]:
                    seen += 1
                    if on_epoch:
                        on_epoch(seen)
                    f1 = row.get("val_f1")
                    if f1 is None or not math.isfinite(f1):
                        continue
                    if report(int(row["epoch"]), float(f1)):
                        _stop(proc)
                        raise Pruned(f"pruned after epoch {row['epoch']} (validation macro F1 {f1:.4f})")
                if done:
                    break
                time.sleep(POLL_S)
        except BaseException:
            _stop(proc)
            raise
    if proc.returncode != 0:
        raise TrialFailed(failure_reason(proc.returncode, folder / "fit.log"))
    rows = read_metrics(folder)
    scores = [r["val_f1"] for r in rows if r.get("val_f1") is not None]
    if not scores:
        raise TrialFailed("fit wrote no validation macro F1 (no validation people?)")
    return TrialRun(folder, max(scores), len(rows), rows)
