import multiprocessing

import cv2
import numpy as np
import pytest
import torch

from engines.config import CropConfig
from engines.faces import crop_box
from engines.preprocess import preprocess
from tests.helpers import augment_only
from train.config import AugmentConfig, DataConfig
from train.data.augment import (
    EvalTransform,
    TrainTransform,
    face_in_crop,
    normalize_rgb,
    replace_surroundings,
)
from train.data.cache import Cache
from train.data.dataset import CropDataset, EpochSampler, class_weights, make_loader

SIZE, MEAN, STD = (64, 48), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def crop():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (512, 384, 3), dtype=np.uint8)
    img[100:300, 100:280] = (40, 120, 200)
    return img


def test_eval_transform_is_exactly_inference_preprocessing(crop):
    assert np.array_equal(EvalTransform(SIZE, MEAN, STD)(crop), preprocess([crop], SIZE, MEAN, STD)[0])


def test_train_transform_without_augmentation_equals_inference(crop):
    off = TrainTransform(SIZE, MEAN, STD, AugmentConfig(enabled=False))
    np.testing.assert_allclose(off(crop), preprocess([crop], SIZE, MEAN, STD)[0], atol=1e-5)
    rgb = crop[:, :, ::-1]
    np.testing.assert_allclose(
        normalize_rgb(np.ascontiguousarray(rgb), MEAN, STD),
        preprocess([crop], (512, 384), MEAN, STD)[0],
        atol=1e-5,
    )


@pytest.mark.parametrize("geom", [CropConfig(), CropConfig(margin=0.3, shift_y=0.0)])
def test_face_in_crop_is_where_crop_face_puts_a_face_box(geom):
    box = (100.0, 50.0, 200.0, 170.0)  # 1.2 times as tall as wide, as an MTCNN box
    x1, y1, x2, y2 = crop_box(box, geom)
    fx1, fy1, fx2, fy2 = face_in_crop(geom)
    np.testing.assert_allclose(
        (fx1 * (x2 - x1) + x1, fy1 * (y2 - y1) + y1, fx2 * (x2 - x1) + x1, fy2 * (y2 - y1) + y1), box
    )


def test_replace_surroundings_keeps_mouth_and_chin_and_paints_the_rest():
    img = np.full((128, 96, 3), 77, np.uint8)
    face = face_in_crop()
    fx1, fy1, fx2, fy2 = face
    fw, fh = fx2 - fx1, fy2 - fy1
    # the region no draw may touch: the face less 5% of each side and 20% of the forehead, plus 10% below
    keep = (
        slice(int(np.ceil(128 * (fy1 + 0.2 * fh))), int(128 * (fy2 + 0.1 * fh))),
        slice(int(np.ceil(96 * (fx1 + 0.05 * fw))), int(96 * (fx2 - 0.05 * fw))),
    )
    rng = np.random.default_rng(0)
    corners_changed = 0
    for _ in range(50):
        out = replace_surroundings(img, face, rng)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert (out[keep] == 77).all()
        corners_changed += any(not np.array_equal(out[y, x], img[y, x]) for y in (0, -1) for x in (0, -1))
    assert corners_changed >= 45  # a corner is kept only when the drawn rectangle reaches it


def test_surroundings_share_is_its_probability(crop):
    none = augment_only()
    plain = EvalTransform(SIZE, MEAN, STD)(crop)
    off = TrainTransform(SIZE, MEAN, STD, none)
    assert all(np.allclose(off(crop), plain, atol=1e-5) for _ in range(5))
    half = TrainTransform(SIZE, MEAN, STD, AugmentConfig(**{**none.__dict__, "surroundings": 0.5}))
    half.set_seed(3)
    changed = sum(not np.allclose(half(crop), plain, atol=1e-5) for _ in range(200))
    assert 70 <= changed <= 130


@pytest.mark.parametrize("order", ["resize_first", "augment_first"])
def test_augmentation_changes_pixels_not_shape(crop, order):
    always = AugmentConfig(
        hflip=1.0, shift_scale_rotate=1.0, color=1.0, blur=1.0, noise=1.0, jpeg=1.0, dropout=1.0
    )
    t = TrainTransform(SIZE, MEAN, STD, always, order)
    t.set_seed(1)
    a = t(crop)
    assert a.shape == (3, *SIZE) and a.dtype == np.float32 and np.isfinite(a).all()
    assert not np.allclose(a, EvalTransform(SIZE, MEAN, STD)(crop), atol=0.05)
    t.set_seed(1)
    assert np.array_equal(a, t(crop))  # seeded: reproducible
    flip_only = TrainTransform(
        SIZE,
        MEAN,
        STD,
        augment_only(hflip=1.0),
    )
    np.testing.assert_allclose(flip_only(crop), EvalTransform(SIZE, MEAN, STD)(crop)[:, :, ::-1], atol=1e-5)


def test_epoch_sampler_splits_ranks_evenly_and_reshuffles():
    ranks = [EpochSampler(10, rank=r, world=3, seed=0) for r in range(3)]
    parts = [list(s) for s in ranks]
    assert [len(p) for p in parts] == [4, 4, 4] == [len(s) for s in ranks]  # padded: equal batch counts
    assert set().union(*map(set, parts)) == set(range(10))
    first = list(ranks[0])
    ranks[0].set_epoch(1)
    assert list(ranks[0]) != first
    ranks[0].set_epoch(0)
    assert list(ranks[0]) == first


def test_weighted_sampler_draws_rare_classes_as_often_as_common_ones():
    targets = [0] * 90 + [17] * 10
    w = class_weights(targets)
    assert w[0] == pytest.approx(1 / 90) and w[-1] == pytest.approx(1 / 10)
    assert len(_epoch(w, 0)) == 100
    counts = np.bincount(np.array(targets)[[i for e in range(20) for i in _epoch(w, e)]], minlength=18)
    assert 0.4 < counts[17] / (counts[0] + counts[17]) < 0.6  # 10% of the data, half of the draws


def _epoch(w, e):
    s = EpochSampler(len(w), weights=w, seed=0)
    s.set_epoch(e)
    return s.indices()


def test_dataset_and_loader_on_prepared_crops(prepared):
    _, cache, _ = prepared
    samples = Cache(cache).samples()[:10]
    ds = CropDataset([s.crop for s in samples], [s.cls() for s in samples], EvalTransform(SIZE, MEAN, STD))
    x, y = ds[3]
    assert x.shape == (3, *SIZE) and x.dtype == torch.float32 and y == samples[3].cls()
    cfg = DataConfig(batch_size=4, num_workers=1, pin_memory=True, persistent_workers=False)
    loader = make_loader(ds, cfg, train=False)
    assert loader.num_workers == 1 and loader.pin_memory is False  # pinning only helps a GPU
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert torch.equal(batches[0][0][3], ds[3][0])
    train = make_loader(ds, cfg, train=True, sampler=EpochSampler(9, seed=0), batch_size=4)
    assert train.drop_last  # no batch of one for BatchNorm


def _broken(_img):
    raise ValueError("a bug in a transform")


def test_an_unreadable_crop_in_a_loader_worker_is_one_line(tmp_path):
    """A UserError raised in a DataLoader worker reaches the user as the same one line, not torch's
    'Caught UserError in DataLoader worker process 0' with the worker's traceback; a bug keeps its
    traceback."""
    from engines.errors import UserError

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    before = set(multiprocessing.active_children())
    for persistent in (False, True):
        cfg = DataConfig(batch_size=1, num_workers=1, persistent_workers=persistent)
        loader = make_loader(CropDataset([bad], [0], EvalTransform(SIZE, MEAN, STD)), cfg, train=False)
        with pytest.raises(UserError) as info:
            list(loader)
        assert str(info.value) == f"cached crop {bad} cannot be read: run `mask-train prepare --force`"
        assert set(multiprocessing.active_children()) <= before  # its worker ended, not left to the GC
    good = tmp_path / "good.jpg"
    cv2.imwrite(str(good), np.zeros((64, 48, 3), np.uint8))
    with pytest.raises(ValueError, match="(?s)Traceback.*a bug in a transform"):
        list(make_loader(CropDataset([good], [0], _broken), cfg, train=False))
    assert set(multiprocessing.active_children()) <= before
