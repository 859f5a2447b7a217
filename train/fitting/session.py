"""One training run, as `mask-train fit` and each fold of `kfold` make it; `--resume` continues a run; runs
unchanged under torchrun (DDP).

    mask-train fit --data DIR [--cache CACHE] [--epochs N] [--out RUN_DIR] [--resume [CKPT]]
    torchrun --nproc_per_node 2 -m train fit --data DIR ...

The run folder gets config.toml (the resolved config; `--config` reads it back), split.json,
metrics.jsonl, best.pt (highest validation macro F1), last.pt (every epoch, and on Ctrl-C),
confusion.png, val_metrics.json and val_predictions.npz. Only rank 0 writes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engines.errors import UserError
from train.config import Config, load_config
from train.data.cache import Cache
from train.data.folds import holdout_people
from train.data.prepare import ensure_prepared
from train.fitting.checkpoint import load_training_state
from train.fitting.distributed import Dist, rank_device
from train.fitting.init_from import load_parent
from train.fitting.trainer import FitResult, Trainer


@dataclass(frozen=True)
class Resume:
    """What `fit --resume` was told: the checkpoint or run folder to continue (None: --out's last.pt), the
    run folder (--out), whether --config named a file, and the config overrides typed now (they go over the
    run's own config.toml unless --config named another)."""

    checkpoint: Path | None = None
    out: Path | None = None
    config_given: bool = False
    overrides: Mapping[str, Any] = field(default_factory=dict)


def resume_target(resume: Resume, cfg: Config) -> tuple[Config, Path, dict[str, Any]]:
    """(config, run folder, checkpoint) to resume: the run's own config.toml plus the flags given now."""
    if resume.checkpoint is not None:
        ckpt = resume.checkpoint / "last.pt" if resume.checkpoint.is_dir() else resume.checkpoint
    elif resume.out is not None:
        ckpt = resume.out / "last.pt"
    else:
        raise UserError("--resume needs the run to continue: --out RUN_DIR or --resume RUN_DIR/last.pt")
    state = load_training_state(ckpt)
    saved = ckpt.parent / "config.toml"
    if not resume.config_given and saved.is_file():
        cfg = load_config(saved, resume.overrides)
    check_same_run(state, cfg)
    return cfg, resume.out or ckpt.parent, state


def check_same_run(state: dict[str, Any], cfg: Config) -> None:
    """What a resumed run cannot change: the network ([model]) and the optimizer (its state is per
    optimizer)."""
    source, old = state.get("source", "the checkpoint to resume"), state.get("config") or {}
    old_model = old.get("model")
    if old_model and old_model != cfg.to_dict()["model"]:
        raise UserError(
            f"{source}: [model] differs from the run being resumed ({old_model.get('arch')}, "
            f"{old_model.get('input_height')}x{old_model.get('input_width')}); start a new run instead"
        )
    old_opt = (old.get("train") or {}).get("optimizer")
    if old_opt and old_opt != cfg.train.optimizer:
        raise UserError(
            f"{source}: the run was trained with train.optimizer = {old_opt!r}, not "
            f"{cfg.train.optimizer!r}; resume it with {old_opt!r} or start a new run"
        )


def new_run_dir(cfg: Config) -> Path:
    """train.out_dir/<time>-<arch>: a new folder per run, sortable by time."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return cfg.resolve(cfg.train.out_dir) / f"{stamp}-{cfg.model.arch}"


def load_samples(cfg: Config, dist: Dist, data_given: bool = True, show: bool = True) -> tuple[Cache, list]:
    """Rank 0 brings the cache up to date (train.data.prepare.ensure_prepared) while the others wait."""
    error = None
    if dist.main:
        try:
            ensure_prepared(cfg, data_given, show)
        except UserError as exc:
            error = str(exc)
    error = dist.broadcast(error)
    if error:
        raise UserError(error)
    cache = Cache(cfg.resolve(cfg.data.cache_dir))
    return cache, cache.samples()


def fit(
    cfg: Config,
    *,
    run_dir: Path | None = None,
    state: dict[str, Any] | None = None,
    dist=None,
    val_people: set[str] | None = None,
    data_given: bool = True,
    show: bool = True,
    init_from: str | os.PathLike[str] | None = None,
) -> FitResult:
    """One training run; returns train.fitting.trainer.FitResult. `val_people` fixes the split (kfold)."""
    dist = dist or Dist(device=_device(cfg))
    if state is not None:
        check_same_run(state, cfg)
        if init_from is not None:
            raise UserError("--init-from starts a new run; a resumed run continues from its own last.pt")
    parent = load_parent(init_from, cfg.model) if init_from is not None else None
    cache, samples = load_samples(cfg, dist, data_given, show)
    if state is not None:
        val_people = set(state.get("split", {}).get("val_people", []))
    elif val_people is None:
        val_people = holdout_people(samples, cfg.data.val_fraction, cfg.train.seed)
    run_dir = Path(dist.broadcast(str(run_dir or new_run_dir(cfg))))
    if state is None and (run_dir / "last.pt").exists():
        raise UserError(f"{run_dir} already holds a run: pass --resume to continue it, or another --out")
    trainer = Trainer(cfg, cache, samples, val_people, run_dir, dist, show, parent=parent)
    if state is not None:
        trainer.restore(state)
    return trainer.fit()


def _device(cfg: Config) -> Any:
    return rank_device(cfg.train.device)
