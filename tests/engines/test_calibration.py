"""Temperature scaling (engines.calibration): the arithmetic, the fit, and old files loading with T = 1."""

import re

import numpy as np
import pytest

from engines.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    nll,
    softmax,
)
from engines.contract import ModelFileError, ModelMeta
from engines.labels import NUM_CLASSES


def test_single_head_equals_softmax_of_the_logits_over_t():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 4, (50, NUM_CLASSES))
    out = apply_temperature(softmax(z).astype(np.float32), "single", {"classes": 2.5})
    np.testing.assert_allclose(out, softmax(z / 2.5), atol=1e-6)
    assert out.dtype == np.float32


def test_multi_head_scales_each_task_and_multiplies_them_again():
    rng = np.random.default_rng(1)
    zm, zg, za = rng.normal(0, 3, (20, 3)), rng.normal(0, 3, (20, 2)), rng.normal(0, 3, (20, 3))

    def joint(pm, pg, pa):
        return (pm[:, :, None, None] * pg[:, None, :, None] * pa[:, None, None, :]).reshape(-1, NUM_CLASSES)

    raw = joint(softmax(zm), softmax(zg), softmax(za)).astype(np.float32)
    t = {"mask": 3.0, "gender": 0.5, "age": 1.7}
    expected = joint(softmax(zm / 3.0), softmax(zg / 0.5), softmax(za / 1.7))
    np.testing.assert_allclose(apply_temperature(raw, "multi", t), expected, atol=1e-6)
    # a task left out keeps T = 1
    only_mask = joint(softmax(zm / 3.0), softmax(zg), softmax(za))
    np.testing.assert_allclose(apply_temperature(raw, "multi", {"mask": 3.0}), only_mask, atol=1e-6)


def test_no_temperature_or_t_1_is_the_identity():
    p = softmax(np.random.default_rng(2).normal(0, 2, (5, NUM_CLASSES))).astype(np.float32)
    assert apply_temperature(p, "single", {}) is p
    assert apply_temperature(p, "multi", {"mask": 1.0, "age": 1.0}) is p


def overconfident(n=3000, k=3, scale=3.0, seed=3):
    """Logits of a calibrated model (labels drawn from its own softmax), multiplied by `scale`."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, k))
    y = np.array([rng.choice(k, p=p) for p in softmax(z)])
    return z * scale, y


def test_fitted_temperature_undoes_overconfidence_and_lowers_ece_and_nll():
    z, y = overconfident()
    t = fit_temperature(z, y)
    assert 2.5 < t < 3.6  # the logits were made 3x too sharp
    before, after = softmax(z), softmax(z / t)
    assert nll(z, y, t) < nll(z, y) - 0.1
    assert expected_calibration_error(after, y) < 0.03 < expected_calibration_error(before, y) - 0.05


def test_fitted_temperature_of_an_underconfident_model_is_below_1():
    z, y = overconfident(scale=0.4)
    assert 0.3 < fit_temperature(z, y) < 0.5
    assert fit_temperature(z[:0], y[:0]) == 1.0


def test_ece_by_hand():
    # two bins used: conf 0.9 (2 samples, 1 right) and 0.6 (2 samples, 2 right), of 15
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    assert expected_calibration_error(p, y) == pytest.approx(0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6))


def test_a_file_without_the_key_loads_with_t_1():
    d = ModelMeta(arch="mobilenet_v2", head="multi").to_dict()
    del d["temperature"]
    assert ModelMeta.from_dict(d).temperature == {}
    d["temperature"] = {"mask": 1.5}
    assert ModelMeta.from_dict(d).temperature == {"mask": 1.5}


@pytest.mark.parametrize(
    ("head", "temperature", "says"),
    [
        ("single", {"mask": 2.0}, "key 'mask'"),
        ("multi", {"classes": 2.0}, "key 'classes'"),
        ("multi", {"mask": 0}, "not a positive number"),
        ("multi", {"mask": "2"}, "not a positive number"),
        ("multi", [2.0], "temperature = [2.0] is not dict"),
    ],
)
def test_a_bad_temperature_is_refused_with_one_line(head, temperature, says):
    d = ModelMeta(arch="mobilenet_v2", head=head).to_dict()
    d["temperature"] = temperature
    with pytest.raises(ModelFileError, match=re.escape(says)):
        ModelMeta.from_dict(d, "m.onnx")
