"""The search space of `[tune] space`: read, checked against the config schema before any trial starts, and
drawn from by an Optuna trial.

    "train.lr = log 1e-5 3e-3"         log-uniform float
    "augment.color = float 0.0 0.8"    uniform float
    "data.age_old_threshold = int 57 60"
    "train.optimizer = choice adamw sgd"
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, fields
from typing import Any

from engines.config import ConfigError, with_overrides
from train.config import SECTIONS, Config

KINDS = ("float", "log", "int", "choice")
SEARCHABLE = ("model", "data", "augment", "train")
# a parameter drawn only when another one has a given value (it means nothing otherwise)
CONDITIONS: dict[str, tuple[str, str]] = {
    "train.focal_gamma": ("train.loss", "focal"),
    "train.label_smoothing": ("train.loss", "label_smoothing"),
    "train.momentum": ("train.optimizer", "sgd"),
}
NOT_SEARCHABLE = ("train.epochs", "train.device", "train.out_dir", "train.threads", "train.seed")


@dataclass(frozen=True)
class Param:
    name: str  # "section.key"
    kind: str  # float | log | int | choice
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high))
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log")


def _field_type(name: str, where: str) -> type:
    section, _, key = name.partition(".")
    if section not in SEARCHABLE or name in NOT_SEARCHABLE:
        raise ConfigError(f"{where}: {name!r} cannot be searched (any key of [{'], ['.join(SEARCHABLE)}])")
    found = [f for f in fields(SECTIONS[section]) if f.name == key]
    if not found:
        valid = ", ".join(f.name for f in fields(SECTIONS[section]))
        raise ConfigError(f"{where}: unknown parameter {name!r} ([{section}] has {valid})")
    return typing.get_type_hints(SECTIONS[section])[key]


def _value(text: str, tp: type, where: str) -> Any:
    try:
        if tp is bool:
            if text not in ("true", "false"):
                raise ValueError
            return text == "true"
        return tp(text) if tp in (int, float) else text
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a valid {tp.__name__}") from None


def parse_param(entry: str, where: str) -> Param:
    """One "section.key = KIND ARGS" entry; every error names the entry."""
    name, eq, rest = entry.partition("=")
    name, words = name.strip(), rest.split()
    if not eq or not words or words[0] not in KINDS:
        raise ConfigError(
            f"{where}: {entry!r} is not 'section.key = KIND ARGS' with KIND one of {', '.join(KINDS)}"
        )
    where = f"{where} {entry!r}"
    tp, kind, args = _field_type(name, where), words[0], words[1:]
    if kind == "choice":
        if not args:
            raise ConfigError(f"{where}: choice needs at least one value")
        return Param(name, kind, choices=tuple(_value(a, tp, where) for a in args))
    if len(args) != 2:
        raise ConfigError(f"{where}: {kind} needs LOW HIGH, got {len(args)} values")
    if tp is not (int if kind == "int" else float) and not (kind == "int" and tp is float):
        raise ConfigError(f"{where}: {name} is a {tp.__name__}; use choice (or int/float for numbers)")
    low, high = (_value(a, int if kind == "int" else float, where) for a in args)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(f"{where}: the range must be finite")
    if low > high:
        raise ConfigError(f"{where}: low {low:g} > high {high:g}")
    if kind == "log" and low <= 0:
        raise ConfigError(f"{where}: a log range must be above 0, got low {low:g}")
    return Param(name, kind, low, high)


def parse_space(cfg: Config) -> list[Param]:
    """Every entry of [tune] space, each checked against the config schema (bounds, choices) by applying its
    ends and choices to the config: a value that `fit` would refuse is refused here, before any trial."""
    where = "[tune] space"
    params = [parse_param(entry, where) for entry in cfg.tune.space]
    if not params:
        raise ConfigError(f"{where} is empty: name at least one parameter to search")
    names = [p.name for p in params]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ConfigError(f"{where}: {dup!r} appears twice")
    for p in params:
        values = p.choices if p.kind == "choice" else (p.low, p.high)
        for v in values:
            try:
                with_overrides(cfg, {p.name: v})
            except ConfigError as exc:
                raise ConfigError(f"{where}: {p.name} = {v!r} is refused by the config: {exc}") from None
    ends = {p.name: p.high if p.kind != "choice" else max(p.choices) for p in params}
    if ends.get("augment.cutmix", cfg.augment.cutmix) + ends.get("augment.mixup", cfg.augment.mixup) > 1:
        raise ConfigError(f"{where}: augment.cutmix and augment.mixup may add up to more than 1")
    # parents first, so that a conditional parameter sees the value drawn for its parent
    return sorted(params, key=lambda p: p.name in CONDITIONS)


def suggest(params: list[Param], trial: Any, base: Config) -> dict[str, Any]:
    """The settings of one trial: each parameter drawn, a conditional one only where it means something."""
    chosen: dict[str, Any] = {}
    for p in params:
        if p.name in CONDITIONS:
            parent, wanted = CONDITIONS[p.name]
            section, _, key = parent.partition(".")
            if chosen.get(parent, getattr(getattr(base, section), key)) != wanted:
                continue
        chosen[p.name] = p.suggest(trial)
    return chosen
