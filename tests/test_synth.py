"""Synthetic masks (train.mask_render / train.synth), `mask-train synth`, and the sample entrance video."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.conftest import MASKS, REPO
from train.mask_render import MaskStyle, draw_mask, face_frame, mask_layer

SAMPLES = REPO / "samples"
# MTCNN's answer on samples/faces/astronaut.png (tests/test_faces.py checks the detector itself).
ASTRO_LM = np.array([[205.3, 101.4], [247.1, 103.2], [225.4, 129.0], [201.0, 140.2], [245.2, 141.3]], np.float32)
ASTRO_BOX = (180.0, 61.0, 268.0, 172.0)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    img = cv2.imread(str(SAMPLES / "faces" / "astronaut.png"))
    assert img is not None
    return img


def _disc(shape, centre, radius) -> np.ndarray:
    m = np.zeros(shape[:2], np.uint8)
    cv2.circle(m, (int(round(centre[0])), int(round(centre[1]))), int(radius), 1, -1)
    return m.astype(bool)


def _changed(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """Share of pixels in `where` that differ by more than a little."""
    diff = np.abs(a.astype(int) - b.astype(int)).max(axis=2)
    return float((diff[where] > 12).mean())


# --- draw_mask --------------------------------------------------------------------------------------------

def test_not_wear_returns_an_unchanged_copy(astronaut):
    out = draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "not_wear", np.random.default_rng(0))
    assert out is not astronaut and np.array_equal(out, astronaut)


@pytest.mark.parametrize("style", ["surgical_blue", "surgical_white", "cloth_black", "pattern_dots"])
def test_worn_mask_covers_nose_and_mouth_not_the_eyes(astronaut, style):
    out = draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "wear", np.random.default_rng(1), style=MaskStyle.named(style))
    d = float(np.linalg.norm(ASTRO_LM[1] - ASTRO_LM[0]))
    mouth = ASTRO_LM[3:].mean(axis=0)
    chin = mouth + np.array([0, 0.55 * d])
    for point in (ASTRO_LM[2], mouth, chin, ASTRO_LM[3], ASTRO_LM[4]):
        assert _changed(out, astronaut, _disc(out.shape, point, 0.1 * d)) > 0.9, point
    for eye in ASTRO_LM[:2]:
        assert np.array_equal(out[_disc(out.shape, eye, 0.2 * d)], astronaut[_disc(out.shape, eye, 0.2 * d)])
    # nothing above the eyes, nothing far below the chin
    eye_y = int(ASTRO_LM[:2, 1].min() - 0.2 * d)
    assert np.array_equal(out[:eye_y], astronaut[:eye_y])
    assert np.array_equal(out[int(ASTRO_BOX[3] + 1.2 * d):], astronaut[int(ASTRO_BOX[3] + 1.2 * d):])


def test_under_the_nose_leaves_the_nose_free_and_covers_the_mouth(astronaut):
    d = float(np.linalg.norm(ASTRO_LM[1] - ASTRO_LM[0]))
    nose = _disc(astronaut.shape, ASTRO_LM[2], 0.08 * d)    # the tip; the nostrils sit just below
    mouth = _disc(astronaut.shape, ASTRO_LM[3:].mean(axis=0), 0.12 * d)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        worn = draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "wear", rng)
        under = draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "incorrect", rng, placement="under_nose")
        assert _changed(worn, astronaut, nose) > 0.9
        assert _changed(under, astronaut, nose) < 0.05
        assert _changed(under, astronaut, mouth) > 0.9


def test_on_the_chin_leaves_the_mouth_free_and_covers_the_chin(astronaut):
    d = float(np.linalg.norm(ASTRO_LM[1] - ASTRO_LM[0]))
    mouth_c = ASTRO_LM[3:].mean(axis=0)
    for seed in range(5):
        out = draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "incorrect", np.random.default_rng(seed), placement="chin")
        assert _changed(out, astronaut, _disc(out.shape, mouth_c, 0.12 * d)) < 0.05
        for corner in ASTRO_LM[3:]:
            assert _changed(out, astronaut, _disc(out.shape, corner, 0.06 * d)) < 0.05
        assert _changed(out, astronaut, _disc(out.shape, mouth_c + [0, 0.75 * d], 0.1 * d)) > 0.9
        assert _changed(out, astronaut, _disc(out.shape, ASTRO_LM[2], 0.15 * d)) == 0.0


def test_random_incorrect_is_either_placement(astronaut):
    d = float(np.linalg.norm(ASTRO_LM[1] - ASTRO_LM[0]))
    nose = _disc(astronaut.shape, ASTRO_LM[2], 0.08 * d)
    mouth = _disc(astronaut.shape, ASTRO_LM[3:].mean(axis=0), 0.12 * d)
    seen = set()
    for seed in range(12):
        out = draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "incorrect", np.random.default_rng(seed))
        assert _changed(out, astronaut, nose) < 0.05          # never over the nose
        seen.add("under_nose" if _changed(out, astronaut, mouth) > 0.9 else "chin")
    assert seen == {"under_nose", "chin"}


def _orientation(alpha: np.ndarray) -> float:
    ys, xs = np.nonzero(alpha > 0.5)
    cov = np.cov(np.stack([xs, ys]))
    evals, evecs = np.linalg.eigh(cov)
    vx, vy = evecs[:, np.argmax(evals)]
    return float(np.degrees(np.arctan2(vy, vx))) % 180


def test_mask_follows_the_roll_of_the_face(astronaut):
    centre = ASTRO_LM[:2].mean(axis=0)
    angles = []
    for roll in (0.0, 20.0, -15.0):
        rot = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), -roll, 1.0)  # +roll: clockwise
        lm = (np.c_[ASTRO_LM, np.ones(5)] @ rot.T).astype(np.float32)
        assert face_frame(lm).roll_degrees == pytest.approx(roll + face_frame(ASTRO_LM).roll_degrees, abs=0.5)
        _, alpha, _, _ = mask_layer(astronaut, lm, None, "over_nose", np.random.default_rng(3),
                                          MaskStyle.named("surgical_blue"))
        angles.append(_orientation(alpha))
    base = angles[0]
    assert (angles[1] - base) % 180 == pytest.approx(20.0, abs=4.0)
    assert (angles[2] - base) % 180 == pytest.approx(180 - 15.0, abs=4.0)


def test_same_seed_same_mask_and_styles_differ(astronaut):
    a = draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "wear", np.random.default_rng(5))
    b = draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "wear", np.random.default_rng(5))
    assert np.array_equal(a, b)
    mouth = _disc(astronaut.shape, ASTRO_LM[3:].mean(axis=0), 8)
    colours = {tuple(np.round(draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "wear", None, style=MaskStyle.named(s))[mouth]
                              .mean(axis=0) / 40)) for s in ("surgical_blue", "surgical_white", "cloth_black")}
    assert len(colours) == 3
    black = draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "wear", np.random.default_rng(0),
                      style=MaskStyle.named("cloth_black"))[mouth].mean()
    white = draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "wear", np.random.default_rng(0),
                      style=MaskStyle.named("surgical_white"))[mouth].mean()
    assert black < 90 < 160 < white


def test_texture_image_is_used(astronaut, shared):
    tex = cv2.imread(str(MASKS / "mask_blue.jpg"))
    out = draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "wear", np.random.default_rng(0), tex,
                    style=MaskStyle.named("cloth_black"))
    b, g, r = out[_disc(out.shape, ASTRO_LM[3:].mean(axis=0), 10)].mean(axis=0)
    assert b > r + 30 and b > 120          # light blue fabric, not the black style it overrides


def test_bad_state_and_image_are_refused(astronaut):
    with pytest.raises(ValueError, match="state"):
        draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "half")
    with pytest.raises(ValueError, match="placement"):
        draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "wear", placement="chin")
    with pytest.raises(ValueError, match="image"):
        draw_mask(astronaut[:, :, 0], ASTRO_LM, ASTRO_BOX, "wear")
