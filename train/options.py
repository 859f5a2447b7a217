"""Command-line flags shared by the training commands. Each flag's dest is 'section.key', so
engines.config.config_from_args turns it into a validated override of config.toml."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engines.errors import UserError
from train.config import choices_of, cli_overrides

_BOOL = argparse.BooleanOptionalAction


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", dest="data.data_dir", metavar="DIR", help="competition folder (train/, eval/)")
    p.add_argument("--cache", dest="data.cache_dir", metavar="CACHE", help="crop cache made by `prepare`")


def add_loader_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", dest="data.batch_size", type=int, metavar="N")
    p.add_argument("--num-workers", dest="data.num_workers", type=int, metavar="N")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--arch", dest="model.arch", metavar="NAME", help="torchvision model, e.g. mobilenet_v2, resnet18"
    )
    p.add_argument("--head", dest="model.head", choices=choices_of("model.head"))
    p.add_argument(
        "--pretrained",
        dest="model.pretrained",
        action=_BOOL,
        default=None,
        help="start from ImageNet weights",
    )
    p.add_argument(
        "--freeze-backbone",
        dest="model.freeze_backbone",
        action=_BOOL,
        default=None,
        help="train the head only (transfer learning)",
    )
    p.add_argument("--input-height", dest="model.input_height", type=int, metavar="PX")
    p.add_argument("--input-width", dest="model.input_width", type=int, metavar="PX")


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p)
    add_loader_arguments(p)
    add_model_arguments(p)
    g = p.add_argument_group("training (override config.toml [train], [data], [augment])")
    g.add_argument("--epochs", dest="train.epochs", type=int, metavar="N")
    g.add_argument("--lr", dest="train.lr", type=float)
    g.add_argument("--optimizer", dest="train.optimizer", choices=choices_of("train.optimizer"))
    g.add_argument("--scheduler", dest="train.scheduler", choices=choices_of("train.scheduler"))
    g.add_argument("--loss", dest="train.loss", choices=choices_of("train.loss"))
    g.add_argument(
        "--accumulate", dest="train.accumulate", type=int, metavar="N", help="gradient accumulation steps"
    )
    g.add_argument("--amp", dest="train.amp", action=_BOOL, default=None, help="mixed precision (CUDA only)")
    g.add_argument("--seed", dest="train.seed", type=int)
    g.add_argument("--device", dest="train.device", choices=choices_of("train.device"))
    add_threads_argument(g)
    g.add_argument("--val-fraction", dest="data.val_fraction", type=float)
    g.add_argument(
        "--age-threshold",
        dest="data.age_old_threshold",
        type=int,
        metavar="YEARS",
        help="age from which training counts a person as >=60 (validation always uses 60)",
    )
    g.add_argument("--weighted-sampler", dest="data.weighted_sampler", action=_BOOL, default=None)
    g.add_argument("--augment", dest="augment.enabled", action=_BOOL, default=None)
    g.add_argument(
        "--cutmix", dest="augment.cutmix", type=float, metavar="P", help="share of batches CutMixed"
    )
    g.add_argument("--mixup", dest="augment.mixup", type=float, metavar="P", help="share of batches MixUp-ed")
    g.add_argument(
        "--surroundings",
        dest="augment.surroundings",
        type=float,
        metavar="P",
        help="share of crops whose surroundings become a plain noisy background",
    )
    g.add_argument(
        "--box-jitter",
        dest="augment.box_jitter",
        type=float,
        metavar="P",
        help="share of crops re-cut so the face box moves and scales (augment.box_jitter_range)",
    )
    g.add_argument(
        "--crowd",
        dest="augment.crowd",
        type=float,
        metavar="P",
        help="share of crops with another crop's face pasted beside or below the face",
    )
    g.add_argument(
        "--small-face",
        dest="augment.small_face",
        type=float,
        metavar="P",
        help="share of crops whose face is shrunk to augment.small_face_px tall and enlarged back",
    )
    g.add_argument(
        "--source-weights",
        dest="data.source_weights",
        nargs="+",
        metavar="NAME=W",
        help="drawing weight per source: 'prepared' or an import name (unlisted: 1)",
    )
    g.add_argument("--best-metric", dest="train.best_metric", choices=choices_of("train.best_metric"))
    g.add_argument(
        "--known-tasks",
        dest="train.known_tasks",
        nargs="+",
        choices=choices_of("train.known_tasks"),
        help="tasks the model file says it learnt from real labels (default: those with labels)",
    )


def overrides_of(args: argparse.Namespace) -> Mapping[str, Any]:
    """The 'section.key' flags the user gave (argparse leaves the others None), paths made absolute against
    the working directory, exactly as engines.config.config_from_args reads them."""
    return cli_overrides(args)


def data_given(args: argparse.Namespace) -> bool:
    """Whether --data named the competition folder on this command line: then the cache is brought up to
    date from it; without it an existing cache (prepared or imported) is used as it is
    (train.data.prepare.ensure_prepared). The one place it is read off the command line."""
    return getattr(args, "data.data_dir", None) is not None


def cache_given(args: argparse.Namespace) -> bool:
    """Whether --cache named the crop cache on this command line."""
    return getattr(args, "data.cache_dir", None) is not None


def config_given(args: argparse.Namespace) -> bool:
    """Whether --config named a config file on this command line."""
    return getattr(args, "config", None) is not None


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        dest="train.threads",
        type=int,
        metavar="N",
        help="torch CPU threads (0 = all cores; 1 is often faster on a busy machine)",
    )


def add_detector_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """config.toml [detector]'s MTCNN settings as flags (evaluate-frames measures them, import pins them)."""
    p.add_argument("--min-face-size", dest="detector.min_face_size", type=int, metavar="PX")
    p.add_argument("--thresholds", dest="detector.thresholds", type=float, nargs=3, metavar=("P", "R", "O"))
    p.add_argument(
        "--detector-weights",
        dest="detector.weights",
        metavar="FILE",
        help='MTCNN nets from `mask-train fit-detector` ("" = facenet-pytorch\'s own)',
    )


def add_engine_device_argument(p: argparse.ArgumentParser) -> None:
    """--device of the commands that run model files (evaluate, predict, eda): engine.device."""
    p.add_argument("--device", dest="engine.device", choices=choices_of("engine.device"))


def add_export_flags(p: argparse.ArgumentParser, formats) -> None:
    """The flags of the [export] settings that these engines.formats rows' exporters read (each once), with
    the suffixes that read it in its help. Each sets `export.KEY` for this run."""
    seen: dict[str, list[str]] = {}
    options = {}
    for fmt in formats:
        for opt in fmt.options:
            options.setdefault(opt.flag, opt)
            seen.setdefault(opt.flag, []).append(fmt.suffix)
    for flag, opt in options.items():
        where = "" if len(formats) == 1 else f"; {' '.join(seen[flag])} only"
        common = dict(
            dest=f"export.{opt.key}", default=None, help=f"{opt.help} (default: [export] {opt.key}{where})"
        )
        if opt.kind == "bool":
            p.add_argument(flag, action=_BOOL, **common)
        else:
            p.add_argument(flag, type=int if opt.kind == "int" else str, metavar=opt.metavar or "X", **common)


def export_flags_given(args: argparse.Namespace, formats) -> dict[str, str]:
    """{flag: dest} of the export flags given on this command line, among these rows' options."""
    return {
        opt.flag: f"export.{opt.key}"
        for fmt in formats
        for opt in fmt.options
        if getattr(args, f"export.{opt.key}", None) is not None
    }


def expect_suffix(out: Path, suffix: str, other: str) -> None:
    """--out of an export command must name the format that command writes; `other` says where the rest go."""
    if out.suffix.lower() != suffix:
        raise UserError(
            f"--out {out}: expected a {suffix} file (got {out.suffix or 'no suffix'!r}); "
            f"for another format use {other}"
        )
