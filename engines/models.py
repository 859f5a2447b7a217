"""The classifier networks: a torchvision backbone with one 18-way head or three task heads.

Lives in `engines` because both sides need it: `train` builds and trains it, the PyTorch backend rebuilds
it from a checkpoint. `InferenceModel` is what every exported file computes: probabilities over 18 classes.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from engines.errors import UserError
from engines.labels import NUM_CLASSES, TASK_SIZES

# output units per head; multi: one head per task of engines.labels.TASKS (mask, gender, age), in that order
HEAD_SIZES = {"single": (NUM_CLASSES,), "multi": tuple(TASK_SIZES.values())}


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = (name, module)
    if last is None:
        raise UserError(f"architecture {type(model).__name__} has no Linear classifier layer to replace")
    return last


def _set_module(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent = model
    *path, leaf = dotted.split(".")
    for part in path:
        parent = getattr(parent, part)
    setattr(parent, leaf, new)


def available_archs() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _weights(arch: str):
    """ImageNet weights: IMAGENET1K_V1 where it exists (the file shipped for offline use), else the
    default."""
    enum = torchvision.models.get_model_weights(arch)
    return getattr(enum, "IMAGENET1K_V1", None) or enum.DEFAULT


def create_model(
    arch: str = "mobilenet_v2",
    head: str = "single",
    pretrained: bool = False,
    dropout: float = 0.2,
    freeze_backbone: bool = False,
) -> nn.Module:
    """A torchvision classifier whose last Linear layer is replaced by our head; outputs logits.

    Single head: [N, 18]. Multi head: [N, 8] = mask(3) | gender(2) | age(3) logits side by side.
    """
    if head not in HEAD_SIZES:
        raise UserError(f"model.head must be 'single' or 'multi', got {head!r}")
    if arch not in available_archs():
        raise UserError(
            f"model.arch {arch!r} is not a torchvision classification model "
            f"(e.g. mobilenet_v2, mobilenet_v3_small, resnet18, efficientnet_b0)"
        )
    weights = None
    if pretrained:
        weights = _weights(arch)
    try:
        model = torchvision.models.get_model(arch, weights=weights)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError: offline with no cached file
        raise UserError(
            f"cannot load ImageNet weights for {arch} ({exc.__class__.__name__}: {exc}); "
            f"put the file under $TORCH_HOME/hub/checkpoints or set model.pretrained = false"
        ) from None
    name, linear = _last_linear(model)
    if freeze_backbone:
        for p in model.parameters():
            p.requires_grad_(False)
    new_head = nn.Linear(linear.in_features, sum(HEAD_SIZES[head]))
    _set_module(model, name, new_head)
    # Dropout just before the head, where torchvision put one (mobilenets, efficientnets); else add none.
    parent_name = name.rpartition(".")[0]
    if parent_name:
        parent = model.get_submodule(parent_name)
        for m in parent.modules():
            if isinstance(m, nn.Dropout):
                m.p = dropout
    return model


def realistic_batchnorm(model: nn.Module, size: tuple[int, int]) -> None:
    """Give a freshly initialised network the activation scale of a trained one.

    With torchvision's initial BatchNorm statistics (mean 0, var 1) the activations of a fresh network shrink
    layer after layer into denormal floats, which run tens of times slower on a CPU in PyTorch (not in ONNX
    Runtime): the benchmark would time an artefact. Statistics measured on a few random batches fix that.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a plain average over the batches below
    g = torch.Generator().manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, *size, generator=g))
    model.eval()
    for bn in bns:
        bn.momentum = 0.1


def split_logits(logits: torch.Tensor, head: str) -> tuple[torch.Tensor, ...]:
    return tuple(torch.split(logits, HEAD_SIZES[head], dim=1))


def probabilities(logits: torch.Tensor, head: str) -> torch.Tensor:
    """Logits -> [N, 18] class probabilities; for three heads p(class) = p(mask) p(gender) p(age)."""
    if head == "single":
        return torch.softmax(logits, dim=1)
    pm, pg, pa = (torch.softmax(t, dim=1) for t in split_logits(logits, head))
    joint = pm[:, :, None, None] * pg[:, None, :, None] * pa[:, None, None, :]  # [N, *TASK_SIZES.values()]
    # row-major flattening is engines.labels.encode's order: the inverse of the reshape in labels.marginals
    return joint.reshape(logits.shape[0], NUM_CLASSES)


class InferenceModel(nn.Module):
    """Normalised images [N, 3, H, W] -> probabilities [N, 18]: the function every model file computes."""

    def __init__(self, model: nn.Module, head: str) -> None:
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return probabilities(self.model(images), self.head)
