"""Data feeding: the Dataset (one sample and its transform) kept apart from the DataLoader (batching,
workers, memory pinning, sampling), whose settings come from config.toml [data] in one place: make_loader.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from engines.errors import UserError
from engines.labels import NUM_CLASSES
from train.config import DataConfig
from train.data.cache import read_crop


class CropDataset(Dataset):
    """Face crops on disk -> (input tensor [3, H, W], class index)."""

    def __init__(
        self, paths: Sequence[Path], targets: Sequence[int], transform: Callable[[np.ndarray], np.ndarray]
    ):
        if len(paths) != len(targets):
            raise ValueError("paths and targets differ in length")
        self.paths = [str(p) for p in paths]
        self.targets = [int(t) for t in targets]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> np.ndarray:
        return read_crop(self.paths[i])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.transform(self.load(i))), self.targets[i]


class EpochSampler(Sampler[int]):
    """Shuffled (or class-weighted, with replacement) indices, re-drawn each epoch from seed + epoch, and
    split between DDP ranks with the same count on every rank (a rank with one batch fewer would hang)."""

    def __init__(
        self,
        n: int,
        *,
        weights: Sequence[float] | None = None,
        shuffle: bool = True,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
    ) -> None:
        self.n, self.shuffle, self.rank, self.world, self.seed = n, shuffle, rank, world, seed
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.epoch = 0
        self.per_rank = math.ceil(n / world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        total = self.per_rank * self.world
        if self.weights is not None:
            idx = torch.multinomial(self.weights, total, replacement=True, generator=g).tolist()
        else:
            idx = torch.randperm(self.n, generator=g).tolist() if self.shuffle else list(range(self.n))
            idx += idx[: total - self.n]  # pad by wrapping so every rank gets per_rank items
        return idx[self.rank :: self.world]

    def __iter__(self):
        return iter(self.indices())

    def __len__(self) -> int:
        return self.per_rank


def class_weights(targets: Sequence[int], num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Per-sample weights 1/count(class): every class drawn equally often (the >=60 group is scarce)."""
    t = np.asarray(targets, dtype=np.int64)  # partial-label codes (>= 18) count as their own classes
    counts = np.bincount(t, minlength=num_classes).astype(np.float64)
    return 1.0 / counts[t]


def source_weights(spec: Sequence[str]) -> dict[str, float]:
    """config data.source_weights ("NAME=WEIGHT", ...) -> {name: weight}; a malformed entry is a UserError."""
    out = {}
    for item in spec:
        name, sep, value = str(item).partition("=")
        try:
            weight = float(value) if sep and name.strip() else -1.0
        except ValueError:
            weight = -1.0
        if weight < 0:
            raise UserError(f"data.source_weights: {item!r} is not NAME=WEIGHT with a weight >= 0")
        out[name.strip()] = weight
    return out


def sample_weights(samples: Sequence, targets: Sequence[int], cfg: DataConfig) -> np.ndarray | None:
    """Drawing weight per training image: its source's weight (data.source_weights), times 1/class count
    with data.weighted_sampler. None (a plain shuffle) when neither applies."""
    per_source = source_weights(cfg.source_weights)
    if not cfg.weighted_sampler and all(per_source.get(s.source, 1.0) == 1.0 for s in samples):
        return None
    w = np.array([per_source.get(s.source, 1.0) for s in samples], np.float64)
    if cfg.weighted_sampler:
        w = w * class_weights(targets)
    if not np.any(w > 0):
        raise UserError("data.source_weights: every training image has weight 0")
    return w


def _seed_worker(worker_id: int) -> None:
    """Each worker (and each epoch's workers) gets its own augmentation stream, derived from torch's seed."""
    info = torch.utils.data.get_worker_info()
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    transform = getattr(info.dataset, "transform", None)
    if hasattr(transform, "set_seed"):
        transform.set_seed(seed)


def worker_message(exc: BaseException) -> str:
    """The user's one line inside torch's re-raised worker error ('Caught UserError in DataLoader worker
    process 0. Original Traceback ...'), whose last line is 'engines.errors.UserError: <the message>'."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    cls = type(exc)
    for prefix in (f"{cls.__module__}.{cls.__qualname__}: ", f"{cls.__qualname__}: "):
        if last.startswith(prefix):
            return last[len(prefix) :]
    return last


class Loader(DataLoader):
    """A DataLoader whose workers' user errors (an unreadable cached crop) reach the user as their own one
    line, as they do with num_workers=0; any other exception from a worker keeps torch's traceback. After
    either, the workers are ended at once."""

    def __iter__(self):
        batches = super().__iter__()
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except UserError as exc:
                self._stop_workers(batches)
                raise _same_kind(exc, worker_message(exc)) from None
            except Exception:
                self._stop_workers(batches)
                raise
            yield batch

    def _stop_workers(self, batches) -> None:
        """End the workers now: left to the garbage collector (the exception's traceback keeps the iterator
        alive), torch's shutdown of a failed iterator waits its 5 s status interval."""
        stop = getattr(batches, "_shutdown_workers", None)
        if stop is not None:
            stop()
        if self._iterator is batches:  # persistent workers: the next epoch starts new ones
            self._iterator = None


def _same_kind(exc: UserError, message: str) -> UserError:
    try:
        return type(exc)(message)
    except TypeError:  # a subclass with another constructor
        return UserError(message)


def make_loader(
    dataset: Dataset,
    cfg: DataConfig,
    *,
    train: bool,
    sampler: Sampler | None = None,
    device_type: str = "cpu",
    batch_size: int | None = None,
    num_workers: int | None = None,
) -> DataLoader:
    """Every DataLoader of the project is made here, from config.toml [data]."""
    bs = batch_size or cfg.batch_size
    workers = cfg.num_workers if num_workers is None else num_workers
    n = len(sampler) if sampler is not None else len(dataset)
    kwargs: dict = {}
    if workers > 0:
        kwargs = {
            "persistent_workers": cfg.persistent_workers,
            "prefetch_factor": cfg.prefetch_factor,
            "worker_init_fn": _seed_worker,
        }
    return Loader(
        dataset,
        batch_size=bs,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        pin_memory=cfg.pin_memory and device_type == "cuda",
        # a last training batch of one sample would make BatchNorm fail
        drop_last=train and n % bs == 1 and n > 1,
        **kwargs,
    )
