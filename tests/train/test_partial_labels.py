"""Partial labels: targets without gender or age, the masked multi-head loss (against a manual computation),
per-task metrics, per-source weights, and a fit on competition + imported photos together."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engines.backends.torch_backend import load_checkpoint
from engines.errors import UserError
from engines.labels import encode
from tests.conftest import SHARED, one_torch_thread
from train.config import DataConfig, load_config
from train.data.cache import Sample
from train.data.dataset import sample_weights, source_weights
from train.data.importer import import_dataset
from train.data.targets import encode_target, split_targets
from train.fitting.losses import TaskLoss, soft_focal_loss
from train.fitting.session import fit
from train.measures.metrics import summarize

REAL = SHARED / "datasets" / "face-mask-real"


def test_targets_keep_what_is_known():
    for mask in range(3):
        for gender in (-1, 0, 1):
            for age in (-1, 0, 1, 2):
                code = encode_target(mask, gender, age)
                assert [int(v) for v in split_targets(np.array(code))] == [mask, gender, age]
                assert [int(v) for v in split_targets(torch.tensor(code))] == [mask, gender, age]
                assert (code < 18) == (gender >= 0 and age >= 0)
    assert encode_target(2, 1, 2) == encode(2, 1, 2) == 17


def test_masked_loss_equals_a_manual_computation():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 8, generator=g) * 2
    labels = [(0, 1, 2), (2, -1, -1), (1, 0, -1), (0, -1, 1), (2, 1, 0), (1, -1, -1)]
    target = torch.tensor([encode_target(*lab) for lab in labels])
    mask, gender, age = (torch.tensor(col) for col in zip(*labels))
    manual = F.cross_entropy(logits[:, :3], mask)  # every sample has its mask state
    known_g = gender >= 0
    manual = manual + F.cross_entropy(logits[known_g, 3:5], gender[known_g]) * known_g.sum() / 6
    known_a = age >= 0
    manual = manual + F.cross_entropy(logits[known_a, 5:], age[known_a]) * known_a.sum() / 6
    ours = TaskLoss("multi")(logits, target)
    assert torch.allclose(ours, manual, atol=1e-6)
    # a batch without any gender or age label still trains the mask head, and its gradient is finite
    only_mask = torch.tensor([encode_target(m, -1, -1) for m in (0, 1, 2)])
    lg = logits[:3].clone().requires_grad_(True)
    loss = TaskLoss("multi")(lg, only_mask)
    loss.backward()
    assert torch.allclose(loss, F.cross_entropy(logits[:3, :3], torch.tensor([0, 1, 2])), atol=1e-6)
    assert torch.all(lg.grad[:, 3:] == 0) and torch.isfinite(lg.grad).all()
    # the per-head loss stays the one configured (focal here) inside the mask
    focal = TaskLoss("multi", lambda lg, t: soft_focal_loss(lg, t, gamma=2.0))(logits, target)
    assert focal < ours


def test_metrics_score_each_task_on_the_samples_that_have_it():
    truth = [(0, 1, 2), (2, 0, 1), (0, -1, -1), (2, -1, -1), (1, 0, -1)]
    targets = np.array([encode_target(*t) for t in truth])
    preds = [encode(0, 1, 2), encode(2, 1, 1), encode(2, 0, 0), encode(2, 0, 0), encode(1, 0, 2)]
    probs = np.eye(18)[preds]
    m = summarize(probs, targets)
    assert m["n"] == 2 and m["acc"] == 0.5  # 18 classes: only the two fully labelled samples
    assert m["n_mask"] == 5 and m["acc_mask"] == pytest.approx(4 / 5)
    assert m["n_gender"] == 3 and m["acc_gender"] == pytest.approx(2 / 3)
    assert m["n_age"] == 2 and m["acc_age"] == pytest.approx(1.0)


def test_source_weights_multiply_with_the_class_balance():
    samples = [Sample(f"k{i}", None, "f", "p", -1, -1, i % 3, True, src) for i, src in enumerate("aabbb")]
    samples = [
        s.__class__(**{**s.__dict__, "source": "real" if s.source == "a" else "prepared"}) for s in samples
    ]
    targets = [s.cls() for s in samples]
    assert sample_weights(samples, targets, DataConfig()) is None
    w = sample_weights(samples, targets, DataConfig(source_weights=("real=3",)))
    assert list(w) == [3, 3, 1, 1, 1]
    assert source_weights(["prepared=0.5", "real=2"]) == {"prepared": 0.5, "real": 2.0}
    with pytest.raises(UserError, match="'real' is not NAME=WEIGHT"):
        source_weights(["real"])


CONFIG = """
[model]
arch = "mobilenet_v2"
pretrained = true
head = "{head}"
input_height = 64
input_width = 48
[data]
data_dir = "{data}"
cache_dir = "{cache}"
batch_size = 16
num_workers = 0
val_fraction = 0.3
source_weights = ["real=2"]
[train]
epochs = 1
lr = 0.001
seed = 0
threads = 1
best_metric = "f1_mask"
out_dir = "{runs}"
"""


@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is missing")
def test_competition_and_imported_photos_train_together(prepared, tmp_path):
    data, cache, _ = prepared
    shutil.copytree(cache, tmp_path / "cache")
    photos = tmp_path / "real"
    for kind in ("with_mask", "without_mask"):
        (photos / kind).mkdir(parents=True)
        for p in sorted((REAL / kind).glob("*.jpg"))[40:52]:
            shutil.copy(p, photos / kind / p.name)
    with one_torch_thread():
        import_dataset(photos, tmp_path / "cache", load_config(None), name="real", show=False)
        for head in ("single", "multi"):
            path = tmp_path / f"{head}.toml"
            path.write_text(
                CONFIG.format(head=head, data=data, cache=tmp_path / "cache", runs=tmp_path / "runs")
            )
            cfg = load_config(path)
            if head == "single":
                with pytest.raises(UserError, match="need model.head = 'multi'"):
                    fit(cfg, run_dir=tmp_path / "runs" / head, show=False)
                continue
            result = fit(cfg, run_dir=tmp_path / "runs" / head, show=False)
    row = result.history[-1]
    assert np.isfinite(row["train_loss"]) and "val_f1_mask" in row
    meta, _ = load_checkpoint(result.run_dir / "best.pt")
    assert meta.knows == {"mask": True, "gender": True, "age": True}  # the competition part has all three
    assert result.best["metric"] == "val_f1_mask"
