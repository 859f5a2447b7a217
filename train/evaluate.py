"""`mask-train evaluate`: macro F1 (18 classes and per task), accuracy and the confusion matrix of one model
or an ensemble (any model file: .pt, .onnx, .engine), on the prepared training images.

By default a .pt from `fit` is scored on its own validation people (the split travels in the checkpoint), an
ensemble on the people that every one of its models held out (none in common, as with kfold's folds, is an
error: their fair score is kfold's out-of-fold one); `--split all` scores every prepared image (of another
data set, say). Truth is the competition's label (age >= 60), whatever threshold the model was trained with.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engines.config import Config
from engines.errors import UserError
from train.cache import read_crop
from train.options import add_data_arguments, add_threads_argument, apply_threads


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", nargs="+", required=True, metavar="MODEL",
                   help="model file(s): .pt, .onnx or .engine; several = an ensemble")
    add_data_arguments(p)
    p.add_argument("--split", choices=("auto", "val", "all"), default="auto",
                   help="auto: the validation people of the checkpoint(s) if they carry them (an ensemble: "
                        "those every model held out), else all images")
    p.add_argument("--tta", action="store_true", help="average over the crop and its mirror image")
    p.add_argument("--report", metavar="DIR", help="where metrics.json and confusion.png go "
                                                   "(default: <model folder>/evaluate-<model name>)")
    p.add_argument("--device", dest="engine.device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--batch-size", dest="data.batch_size", type=int, metavar="N")
    add_threads_argument(p)


def saved_split(path: str | Path) -> list[str] | None:
    """The validation people a .pt checkpoint from `fit` was validated on; None for other files."""
    if Path(path).suffix.lower() != ".pt":
        return None
    from engines.backends.torch_backend import load_checkpoint

    people = (load_checkpoint(Path(path))[1].get("split") or {}).get("val_people")
    return list(people) if people else None


def select(samples: Sequence, split: str, models: Sequence[str | Path]) -> tuple[list, str]:
    """The samples to score and their description. An ensemble is scored on the people that EVERY model held
    out: the folds of `kfold` each trained on the others' validation people, so one model's split would leak."""
    if split == "all":
        return list(samples), "all prepared images"
    splits = [saved_split(m) for m in models]
    missing = [m for m, people in zip(models, splits) if people is None]
    if split == "auto" and len(missing) == len(models):
        return list(samples), "all prepared images"
    if missing and len(models) == 1:
        raise UserError(f"{missing[0]} carries no validation split (only .pt files from `fit` do): use --split all")
    if missing:
        raise UserError(f"{missing[0]} carries no validation split (only .pt files from `fit` do), so the ensemble has "
                        f"no people that every model held out: use --split all, or kfold's out-of-fold score "
                        f"(kfold.json)")
    people = set.intersection(*(set(p) for p in splits))
    if not people:
        raise UserError(f"the {len(models)} models have no validation people in common (each held out other people, "
                        f"as kfold's folds do): see kfold's out-of-fold score (kfold.json), or use --split all")
    chosen = [s for s in samples if s.person in people]
    if not chosen:
        raise UserError(f"none of {models[0]}'s validation people are in this cache: use --split all")
    if len(models) == 1:
        return chosen, f"validation people of {Path(models[0]).name} ({len(people)})"
    return chosen, f"validation people that all {len(models)} models held out ({len(people)})"


def score_samples(engines: Sequence, samples: Sequence, tta: bool, batch_size: int, show: bool = True) -> np.ndarray:
    """[N, 18] ensemble probabilities over the samples' cached crops, chunk by chunk."""
    from train.inference import ensemble_probs
    from train.progress import task

    out = []
    with task("evaluate", len(samples), show) as t:
        for i in range(0, len(samples), batch_size):
            crops = [read_crop(s.crop) for s in samples[i:i + batch_size]]
            out.append(ensemble_probs(engines, [crops] * len(engines), tta, batch_size))
            t.advance(len(crops))
    return np.concatenate(out) if out else np.zeros((0, 18), np.float32)


def evaluate(cfg: Config, models: Sequence[str], *, split: str = "auto", tta: bool = False,
             data_given: bool = True, show: bool = True) -> dict[str, Any]:
    from train.inference import geometry_warnings, load_models
    from train.layout import COMPETITION_AGE_THRESHOLD
    from train.metrics import summarize
    from train.prepare import ensure_prepared
    from train.progress import err_console

    engines = load_models(models, cfg.engine.device, cfg.engine.threads)
    cache, samples = ensure_prepared(cfg, data_given, show)
    chosen, what = select(samples, split, models)
    for w in geometry_warnings(engines, cache.crop_config()):
        err_console.print(f"[yellow]warning:[/] {w}")
    probs = score_samples(engines, chosen, tta, cfg.data.batch_size, show)
    targets = np.array([s.cls(COMPETITION_AGE_THRESHOLD) for s in chosen], np.int64)
    result = summarize(probs, targets)
    result.update(models=[str(m) for m in models], images=what, tta=tta,
                  keys=[s.key for s in chosen], probs=probs, targets=targets)
    return result


def write_report(report_dir: Path, result: dict[str, Any]) -> None:
    from engines.fileio import atomic_write_json
    from engines.labels import class_names
    from train.plots import confusion_image, save_png
    from train.runfiles import save_npz

    report_dir.mkdir(parents=True, exist_ok=True)
    plain = {k: v for k, v in result.items() if k not in ("keys", "probs", "targets")}
    atomic_write_json(report_dir / "metrics.json", plain)
    title = f"{Path(result['models'][0]).name}{' +TTA' if result['tta'] else ''}: macro F1 {result['f1']:.3f}"
    save_png(report_dir / "confusion.png", confusion_image(np.asarray(result["confusion"]), class_names(), title))
    save_npz(report_dir / "predictions.npz", keys=np.array(result["keys"]), targets=result["targets"],
             probs=result["probs"])


def print_result(result: dict[str, Any]) -> None:
    from rich.table import Table

    from engines.labels import class_names
    from train.progress import console

    t = Table(title=f"{', '.join(Path(m).name for m in result['models'])} on {result['images']}"
                    f"{' with TTA' if result['tta'] else ''}: {result['n']} images")
    for col in ("metric", "value"):
        t.add_column(col, justify="right" if col == "value" else "left")
    for key in ("acc", "f1", "f1_mask", "f1_gender", "f1_age", "acc_mask", "acc_gender", "acc_age"):
        t.add_row(key.replace("f1", "macro F1").replace("acc", "accuracy").replace("_", " "), f"{result[key]:.4f}")
    console.print(t)
    per = Table(title="F1 per class (- = not in truth or predictions)")
    per.add_column("class")
    per.add_column("F1", justify="right")
    per.add_column("support", justify="right")
    support = np.asarray(result["confusion"]).sum(axis=1)
    for i, (name, f1) in enumerate(zip(class_names(), result["per_class_f1"])):
        per.add_row(f"{i:2d} {name}", "-" if f1 is None else f"{f1:.3f}", str(int(support[i])))
    console.print(per)


def run(args: argparse.Namespace, cfg: Config) -> int:
    from train.progress import console
    from train.runfiles import check_output_dir

    first = Path(args.checkpoint[0])
    report_dir = check_output_dir(args.report or first.parent / f"evaluate-{first.stem}", "--report")
    apply_threads(cfg)
    result = evaluate(cfg, args.checkpoint, split=args.split, tta=args.tta,
                      data_given=getattr(args, "data.data_dir") is not None)
    write_report(report_dir, result)
    print_result(result)
    console.print(f"report: {report_dir}")
    return 0
