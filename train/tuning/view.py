"""The study running on screen: a rich table of trials as they finish, a progress bar, the best so far."""

from __future__ import annotations

import contextlib
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from train.progress import console, make_progress
from train.tuning.study import TuneSetup, counted, objective, requeue_interrupted
from train.tuning.trial import TrialFailed

STATE_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _settings(params: dict[str, Any]) -> str:
    return " ".join(f"{k.split('.')[1]}={_short(v)}" for k, v in params.items())


class TuneView:
    def __init__(self, setup: TuneSetup, study: optuna.Study, total: int) -> None:
        self.setup, self.study = setup, study
        self.table = Table(title=f"study {setup.study_name} ({setup.storage})", expand=False)
        for col in ("#", "state", "F1", "best", "s", "settings / reason"):
            self.table.add_column(col, overflow="fold")
        self.progress = make_progress()
        self.task = self.progress.add_task("trials", total=total, info="")
        self.current = ""

    def renderable(self) -> Group:
        return Group(self.table, self.progress)

    def on_epoch(self, epoch: int) -> None:
        self.progress.update(
            self.task, description=f"{self.current} epoch {epoch}/{self.setup.cfg.train.epochs}"
        )

    def on_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        state = trial.state.name
        value = "" if trial.value is None else f"{trial.value:.4f}"
        try:
            best = f"{study.best_value:.4f} (#{study.best_trial.number})"
        except ValueError:
            best = "-"
        detail = trial.user_attrs.get("error") or trial.user_attrs.get("note") or ""
        style = STATE_STYLE.get(state, "")
        # settings and reasons are text, not markup: an error such as "[train]: unknown key" must show as is
        text = escape(_settings(trial.params)) + (f"  [{style}]{escape(detail)}[/]" if detail else "")
        self.table.add_row(
            str(trial.number),
            f"[{style}]{state.lower()}[/]",
            value,
            best,
            str(trial.user_attrs.get("seconds", "")),
            text,
        )
        self.progress.update(self.task, advance=1, info=f"best {best}")
        if not console.is_terminal:  # a log file gets one line per trial as it ends
            state_text = f"{state.lower()} F1 {value}" if value else state.lower()
            console.print(f"trial {trial.number}: {state_text}, best {best}, {text}", highlight=False)


def run_study(setup: TuneSetup, study: optuna.Study) -> None:
    """Trials until tune.trials of them are finished (or tune.timeout_s); each one's row as it ends."""
    again = requeue_interrupted(study)
    if again:
        console.print(f"resuming: trials {', '.join(map(str, again))} were interrupted and run again")
    remaining = setup.cfg.tune.trials - counted(study)
    if remaining <= 0:
        console.print(
            f"the study already has {counted(study)} finished trials (--trials {setup.cfg.tune.trials})"
        )
        return
    view = TuneView(setup, study, remaining)

    def obj(trial: optuna.Trial) -> float:
        view.current = f"trial {trial.number}:"
        return objective(setup, trial, view.on_epoch)

    live = Live(view.renderable(), console=console, refresh_per_second=4, vertical_overflow="visible")
    with live if console.is_terminal else contextlib.nullcontext():
        study.optimize(
            obj,
            n_trials=remaining,
            timeout=setup.cfg.tune.timeout_s or None,
            catch=(TrialFailed,),
            callbacks=[view.on_trial],
            gc_after_trial=False,
        )
