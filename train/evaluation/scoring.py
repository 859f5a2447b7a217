"""The scoring behind `mask-train evaluate`: macro F1 (18 classes and per task), accuracy and the
confusion matrix of one model or an ensemble (any model file: .pt, .onnx, .engine), on the prepared
training images.

By default a .pt from `fit` is scored on its own validation people (the split travels in the checkpoint), an
ensemble on the people that every one of its models held out (none in common, as with kfold's folds, is an
error: their fair score is kfold's out-of-fold one); `--split all` scores every prepared image (of another
data set, say). Truth is the competition's label (age >= 60), whatever threshold the model was trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import UserError
from engines.fileio import atomic_write_json
from engines.labels import NUM_CLASSES, class_names
from train.config import Config
from train.data.cache import read_crop
from train.data.layout import COMPETITION_AGE_THRESHOLD
from train.data.prepare import ensure_prepared
from train.evaluation.inference import ensemble_probs, geometry_warnings, load_models
from train.measures.calibration import mask_ece, mask_reliability
from train.measures.metrics import summarize
from train.measures.plots import confusion_image, reliability_image, save_png
from train.progress import err_console, task
from train.runfiles import save_npz


def saved_split(path: str | Path) -> list[str] | None:
    """The validation people a .pt checkpoint from `fit` was validated on; None for other files."""
    if Path(path).suffix.lower() != ".pt":
        return None
    from engines.backends.torch_backend import load_checkpoint

    people = (load_checkpoint(Path(path))[1].get("split") or {}).get("val_people")
    return list(people) if people else None


def select(samples: Sequence, split: str, models: Sequence[str | Path]) -> tuple[list, str]:
    """The samples to score and their description. An ensemble is scored on the people that EVERY model held
    out: the folds of `kfold` each trained on the others' validation people, so one model's split would
    leak."""
    if split == "all":
        return list(samples), "all prepared images"
    splits = [saved_split(m) for m in models]
    missing = [m for m, people in zip(models, splits) if people is None]
    if split == "auto" and len(missing) == len(models):
        return list(samples), "all prepared images"
    if missing and len(models) == 1:
        raise UserError(
            f"{missing[0]} carries no validation split (only .pt files from `fit` do): use --split all"
        )
    if missing:
        raise UserError(
            f"{missing[0]} carries no validation split (only .pt files from `fit` do), so the ensemble has "
            f"no people that every model held out: use --split all, or kfold's out-of-fold score "
            f"(kfold.json)"
        )
    people = set.intersection(*(set(p) for p in splits))
    if not people:
        raise UserError(
            f"the {len(models)} models have no validation people in common (each held out other people, "
            f"as kfold's folds do): see kfold's out-of-fold score (kfold.json), or use --split all"
        )
    chosen = [s for s in samples if s.person in people]
    if not chosen:
        raise UserError(f"none of {models[0]}'s validation people are in this cache: use --split all")
    if len(models) == 1:
        return chosen, f"validation people of {Path(models[0]).name} ({len(people)})"
    return chosen, f"validation people that all {len(models)} models held out ({len(people)})"


def score_samples(
    engines: Sequence, samples: Sequence, tta: bool, batch_size: int, show: bool = True
) -> np.ndarray:
    """[N, 18] ensemble probabilities over the samples' cached crops, chunk by chunk."""

    out = []
    with task("evaluate", len(samples), show) as t:
        for i in range(0, len(samples), batch_size):
            crops = [read_crop(s.crop) for s in samples[i : i + batch_size]]
            out.append(ensemble_probs(engines, [crops] * len(engines), tta, batch_size))
            t.advance(len(crops))
    return np.concatenate(out) if out else np.zeros((0, NUM_CLASSES), np.float32)


def evaluate(
    cfg: Config,
    models: Sequence[str],
    *,
    split: str = "auto",
    tta: bool = False,
    data_given: bool = True,
    show: bool = True,
) -> dict[str, Any]:
    engines = load_models(models, cfg.engine.device, cfg.engine.threads)
    cache, samples = ensure_prepared(cfg, data_given, show)
    chosen, what = select(samples, split, models)
    for w in geometry_warnings(engines, cache.crop_config()):
        err_console.print(f"[yellow]warning:[/] {w}")
    temperature = engines[0].temperature if len(engines) == 1 else {}
    probs = raw = score_samples(engines, chosen, tta, cfg.data.batch_size, show)
    if temperature:  # one calibrated model: its raw probabilities too, for the ECE before calibration
        engines[0].temperature = {}
        raw = score_samples(engines, chosen, tta, cfg.data.batch_size, show)
        engines[0].temperature = temperature
    targets = np.array([s.cls(COMPETITION_AGE_THRESHOLD) for s in chosen], np.int64)
    result = summarize(probs, targets)
    result.update(calibration_summary(probs, raw if temperature else None, targets, temperature))
    result.update(
        models=[str(m) for m in models],
        images=what,
        tta=tta,
        keys=[s.key for s in chosen],
        probs=probs,
        targets=targets,
    )
    return result


def calibration_summary(
    probs: np.ndarray, raw: np.ndarray | None, targets: np.ndarray, temperature: dict[str, float]
) -> dict[str, Any]:
    """ECE (15 bins) of the mask state's top probability as scored and, for a calibrated model, before its
    temperature; the reliability bins of both for the diagram."""
    out: dict[str, Any] = {
        "temperature": dict(temperature),
        "ece_mask": round(mask_ece(probs, targets), 5),
        "reliability": {k: v.tolist() for k, v in mask_reliability(probs, targets).items()},
    }
    if raw is not None:
        out["ece_mask_uncalibrated"] = round(mask_ece(raw, targets), 5)
        out["reliability_uncalibrated"] = {k: v.tolist() for k, v in mask_reliability(raw, targets).items()}
    return out


def write_report(report_dir: Path, result: dict[str, Any]) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    plain = {k: v for k, v in result.items() if k not in ("keys", "probs", "targets")}
    before = result.get("reliability_uncalibrated")
    name = Path(result["models"][0]).name
    save_png(
        report_dir / "reliability.png",
        reliability_image(
            result["reliability"],
            before,
            f"{name}: mask state, ECE {100 * result['ece_mask']:.1f}%"
            + (f" (uncalibrated {100 * result['ece_mask_uncalibrated']:.1f}%)" if before else ""),
        ),
    )
    atomic_write_json(report_dir / "metrics.json", plain)
    title = f"{Path(result['models'][0]).name}{' +TTA' if result['tta'] else ''}: macro F1 {result['f1']:.3f}"
    save_png(
        report_dir / "confusion.png", confusion_image(np.asarray(result["confusion"]), class_names(), title)
    )
    save_npz(
        report_dir / "predictions.npz",
        keys=np.array(result["keys"]),
        targets=result["targets"],
        probs=result["probs"],
    )
