import pytest
import torch
import torch.nn.functional as F

from engines.config import ConfigError, with_overrides
from engines.labels import split_classes
from train.config import Config, TrainConfig, choices_of
from train.fitting.losses import LOSSES, TaskLoss, build_loss, soft_focal_loss
from train.fitting.optim import (
    build_optimizer,
    build_scheduler,
    set_train_mode,
    step_scheduler,
)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 18, generator=g) * 3, torch.randint(0, 18, (32,), generator=g)


def test_focal_with_gamma_0_is_cross_entropy(batch):
    logits, target = batch
    assert torch.allclose(
        soft_focal_loss(logits, target, gamma=0.0), F.cross_entropy(logits, target), atol=1e-6
    )


def test_label_smoothing_matches_torch(batch):
    logits, target = batch
    for eps in (0.05, 0.1, 0.3):
        ours = soft_focal_loss(logits, target, smoothing=eps)
        assert torch.allclose(ours, F.cross_entropy(logits, target, label_smoothing=eps), atol=1e-6)


def test_focal_matches_its_definition_and_weights_easy_examples_down(batch):
    logits, target = batch
    p_t = torch.softmax(logits, 1).gather(1, target[:, None]).squeeze(1)
    expected = (-((1 - p_t) ** 2) * torch.log(p_t)).mean()
    assert torch.allclose(soft_focal_loss(logits, target, gamma=2.0), expected, atol=1e-6)
    easy = torch.zeros(1, 18)
    easy[0, 3] = 8.0
    t = torch.tensor([3])
    assert soft_focal_loss(easy, t, gamma=2.0) < 0.01 * soft_focal_loss(easy, t, gamma=0.0)


def test_multi_head_loss_is_the_sum_over_tasks(batch):
    logits, target = batch
    multi = logits[:, :8]
    m, g, a = split_classes(target)
    expected = (
        F.cross_entropy(multi[:, :3], m)
        + F.cross_entropy(multi[:, 3:5], g)
        + F.cross_entropy(multi[:, 5:], a)
    )
    assert torch.allclose(TaskLoss("multi")(multi, target), expected, atol=1e-6)
    assert [int(v) for v in split_classes(torch.tensor([17]))] == [2, 1, 2]


def test_build_loss_follows_the_config(batch):
    logits, target = batch
    ls = build_loss(TrainConfig(loss="label_smoothing", label_smoothing=0.2), "single")
    assert torch.allclose(ls(logits, target), F.cross_entropy(logits, target, label_smoothing=0.2), atol=1e-6)
    focal = build_loss(TrainConfig(loss="focal", focal_gamma=1.5), "single")
    assert torch.allclose(focal(logits, target), soft_focal_loss(logits, target, gamma=1.5))
    assert not torch.allclose(focal(logits, target), soft_focal_loss(logits, target))
    ce = build_loss(TrainConfig(loss="ce"), "single")
    assert torch.allclose(ce(logits, target), F.cross_entropy(logits, target), atol=1e-6)


def test_the_loss_choices_are_the_rows_of_losses(monkeypatch):
    assert list(choices_of("train.loss")) == list(LOSSES)
    assert TrainConfig().loss in LOSSES  # the default is a row (loading a config checks it without the table)
    with pytest.raises(ConfigError, match=r"train\]\.loss = 'focall' is not one of .*did you mean 'focal'"):
        with_overrides(Config(), {"train.loss": "focall"})
    monkeypatch.setitem(LOSSES, "mine", LOSSES["ce"])  # a new row is a new choice, nothing else to edit
    assert with_overrides(Config(), {"train.loss": "mine"}).train.loss == "mine"


def test_optimizers_and_schedulers():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    model(torch.randn(2, 3, 8, 8))
    sgd = build_optimizer(model, TrainConfig(optimizer="sgd", lr=0.1, weight_decay=0.01))
    assert isinstance(sgd, torch.optim.SGD)
    decays = sorted(g["weight_decay"] for g in sgd.param_groups)
    assert decays == [0.0, 0.01]  # biases and norms are not decayed
    adamw = build_optimizer(model, TrainConfig(lr=0.1))
    step = build_scheduler(adamw, TrainConfig(scheduler="step", step_size=2, gamma=0.5, lr=0.1))
    lrs = []
    for _ in range(4):
        adamw.step()
        step_scheduler(step, None)
        lrs.append(adamw.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.1, 0.05, 0.05, 0.025])
    opt = build_optimizer(model, TrainConfig(lr=0.1))
    plateau = build_scheduler(opt, TrainConfig(scheduler="plateau", plateau_patience=0, gamma=0.5, lr=0.1))
    for f1 in (0.5, 0.4, 0.3):
        step_scheduler(plateau, f1)
    assert opt.param_groups[0]["lr"] < 0.1
    opt = build_optimizer(model, TrainConfig(lr=0.1))
    cos = build_scheduler(opt, TrainConfig(scheduler="cosine", epochs=4, lr=0.1))
    for _ in range(4):
        opt.step()
        step_scheduler(cos, None)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.001)
    assert build_scheduler(opt, TrainConfig(scheduler="none")) is None


def test_a_frozen_backbone_keeps_its_batchnorm_statistics():
    from engines.models import create_model

    model = create_model("mobilenet_v2", "single", pretrained=False, freeze_backbone=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["classifier.1.weight", "classifier.1.bias"]
    set_train_mode(model)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns) and model.classifier.training
    opt = build_optimizer(model, TrainConfig())
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == 1280 * 18 + 18
