"""The training run behind `fit` and each fold of `kfold`: build, train epoch by epoch, validate, keep
best.pt / last.pt, metrics.jsonl and the confusion matrix. Works alone or as one DDP rank."""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines.calibration import apply_temperature
from engines.contract import CKPT_META, ModelMeta
from engines.errors import UserError
from engines.fileio import atomic_write_json
from engines.labels import TASK_NAMES, class_names
from engines.models import create_model
from train.config import Config
from train.data.augment import EvalTransform, TrainTransform
from train.data.cache import Cache, Sample
from train.data.dataset import CropDataset, EpochSampler, make_loader, sample_weights
from train.data.layout import COMPETITION_AGE_THRESHOLD
from train.data.targets import is_full, split_targets
from train.fitting import checkpoint as ckpt_io
from train.fitting.calibration import fit_temperatures
from train.fitting.distributed import Dist
from train.fitting.init_from import Parent
from train.fitting.loop import make_scaler, predict_loader, train_one_epoch
from train.fitting.losses import build_loss
from train.fitting.optim import (
    build_optimizer,
    build_scheduler,
    current_lr,
    step_scheduler,
    stretch_schedule,
)
from train.measures.calibration import report as calibration_report
from train.measures.metrics import headline, summarize
from train.measures.plots import confusion_image, save_png
from train.progress import console, task
from train.runfiles import save_npz, write_config, write_metrics


@dataclass
class FitResult:
    run_dir: Path
    epochs_done: int
    best: dict[str, Any]
    history: list[dict[str, Any]]


RANK_SEED_STRIDE = 1_000_003  # > any epoch count: (epoch, rank) pairs never share a seed


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one rank's augmentation and dropout streams in one epoch (rank 0: seed + epoch, as a single
    process always had). DDP ranks must not draw the same augmentations and dropout masks."""
    return seed + epoch + rank * RANK_SEED_STRIDE


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    def __init__(
        self,
        cfg: Config,
        cache: Cache,
        samples: list[Sample],
        val_people: set[str],
        run_dir: Path,
        dist: Dist,
        show: bool = True,
        parent: Parent | None = None,
    ) -> None:
        self.cfg, self.cache, self.run_dir, self.dist = cfg, cache, run_dir, dist
        # --init-from: the model this run fine-tunes (its hash goes into every checkpoint's metadata)
        self.parent_info: dict[str, str] = parent.extra() if parent else {}
        self.show = show and dist.main
        self.device = dist.device
        self.val_people = sorted(val_people)
        self.train_samples = [s for s in samples if s.person not in val_people]
        self.val_samples = [s for s in samples if s.person in val_people]
        if not self.train_samples:
            raise UserError("no training images left after the validation split; lower data.val_fraction")
        seed_everything(cfg.train.seed)
        self._build_data()
        self._build_model()
        if parent is not None:
            self._load_parent(parent)
        self.start_epoch, self.history = 0, []
        self.temperature: dict[str, float] = {}  # fitted on the latest validation (train.calibrate)
        self.saved_epoch: int | None = None  # epoch count of the end-of-epoch last.pt now in run_dir, if any
        # best.pt is chosen by validation macro F1 (ties: the lower validation loss); without a validation
        # set, by the training loss
        self.best: dict[str, Any] = {
            "epoch": 0,
            "score": None,
            "loss": None,
            "metric": f"val_{cfg.train.best_metric}" if self.val_samples else "-train_loss",
        }

    # --- building ---------------------------------------------------------------------------------------
    def _build_data(self) -> None:
        m, d = self.cfg.model, self.cfg.data
        size = (m.input_height, m.input_width)
        targets = [s.cls(d.age_old_threshold) for s in self.train_samples]
        if m.head == "single" and not all(is_full(np.array(targets))):
            raise UserError(
                "some training images lack gender or age (imported photos): they need model.head = 'multi' "
                "(its loss skips a missing task); an 18-way head cannot learn from them"
            )
        self.train_ds = CropDataset(
            [s.crop for s in self.train_samples],
            targets,
            TrainTransform(size, m.mean, m.std, self.cfg.augment, crop=self.cache.crop_config()),
        )
        weights = sample_weights(self.train_samples, targets, d)
        self.sampler = EpochSampler(
            len(self.train_ds),
            weights=weights,
            rank=self.dist.rank,
            world=self.dist.world,
            seed=self.cfg.train.seed,
        )
        self.train_loader = make_loader(
            self.train_ds, d, train=True, sampler=self.sampler, device_type=self.device.type
        )
        val_targets = [s.cls(COMPETITION_AGE_THRESHOLD) for s in self.val_samples]
        val_ds = CropDataset(
            [s.crop for s in self.val_samples], val_targets, EvalTransform(size, m.mean, m.std)
        )
        shard = torch.utils.data.Subset(val_ds, range(self.dist.rank, len(val_ds), self.dist.world))
        self.val_loader = (
            make_loader(
                shard, d, train=False, device_type=self.device.type, num_workers=min(d.num_workers, 1)
            )
            if len(val_ds)
            else None
        )
        self.val_targets = np.asarray(val_targets, np.int64)

    def _build_model(self) -> None:

        m, t = self.cfg.model, self.cfg.train
        model = create_model(m.arch, m.head, m.pretrained, m.dropout, m.freeze_backbone).to(self.device)
        self.model = self.dist.wrap(model)
        self.loss_fn = build_loss(t, m.head)
        self.optimizer = build_optimizer(model, t)
        self.scheduler = build_scheduler(self.optimizer, t)
        self.amp = t.amp and self.device.type == "cuda"
        self.scaler = make_scaler(self.device, self.amp)

    def _load_parent(self, parent: Parent) -> None:
        try:
            ckpt_io.bare(self.model).load_state_dict(parent.weights)
        except RuntimeError as exc:
            detail = (str(exc).strip().splitlines() or [""])[0][:200]
            raise UserError(
                f"--init-from {parent.path}: its weights do not fit this network ({detail})"
            ) from None

    # --- resume -----------------------------------------------------------------------------------------
    def restore(self, state: dict[str, Any]) -> None:
        """Weights, optimizer, schedule and scaler of a checkpoint; one that does not fit is a UserError."""
        source = state.get("source", "the checkpoint to resume")
        try:
            ckpt_io.bare(self.model).load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler"):
                self.scheduler.load_state_dict(state["scheduler"])
            if self.amp and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            detail = (str(exc).strip().splitlines() or [""])[0][:200]
            raise UserError(
                f"{source}: cannot resume from it, its model or optimizer state does not fit this run "
                f"({type(exc).__name__}: {detail})"
            ) from None
        for (
            group
        ) in self.optimizer.param_groups:  # another optimizer's groups load, then fail at the first step
            missing = sorted(set(self.optimizer.defaults) - set(group))
            if missing:
                raise UserError(
                    f"{source}: cannot resume from it, its optimizer state was made by another "
                    f"optimizer (no {', '.join(missing)}); start a new run"
                )
        self.start_epoch = int(state["epoch"])
        saved_extra = (state.get(CKPT_META) or {}).get("extra") or {}
        self.parent_info = {k: saved_extra[k] for k in ("parent", "parent_sha256") if k in saved_extra}
        if Path(source).resolve() == (self.run_dir / "last.pt").resolve():
            self.saved_epoch = self.start_epoch  # that last.pt is already the clean state a Ctrl-C would save
        # a run extended with --epochs anneals over its new length
        stretch_schedule(self.scheduler, self.optimizer, self.cfg.train.epochs, self.start_epoch)
        self.history = [h for h in state.get("metrics", []) if h.get("epoch", 0) <= self.start_epoch]
        self.best = dict(state.get("best") or self.best)

    # --- one epoch --------------------------------------------------------------------------------------
    def _train_epoch(self, epoch: int):
        self.sampler.set_epoch(epoch)
        # DataLoader workers derive their seeds from torch's; the sampler keeps seed + epoch, shared by the
        # ranks
        seed = epoch_seed(self.cfg.train.seed, epoch, self.dist.rank)
        torch.manual_seed(seed)
        self.train_ds.transform.set_seed(seed)
        total = len(self.train_loader)
        with task(f"epoch {epoch + 1}/{self.cfg.train.epochs}", total, self.show) as t:
            stats = train_one_epoch(
                self.model,
                self.train_loader,
                self.loss_fn,
                self.optimizer,
                device=self.device,
                scaler=self.scaler,
                accumulate=self.cfg.train.accumulate,
                amp=self.amp,
                on_batch=lambda n, loss: t.advance(1, f"loss {loss:.3f}"),
                mixing=self.cfg.augment,
            )
        loss_sum, n = self.dist.sum([stats.loss_sum, float(stats.n)])
        return loss_sum / max(n, 1), stats.seconds, int(n)

    def _validate(self) -> tuple[np.ndarray, float] | None:
        """Each rank scores its share of the validation set; the shares are put back in order."""
        if self.val_loader is None:
            return None
        self.dist.sync_buffers(self.model)
        probs, _, loss = predict_loader(
            ckpt_io.bare(self.model),
            self.val_loader,
            self.cfg.model.head,
            device=self.device,
            amp=self.amp,
            loss_fn=self.loss_fn,
        )
        parts = self.dist.gather((probs, loss * len(probs)))
        full = np.zeros((len(self.val_targets), probs.shape[1]), np.float32)
        for r, (p, _) in enumerate(parts):
            full[r :: self.dist.world] = p
        return full, sum(loss for _, loss in parts) / max(len(full), 1)

    def _record(self, epoch: int, train_loss: float, seconds: float, n: int, val) -> dict[str, Any]:
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": round(train_loss, 5),
            "lr": current_lr(self.optimizer),
            "seconds": round(seconds, 2),
            "images": n,
            "images_per_s": round(n / max(seconds, 1e-9), 1),
            "world_size": self.dist.world,
        }
        if val is not None:
            probs, val_loss = val
            scores = summarize(probs, self.val_targets)
            row.update(
                val_loss=round(val_loss, 5),
                **{f"val_{k}": v for k, v in headline(scores).items()},
                # validation samples behind each score (partial labels: a task may have none)
                val_support={"all": scores["n"], **{t: scores[f"n_{t}"] for t in TASK_NAMES}},
            )
        self.history.append(row)
        return row

    # --- files ------------------------------------------------------------------------------------------
    def meta(self, epoch: int, row: dict[str, Any] | None = None, **extra: Any) -> ModelMeta:
        m = self.cfg.model
        data = Path((self.cache.info() or {}).get("data_dir") or "").name  # None: a cache of imports only
        info = {
            "epoch": epoch,
            "run": self.run_dir.name,
            "data": data,
            "written_by_rank": self.dist.rank,
            "ddp": self.ddp_info(),
            "train_images": len(self.train_samples),
            "val_images": len(self.val_samples),
            "val_people": len(self.val_people),
            "seconds_per_epoch": row.get("seconds") if row else None,
            **self.parent_info,
            **extra,
        }
        if row:
            info.update(
                {
                    k: row[k]
                    for k in ("val_f1", "val_acc", "val_f1_mask", "val_f1_gender", "val_f1_age")
                    if k in row
                }
            )
        return ModelMeta.for_model(
            m,
            self.cache.crop_config(),
            age_old_threshold=self.cfg.data.age_old_threshold,
            extra=info,
            knows=self.knows(),
            temperature=dict(self.temperature),
        )

    def knows(self) -> dict[str, bool]:
        """Per task: learnt from labels? train.known_tasks when given, else: did any image have the label."""
        if self.cfg.train.known_tasks:
            return {t: t in self.cfg.train.known_tasks for t in TASK_NAMES}
        mask, gender, age = (np.asarray(x) for x in split_targets(np.asarray(self.train_ds.targets)))
        return {
            "mask": bool((mask >= 0).any()),
            "gender": bool((gender >= 0).any()),
            "age": bool((age >= 0).any()),
        }

    def ddp_info(self) -> dict[str, Any] | None:
        """How the model was trained across processes (None: one process, no DistributedDataParallel)."""
        if not isinstance(self.model, torch.nn.parallel.DistributedDataParallel):
            return None
        return {"backend": self.dist.backend, "world_size": self.dist.world}

    def save(
        self,
        name: str,
        epoch: int,
        row: dict[str, Any] | None = None,
        *,
        best: dict[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        ckpt_io.save_checkpoint(
            self.run_dir / name,
            meta=self.meta(epoch, row, **extra),
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            epoch=epoch,
            config=self.cfg.to_dict(),
            metrics=self.history,
            best=best or self.best,
            split={"val_people": self.val_people},
        )

    def _write_best(self, epoch: int, row: dict[str, Any], val, best: dict[str, Any]) -> None:
        self.save("best.pt", epoch + 1, row, best=best)
        if val is None:
            return
        m = summarize(val[0], self.val_targets)
        title = f"{self.run_dir.name}: validation, epoch {epoch + 1}, macro F1 {m['f1']:.3f}"
        save_png(
            self.run_dir / "confusion.png", confusion_image(np.asarray(m["confusion"]), class_names(), title)
        )
        save_npz(
            self.run_dir / "val_predictions.npz",
            keys=np.array([s.key for s in self.val_samples]),
            targets=self.val_targets,
            probs=apply_temperature(val[0], self.cfg.model.head, self.temperature),  # what best.pt gives
        )
        atomic_write_json(self.run_dir / "val_metrics.json", {"epoch": epoch + 1, **m})

    def write_start_files(self) -> None:
        if self.dist.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_config(self.run_dir, self.cfg)
            atomic_write_json(self.run_dir / "split.json", {"val_people": self.val_people})

    # --- the run ----------------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        self.write_start_files()
        start = self._schedule_state()
        try:
            for epoch in range(self.start_epoch, self.cfg.train.epochs):
                self._one_epoch(epoch)
        except KeyboardInterrupt:
            # A last.pt written at the end of an epoch (or resumed from) is already consistent and at least as
            # new as anything a Ctrl-C could claim: keep it. Only before the first one is written, save the
            # weights so far as the start epoch, with the schedule and metrics of the start epoch.
            if self.dist.main and self.saved_epoch is None:
                self._save_interrupted(start)
            raise
        return FitResult(self.run_dir, max(self.cfg.train.epochs, self.start_epoch), self.best, self.history)

    def _schedule_state(self) -> tuple[dict[str, Any] | None, list[float]]:
        """The scheduler state and the optimizer's learning rates (the scheduler step changes both)."""
        sched = copy.deepcopy(self.scheduler.state_dict()) if self.scheduler is not None else None
        return sched, [g["lr"] for g in self.optimizer.param_groups]

    def _save_interrupted(self, start: tuple[dict[str, Any] | None, list[float]]) -> None:
        """last.pt as `start_epoch` epochs done: resuming it re-runs the interrupted epoch with the schedule
        where it was (the epoch's scheduler step and metrics row may already have happened)."""
        sched, lrs = start
        if self.scheduler is not None:
            self.scheduler.load_state_dict(sched)
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self.history = [h for h in self.history if h["epoch"] <= self.start_epoch]
        self.save("last.pt", self.start_epoch, self.history[-1] if self.history else None, interrupted=True)

    def _one_epoch(self, epoch: int) -> None:
        train_loss, seconds, n = self._train_epoch(epoch)
        if not math.isfinite(train_loss):  # every rank has the same sum, so every rank stops here
            raise UserError(
                f"training diverged: the training loss is {train_loss} in epoch {epoch + 1} "
                f"(train.lr = {self.cfg.train.lr:g}; try a lower one)"
            )
        start = time.perf_counter()
        val = self._validate()
        row = self._record(epoch, train_loss, seconds, n, val)
        row["val_seconds"] = round(time.perf_counter() - start, 2)
        calibration = self._calibrate(val, row)
        score = row.get(f"val_{self.cfg.train.best_metric}", -train_loss)
        loss = row.get("val_loss", train_loss)
        step_scheduler(self.scheduler, row.get(f"val_{self.cfg.train.best_metric}"))
        improved = self._improves(score, loss)
        best = {**self.best, "score": score, "loss": loss, "epoch": epoch + 1} if improved else self.best
        if improved and calibration:
            best["calibration"] = calibration
        if self.dist.main:
            write_metrics(self.run_dir, self.history)
            if improved:
                self._write_best(epoch, row, val, best)
        self.best = best  # only now: a Ctrl-C while best.pt is written must not record it as written
        if self.dist.main:
            self.save("last.pt", epoch + 1, row)
        self.saved_epoch = epoch + 1
        if self.dist.main:
            console.print(epoch_line(row, self.cfg.train.epochs, improved))
        self.dist.barrier()

    def _calibrate(self, val, row: dict[str, Any]) -> dict[str, Any] | None:
        """The temperature of this epoch's checkpoints, fitted on its validation probabilities
        (train.calibrate; the same on every rank), and the mask ECE before and after into the metrics row."""
        if val is None or not self.cfg.train.calibrate:
            self.temperature = {}
            return None
        head = self.cfg.model.head
        self.temperature = fit_temperatures(val[0], self.val_targets, head, self.knows())
        rep = calibration_report(val[0], self.val_targets, head, self.temperature)
        row.update(
            temperature=rep["temperature"],
            val_ece_mask=rep["ece_mask"],
            val_ece_mask_calibrated=rep["ece_mask_calibrated"],
        )
        return rep

    def _improves(self, score: float, loss: float) -> bool:
        """Higher score wins; an equal score (common once validation F1 reaches 1.0) needs a lower loss."""
        best, best_loss = self.best["score"], self.best.get("loss")
        if best is None or score > best:
            return True
        return score == best and best_loss is not None and loss < best_loss


def _score(row: dict[str, Any], key: str, support: str) -> str:
    """A validation score, or '-' where no validation sample has that label (partial labels)."""
    return "-" if row.get("val_support", {}).get(support) == 0 else f"{row[key]:.3f}"


def epoch_line(row: dict[str, Any], epochs: int, improved: bool) -> str:
    text = f"epoch {row['epoch']}/{epochs}  loss {row['train_loss']:.4f}"
    if "val_f1" in row:
        text += (
            f"  val loss {row['val_loss']:.4f}  acc {_score(row, 'val_acc', 'all')}"
            f"  F1 {_score(row, 'val_f1', 'all')} (mask {_score(row, 'val_f1_mask', 'mask')}"
            f" gender {_score(row, 'val_f1_gender', 'gender')} age {_score(row, 'val_f1_age', 'age')})"
        )
    text += (
        f"  {row['seconds']:.1f} s/epoch ({row['images_per_s']:.0f} img/s, "
        f"validation {row['val_seconds']:.1f} s)"
        f"  lr {row['lr']:.2e}"
    )
    return text + ("  [green]best[/]" if improved else "")
