"""The training's sections of config.toml: `Config` = the shared sections (engines.config) + these. Loss names
are the rows of train.fitting.losses.LOSSES (read when a value is checked: that module imports torch);
`load_config` and friends read a file into this Config (the monitor's sections in the same file accepted by
name, engines.config.PROGRAM_SECTIONS)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines import config as base
from engines.config import DEVICES, ConfigError, _f
from engines.labels import TASK_NAMES


def _loss_names() -> tuple[str, ...]:
    """The rows of train.fitting.losses.LOSSES. Named, not imported: this module sits below train.fitting (the
    whole training reads its config), and LOSSES's module imports torch, so it is read when a loss name
    is checked or listed, never at import."""
    return tuple(importlib.import_module("train.fitting.losses").LOSSES)


@dataclass(frozen=True)
class DataConfig:
    data_dir: str = _f("data", path=True)
    cache_dir: str = _f("cache", path=True)
    age_old_threshold: int = _f(60, min=31, max=120)
    val_fraction: float = _f(0.2, min=0.0, max=0.9)
    folds: int = _f(5, min=2, max=50)
    batch_size: int = _f(32, min=1, max=4096)
    num_workers: int = _f(2, min=0, max=256)
    pin_memory: bool = _f(True)
    persistent_workers: bool = _f(True)
    prefetch_factor: int = _f(2, min=1, max=64)
    weighted_sampler: bool = _f(False)
    # "NAME=WEIGHT" per source: "prepared" (the folder `prepare` cropped) or an `import --name`; an image of a
    # source of weight 2 is drawn twice as often as one of weight 1; unlisted sources weigh 1
    source_weights: tuple[str, ...] = _f(())


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentations that keep a face a plausible face at an entrance; p = probability of each."""

    enabled: bool = _f(True)
    hflip: float = _f(0.5, min=0.0, max=1.0)
    shift_scale_rotate: float = _f(0.5, min=0.0, max=1.0)
    max_rotate: float = _f(10.0, min=0.0, max=45.0)
    color: float = _f(0.5, min=0.0, max=1.0)
    blur: float = _f(0.1, min=0.0, max=1.0)
    noise: float = _f(0.1, min=0.0, max=1.0)
    jpeg: float = _f(0.2, min=0.0, max=1.0)
    dropout: float = _f(0.2, min=0.0, max=1.0)
    # the face kept inside a random rectangle, the rest a plain noisy background: a tight photo pasted in a
    # frame, a face before a bare wall (without it, plain surroundings read as a mask)
    surroundings: float = _f(0.0, min=0.0, max=1.0)
    # faces as a camera sees them: the face box re-cut from the crop's surroundings +-box_jitter_range of its
    # size (scale and shift), a neighbour's face pasted in the margin beside or below (crowds), and the face
    # shrunk to small_face_px tall (lower, upper) then enlarged back, blurred, noisy, JPEG'd at the low size
    box_jitter: float = _f(0.5, min=0.0, max=1.0)
    box_jitter_range: float = _f(0.15, min=0.0, max=0.3)
    crowd: float = _f(0.2, min=0.0, max=1.0)
    small_face: float = _f(0.3, min=0.0, max=1.0)
    small_face_px: tuple[float, float] = _f((40.0, 80.0), min=8.0, max=512.0, length=2)
    # batch mixing, applied per batch on the tensors (the loss mixed to match); cutmix + mixup <= 1
    cutmix: float = _f(0.0, min=0.0, max=1.0)
    mixup: float = _f(0.0, min=0.0, max=1.0)
    cutmix_alpha: float = _f(1.0, min=0.01, max=10.0)
    mixup_alpha: float = _f(0.4, min=0.01, max=10.0)

    def check(self, where: str) -> None:
        if self.cutmix + self.mixup > 1.0:
            raise ConfigError(
                f"{where}: cutmix + mixup = {self.cutmix + self.mixup:g} exceeds 1 (each is the share of "
                "batches mixed that way)"
            )
        if self.small_face_px[0] > self.small_face_px[1]:
            raise ConfigError(f"{where}.small_face_px = {list(self.small_face_px)}: lower exceeds upper")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _f(10, min=1, max=10000)
    optimizer: str = _f("adamw", choices=("adamw", "sgd"))
    lr: float = _f(3e-4, min=0.0, max=10.0)
    weight_decay: float = _f(1e-4, min=0.0, max=1.0)
    momentum: float = _f(0.9, min=0.0, max=1.0)
    scheduler: str = _f("cosine", choices=("none", "step", "cosine", "plateau"))
    step_size: int = _f(5, min=1, max=10000)
    gamma: float = _f(0.1, min=0.0, max=1.0)
    plateau_patience: int = _f(2, min=0, max=1000)
    loss: str = _f("ce", choices=_loss_names)  # a row of train.fitting.losses.LOSSES
    focal_gamma: float = _f(2.0, min=0.0, max=10.0)
    label_smoothing: float = _f(0.1, min=0.0, max=0.5)
    accumulate: int = _f(1, min=1, max=1024)
    amp: bool = _f(True)
    seed: int = _f(42, min=0, max=2**31 - 1)
    device: str = _f("auto", choices=DEVICES)
    threads: int = _f(0, min=0, max=256)  # CPU threads for training; 0 = torch's default (all cores)
    out_dir: str = _f("runs", path=True)
    best_metric: str = _f("f1", choices=("f1", "f1_mask"))  # what picks best.pt: 18-class or mask macro F1
    # the tasks the model file says it learnt from real labels; () = each task some training image has a label
    # for (a synthetic set's gender/age come from a few identities: list only "mask" then)
    known_tasks: tuple[str, ...] = _f((), choices=TASK_NAMES)
    # fit a temperature per softmax on the validation data with every checkpoint (engines.calibration)
    calibrate: bool = _f(True)


# `mask-train tune`'s default search space: "section.key = KIND ARGS", KIND one of float LOW HIGH,
# log LOW HIGH (log-uniform), int LOW HIGH, choice A B C ... (train.tuning.space reads and checks it)
TUNE_SPACE = (
    "train.lr = log 1e-5 3e-3",
    "train.weight_decay = log 1e-6 1e-2",
    "train.optimizer = choice adamw sgd",
    "train.scheduler = choice cosine step plateau none",
    "train.loss = choice ce focal label_smoothing",
    "train.focal_gamma = float 0.5 4.0",
    "train.label_smoothing = float 0.02 0.2",
    "data.batch_size = choice 16 32 64",
    "train.accumulate = choice 1 2",
    "augment.shift_scale_rotate = float 0.0 0.8",
    "augment.color = float 0.0 0.8",
    "augment.dropout = float 0.0 0.5",
    "data.age_old_threshold = int 57 60",
    "model.head = choice single multi",
    "model.freeze_backbone = choice false true",
    "augment.cutmix = float 0.0 0.5",
    "augment.mixup = float 0.0 0.5",
)


@dataclass(frozen=True)
class TuneConfig:
    """`mask-train tune`: Optuna's TPE sampler over `space`, weak trials pruned on validation macro F1."""

    trials: int = _f(20, min=1, max=100000)
    timeout_s: float = _f(0.0, min=0.0, max=1e7)  # stop starting trials after this long; 0 = no limit
    epochs: int = _f(0, min=0, max=10000)  # epochs per trial; 0 = train.epochs
    study: str = _f("mask-train")
    storage: str = _f("")  # an Optuna storage URL; "" = sqlite:///<out_dir>/study.db
    out_dir: str = _f("tune", path=True)
    seed: int = _f(42, min=0, max=2**31 - 1)
    startup_trials: int = _f(5, min=0, max=10000)  # random trials before TPE, and before any pruning
    pruner: str = _f("median", choices=("median", "hyperband", "none"))
    warmup_epochs: int = _f(1, min=0, max=10000)  # epochs in which the median pruner stops no trial
    space: tuple[str, ...] = _f(TUNE_SPACE)


@dataclass(frozen=True)
class LabelConfig:
    """`mask-train label`: the local labelling page (the host is never a config key: --host only)."""

    port: int = _f(8765, min=0, max=65535)  # 0: any free port
    unsure_below: float = _f(0.75, min=0.0, max=1.0)  # "model unsure": top mask probability under this


@dataclass(frozen=True)
class ScenesConfig:
    """Street and crowd scenes with boxed faces (PASCAL VOC): `mask-train import` cuts each face where the
    monitor's detector puts it, `mask-train evaluate-scenes` runs them through the monitor's path."""

    min_face_height: int = _f(24, min=1, max=10000)  # import: shorter faces (px in the scene) are skipped
    search_grow: float = _f(2.5, min=1.2, max=10.0)  # import: the detector looks at the box grown this much
    search_face_px: int = _f(64, min=24, max=1000)  # ... scaled so the annotated face is this many px tall
    match_iou: float = _f(0.3, min=0.0, max=1.0)  # a detection is an annotated face's from this IoU on
    frame_width: int = _f(640, min=64, max=8192)  # evaluate-scenes: each scene scaled to this width


@dataclass(frozen=True)
class Config(base.Config, program="train"):
    """What mask-train reads: the shared sections and the training's."""

    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    scenes: ScenesConfig = field(default_factory=ScenesConfig)


SECTIONS = base.sections_of(Config)


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    return base.load_config(path, overrides, Config)  # type: ignore[return-value]


def from_dict(data: Mapping[str, Any], source: str = "config", base_dir: str | Path | None = None) -> Config:
    return base.from_dict(data, source, base_dir, Config)  # type: ignore[return-value]


def cli_overrides(args: Any) -> dict[str, Any]:
    return base.cli_overrides(args, Config)


def config_from_args(args: Any) -> Config:
    return base.config_from_args(args, Config)  # type: ignore[return-value]


def choices_of(dotted: str) -> Any:
    return base.choices_of(dotted, Config)
