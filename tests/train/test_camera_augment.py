"""Faces as a camera sees them (train.data.augment): box jitter, small faces, crowds; probability 0 = off."""

import cv2
import numpy as np
import pytest

from engines.config import ConfigError
from tests.helpers import augment_only
from train.config import AugmentConfig, from_dict
from train.data.augment import (
    EvalTransform,
    TrainTransform,
    face_in_crop,
    jitter_box,
    neighbour_patch,
    paste_neighbour,
)

SIZE, MEAN, STD = (256, 192), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FACE_COLOUR = (20, 230, 40)


def face_px(shape, face) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    return int(round(face[0] * w)), int(round(face[1] * h)), int(round(face[2] * w)), int(round(face[3] * h))


@pytest.fixture(scope="module")
def crop():
    """A 384x512 crop: grey noise around a face box painted one colour, with fine texture inside it."""
    rng = np.random.default_rng(0)
    img = rng.integers(90, 160, (512, 384, 3), dtype=np.uint8)
    x1, y1, x2, y2 = face_px(img.shape, face_in_crop())
    img[y1:y2, x1:x2] = FACE_COLOUR
    return img


def found_face(img: np.ndarray) -> tuple[float, float, float, float]:
    """The box of the face colour's pixels, as fractions of the image."""
    near = np.abs(img.astype(int) - FACE_COLOUR).max(axis=2) < 30
    ys, xs = np.nonzero(near)
    h, w = img.shape[:2]
    return xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h


def test_box_jitter_keeps_the_labelled_face_in_its_box_within_15_percent(crop):
    face = face_in_crop()
    fw, fh = face[2] - face[0], face[3] - face[1]
    t = TrainTransform(SIZE, MEAN, STD, augment_only(box_jitter=1.0))
    t.set_seed(0)
    moved = 0
    for _ in range(60):
        img, told = t.camera(crop)
        got = found_face(img)
        assert img.shape[:2] == SIZE
        # the box the transform reports is where the labelled face is (to a pixel or two of resizing)
        np.testing.assert_allclose(got, told, atol=2.5 / SIZE[1])
        # ... and it is the nominal face box moved and scaled by at most 15% of its size
        assert 0.85 - 0.02 <= (got[2] - got[0]) / fw <= 1.15 + 0.02
        assert 0.85 - 0.02 <= (got[3] - got[1]) / fh <= 1.15 + 0.02
        assert abs((got[0] + got[2]) / 2 - (face[0] + face[2]) / 2) <= 0.15 * fw + 0.02
        assert abs((got[1] + got[3]) / 2 - (face[1] + face[3]) / 2) <= 0.15 * fh + 0.02
        moved += not np.allclose(got, face, atol=0.03)
    assert moved >= 40  # it really moves the face


def test_jitter_box_region_maps_the_moved_box_onto_the_face():
    face = face_in_crop()
    rng = np.random.default_rng(1)
    for _ in range(20):
        region, moved = jitter_box(face, 0.15, rng)
        rw, rh = region[2] - region[0], region[3] - region[1]
        back = (
            region[0] + moved[0] * rw,
            region[1] + moved[1] * rh,
            region[0] + moved[2] * rw,
            region[1] + moved[3] * rh,
        )
        np.testing.assert_allclose(back, face, atol=1e-9)


def high_frequency(img: np.ndarray, face) -> float:
    x1, y1, x2, y2 = face_px(img.shape, face)
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float64)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_64F))[y1:y2, x1:x2].mean())


def test_small_face_really_loses_detail():
    rng = np.random.default_rng(2)
    textured = rng.integers(0, 255, (512, 384, 3), dtype=np.uint8)  # detail everywhere, the face included
    face = face_in_crop()
    sharp = high_frequency(cv2.resize(textured, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_AREA), face)
    t = TrainTransform(SIZE, MEAN, STD, augment_only(small_face=1.0))
    t.set_seed(3)
    for _ in range(10):
        img, told = t.camera(textured)
        assert img.shape[:2] == SIZE and told == face
        # a face 40-80 px tall in a 256-px-high input (the face is ~105 px there) keeps well under half
        assert high_frequency(img, face) < 0.6 * sharp


def test_crowd_paste_lands_outside_the_face_box():
    rng = np.random.default_rng(4)
    face = face_in_crop()
    img = np.full((*SIZE, 3), 128, np.uint8)
    neighbour = rng.integers(0, 255, (80, 60, 3), dtype=np.uint8)
    # every pixel the face box covers, even in part
    x1, y1 = int(np.floor(face[0] * SIZE[1])), int(np.floor(face[1] * SIZE[0]))
    x2, y2 = int(np.ceil(face[2] * SIZE[1])), int(np.ceil(face[3] * SIZE[0]))
    changed = 0
    for _ in range(100):
        out = paste_neighbour(img, face, neighbour, rng)
        assert out.shape == img.shape and out.dtype == np.uint8
        diff = np.any(out != img, axis=2)
        assert not diff[y1:y2, x1:x2].any()
        changed += diff.sum() > 100
    assert changed >= 90


def test_crowd_pastes_an_earlier_crops_face_through_the_transform(crop):
    t = TrainTransform(SIZE, MEAN, STD, augment_only(crowd=1.0))
    t.set_seed(5)
    plain = EvalTransform(SIZE, MEAN, STD)
    other = np.full_like(crop, 30)
    t(other)  # the first crop has no neighbour to take
    assert len(t.neighbours) == 1
    out = t(crop)
    assert not np.allclose(out, plain(crop), atol=1e-5)
    x1, y1, x2, y2 = face_px(SIZE, face_in_crop())
    np.testing.assert_allclose(out[:, y1:y2, x1:x2], plain(crop)[:, y1:y2, x1:x2], atol=1e-5)


def test_neighbour_patch_is_the_face_and_a_little_around_it(crop):
    small = cv2.resize(crop, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_AREA)
    patch = neighbour_patch(small, face_in_crop())
    x1, y1, x2, y2 = face_px(SIZE, face_in_crop())
    assert (x2 - x1) < patch.shape[1] <= 1.3 * (x2 - x1) + 2
    assert (y2 - y1) < patch.shape[0] <= 1.4 * (y2 - y1) + 2


@pytest.mark.parametrize("key", ["box_jitter", "crowd", "small_face"])
def test_each_is_off_at_probability_0_and_applied_at_its_share(crop, key):
    plain = EvalTransform(SIZE, MEAN, STD)(crop)
    off = TrainTransform(SIZE, MEAN, STD, augment_only())
    assert all(np.allclose(off(crop), plain, atol=1e-5) for _ in range(5))
    half = TrainTransform(SIZE, MEAN, STD, augment_only(**{key: 0.5}))
    half.set_seed(6)
    changed = sum(not np.allclose(half(crop), plain, atol=1e-5) for _ in range(200))
    # crowd: the first crop has no neighbour yet; a neighbour may land past the crop's edge (rarely)
    assert 70 <= changed <= 130


def test_augmentation_disabled_turns_the_camera_augmentations_off_too(crop):
    t = TrainTransform(SIZE, MEAN, STD, AugmentConfig(enabled=False, box_jitter=1, crowd=1, small_face=1))
    assert all(np.allclose(t(crop), EvalTransform(SIZE, MEAN, STD)(crop), atol=1e-5) for _ in range(3))


def test_small_face_px_lower_above_upper_is_refused():
    with pytest.raises(ConfigError, match="small_face_px"):
        from_dict({"augment": {"small_face_px": [80.0, 40.0]}})
    assert from_dict({"augment": {"small_face": 0.0}}).augment.small_face == 0.0
