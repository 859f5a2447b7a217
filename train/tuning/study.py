"""The Optuna study behind `mask-train tune`: TPE sampler, a pruner on the per-epoch validation macro F1,
a SQLite database that a killed `tune` continues from with `--resume`.

A trial that fails (a NaN loss, out of memory, a crash) is recorded as failed with its reason in the user
attribute "error", and the study goes on. A trial cut short by a killed or interrupted `tune` is marked
failed ("interrupted") when the study resumes and its settings are queued to run again; it does not count
towards `--trials`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from engines.config import ConfigError, with_overrides
from engines.errors import UserError
from train.config import Config
from train.tuning.space import Param, suggest
from train.tuning.trial import Pruned, TrialFailed, run_trial

INTERRUPTED = "interrupted"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass
class TuneSetup:
    cfg: Config  # the base config (tune.epochs already applied to train.epochs)
    params: list[Param]
    out: Path
    storage: str
    study_name: str


def storage_url(cfg: Config, out: Path) -> str:
    return cfg.tune.storage or f"sqlite:///{(out / 'study.db').resolve()}"


def _pruner(cfg: Config) -> optuna.pruners.BasePruner:
    t = cfg.tune
    if t.pruner == "median":
        # steps are epoch numbers from 1: the first warmup_epochs epochs never prune
        warmup = t.warmup_epochs + 1
        return optuna.pruners.MedianPruner(n_startup_trials=t.startup_trials, n_warmup_steps=warmup)
    if t.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=cfg.train.epochs)
    return optuna.pruners.NopPruner()


def open_study(setup: TuneSetup, resume: bool) -> optuna.Study:
    """A new study, or with `resume` the stored one; one line if that is not what the storage holds."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t = setup.cfg.tune
    try:
        existing = optuna.study.get_all_study_names(setup.storage)
    except Exception as exc:  # a bad URL, an unreadable file: SQLAlchemy and Optuna raise many kinds
        raise UserError(f"--storage {setup.storage}: cannot open it ({type(exc).__name__}: {exc})") from None
    if resume and setup.study_name not in existing:
        raise UserError(
            f"--resume: {setup.storage} holds no study {setup.study_name!r} (it has: "
            f"{', '.join(existing) or 'none'})"
        )
    if not resume and setup.study_name in existing:
        raise UserError(
            f"{setup.storage} already holds study {setup.study_name!r}: pass --resume to continue "
            "it, or another --study / --out"
        )
    sampler = optuna.samplers.TPESampler(seed=t.seed, n_startup_trials=t.startup_trials)
    return optuna.create_study(
        study_name=setup.study_name,
        storage=setup.storage,
        direction="maximize",
        sampler=sampler,
        pruner=_pruner(setup.cfg),
        load_if_exists=resume,
    )


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Trials a killed `tune` left running (or a Ctrl-C left failed as interrupted): failed as interrupted,
    their settings queued again (once: the study remembers which it queued). Returns their numbers."""
    storage, again = study._storage, []
    done = set(study.user_attrs.get("requeued", []))
    for tr in study.get_trials(deepcopy=False):
        stale = tr.state == TrialState.RUNNING
        if tr.number in done or not (
            stale or (tr.state == TrialState.FAIL and tr.user_attrs.get("error") == INTERRUPTED)
        ):
            continue
        if stale:
            storage.set_trial_user_attr(tr._trial_id, "error", INTERRUPTED)
            storage.set_trial_state_values(tr._trial_id, TrialState.FAIL)
        study.enqueue_trial(tr.params, skip_if_exists=False)
        again.append(tr.number)
    if again:
        study.set_user_attr("requeued", sorted(done | set(again)))
    return again


def counted(study: optuna.Study) -> int:
    """Finished trials that count towards --trials (an interrupted one does not: it runs again)."""
    return sum(
        1
        for tr in study.get_trials(deepcopy=False, states=FINISHED)
        if tr.user_attrs.get("error") != INTERRUPTED
    )


def trial_config(setup: TuneSetup, values: dict[str, Any]) -> Config:
    try:
        return with_overrides(setup.cfg, values)
    except ConfigError as exc:
        raise TrialFailed(f"settings refused: {exc}") from None


def objective(setup: TuneSetup, trial: optuna.Trial, on_epoch=None) -> float:
    values = suggest(setup.params, trial, setup.cfg)
    folder = setup.out / "trials" / f"{trial.number:04d}"
    trial.set_user_attr("folder", str(folder))
    start = time.monotonic()

    def report(epoch: int, f1: float) -> bool:
        trial.report(f1, epoch)
        return trial.should_prune()

    try:
        result = run_trial(trial_config(setup, values), folder, report, on_epoch)
    except Pruned as exc:
        trial.set_user_attr("seconds", round(time.monotonic() - start, 1))
        trial.set_user_attr("note", str(exc))
        raise optuna.TrialPruned(str(exc)) from None
    except TrialFailed as exc:
        trial.set_user_attr("error", str(exc))
        trial.set_user_attr("seconds", round(time.monotonic() - start, 1))
        raise
    except KeyboardInterrupt:
        trial.set_user_attr("error", INTERRUPTED)
        raise
    trial.set_user_attr("seconds", round(time.monotonic() - start, 1))
    trial.set_user_attr("epochs", result.epochs)
    return result.best_f1
