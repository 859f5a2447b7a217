"""CutMix and MixUp: the images and the loss equal a manual computation, single and multi head, with every
loss of the LOSSES table; off by default; a training run with them learns."""

import math

import pytest
import torch
import torch.nn.functional as F

from engines.config import ConfigError, with_overrides
from engines.labels import split_classes
from train.config import AugmentConfig, TrainConfig, load_config
from train.fitting.loop import make_scaler, train_one_epoch
from train.fitting.losses import build_loss
from train.fitting.mixing import cut_box, cutmix, mix_batch, mixup


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 16, 12, generator=g)
    y = torch.randint(0, 18, (6,), generator=g)
    return x, y, torch.tensor([3, 0, 5, 1, 2, 4])


def test_mixup_blends_each_image_with_its_partner(batch):
    x, _, perm = batch
    out = mixup(x, perm, 0.3)
    for i in range(len(x)):
        assert torch.allclose(out[i], 0.3 * x[i] + 0.7 * x[perm[i]])


def test_cutmix_pastes_the_partners_box_and_lam_is_the_share_left(batch):
    x, _, perm = batch
    box = cut_box(16, 12, 0.75, 0.5, 0.5)  # half the height and half the width: a quarter of the image
    assert box == (4, 12, 3, 9)
    out, lam = cutmix(x, perm, box)
    assert lam == pytest.approx(1 - 8 * 6 / (16 * 12))
    expected = x.clone()
    for i in range(len(x)):
        expected[i, :, 4:12, 3:9] = x[perm[i], :, 4:12, 3:9]
    assert torch.equal(out, expected)
    clipped = cut_box(16, 12, 0.75, 0.0, 0.0)  # a box at a corner is clipped, and lam follows the real area
    _, lam = cutmix(x, perm, clipped)
    assert clipped == (0, 4, 0, 3) and lam == pytest.approx(1 - 12 / 192)


def _manual(logits, y, y_b, lam, head, loss_name, cfg):
    """The mixed loss written out with torch's own functions, head by head."""

    def one(lg, t):
        if loss_name == "ce":
            return F.cross_entropy(lg, t)
        if loss_name == "label_smoothing":
            return F.cross_entropy(lg, t, label_smoothing=cfg.label_smoothing)
        p_t = torch.softmax(lg, 1).gather(1, t[:, None]).squeeze(1)
        return (-((1 - p_t) ** cfg.focal_gamma) * torch.log(p_t)).mean()

    if head == "single":
        return lam * one(logits, y) + (1 - lam) * one(logits, y_b)
    bounds = ((0, 3), (3, 5), (5, 8))
    total = 0.0
    for (a, b), t, tb in zip(bounds, split_classes(y), split_classes(y_b)):
        total = total + lam * one(logits[:, a:b], t) + (1 - lam) * one(logits[:, a:b], tb)
    return total


@pytest.mark.parametrize("head", ["single", "multi"])
@pytest.mark.parametrize("loss_name", ["ce", "focal", "label_smoothing"])
def test_mixed_loss_equals_the_manual_computation(head, loss_name, batch):
    _, y, perm = batch
    cfg = TrainConfig(loss=loss_name, focal_gamma=1.5, label_smoothing=0.2)
    logits = torch.randn(6, 18 if head == "single" else 8, generator=torch.Generator().manual_seed(2)) * 2
    loss_fn = build_loss(cfg, head)
    for lam in (0.25, 0.6):
        got = loss_fn(logits, y, y[perm], lam)
        assert torch.allclose(got, _manual(logits, y, y[perm], lam, head, loss_name, cfg), atol=1e-5)
    # lam = 1 (or no partner) is the plain loss; the two ends weigh one target each
    assert torch.allclose(loss_fn(logits, y, y[perm], 1.0), loss_fn(logits, y))
    assert torch.allclose(loss_fn(logits, y, y[perm], 0.0), loss_fn(logits, y[perm]), atol=1e-6)


def test_mix_batch_is_off_by_default_and_follows_the_shares(batch):
    x, y, _ = batch
    assert AugmentConfig().cutmix == 0 and AugmentConfig().mixup == 0
    torch.manual_seed(0)
    assert all(mix_batch(x, y, AugmentConfig()) is None for _ in range(20))
    kinds = [mix_batch(x, y, AugmentConfig(cutmix=0.5, mixup=0.5)).kind for _ in range(200)]
    assert 60 < kinds.count("cutmix") < 140 and 60 < kinds.count("mixup") < 140
    assert mix_batch(x, y, AugmentConfig(cutmix=1.0, enabled=False)) is None
    m = mix_batch(x, y, AugmentConfig(mixup=1.0))
    assert 0 < m.lam < 1 and m.x.shape == x.shape and sorted(m.y_b.tolist()) == sorted(y.tolist())


def test_the_epoch_loop_trains_on_mixed_batches_with_the_mixed_loss(batch):
    x, y, _ = batch
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 12, 18))
    seen = []
    base = build_loss(TrainConfig(), "single")

    def spy(logits, target, target_b=None, lam=1.0):
        seen.append((target_b is not None, lam))
        return base(logits, target, target_b, lam)

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    kw = dict(device=torch.device("cpu"), scaler=make_scaler(torch.device("cpu"), False))
    torch.manual_seed(0)
    stats = train_one_epoch(model, [(x, y)] * 4, spy, opt, mixing=AugmentConfig(cutmix=1.0), **kw)
    assert all(mixed and 0 <= lam < 1 for mixed, lam in seen) and len(seen) == 4
    assert math.isfinite(stats.loss)
    seen.clear()
    train_one_epoch(model, [(x, y)] * 2, spy, opt, mixing=AugmentConfig(), **kw)
    assert seen == [(False, 1.0)] * 2


def test_mixing_shares_are_validated():
    with pytest.raises(ConfigError, match="cutmix \\+ mixup"):
        with_overrides(load_config(), {"augment.cutmix": 0.7, "augment.mixup": 0.5})
