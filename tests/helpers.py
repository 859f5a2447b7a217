"""Helpers for tests: model files with random but non-trivial weights; augmentations one by one."""

from __future__ import annotations

from pathlib import Path

# every random augmentation of [augment] at probability 0 (`surroundings` keeps its default)
AUGMENT_OFF = dict(
    hflip=0,
    shift_scale_rotate=0,
    color=0,
    blur=0,
    noise=0,
    jpeg=0,
    dropout=0,
    box_jitter=0,
    crowd=0,
    small_face=0,
)


def augment_only(**on):
    """An AugmentConfig with every augmentation off except those given (e.g. `hflip=1.0`)."""
    from train.config import AugmentConfig

    return AugmentConfig(**{**AUGMENT_OFF, **on})


# What a finished `fit` run folder holds (a single process and DDP alike)
RUN_FILES = (
    "best.pt",
    "last.pt",
    "config.toml",
    "metrics.jsonl",
    "split.json",
    "confusion.png",
    "val_metrics.json",
    "val_predictions.npz",
)


def randomize_(model, seed: int = 0, input_size: tuple[int, int] = (128, 96)) -> None:
    """Make a fresh network's output depend on its input, so numerical comparisons mean something.

    torchvision's fresh init gives BatchNorm statistics (0, 1) that do not match the activations, and the
    outputs come out nearly the same for every input: a broken exporter could pass. Calibrating the
    statistics on random images and spreading the head's weights fixes that.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration batches
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
        model.train()
        for _ in range(3):
            model(torch.randn(8, 3, *input_size, generator=g))
        model.eval()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 0.1
            elif isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features**0.5 * 3)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)


def make_checkpoint(
    path: Path,
    arch: str = "mobilenet_v2",
    head: str = "single",
    input_size: tuple[int, int] = (128, 96),
    seed: int = 0,
) -> Path:
    import torch

    from engines.contract import ModelMeta
    from engines.models import create_model

    torch.manual_seed(seed)
    model = create_model(arch, head, pretrained=False)
    randomize_(model, seed, input_size)
    meta = ModelMeta(
        arch=arch,
        head=head,
        input_height=input_size[0],
        input_width=input_size[1],
        extra={"note": "random weights for tests"},
    )
    torch.save({"meta": meta.to_dict(), "model": model.state_dict()}, path)
    return path
