"""Calibrated confidence through the model files: stored in the metadata, carried by the exporter, applied
the same by every backend; `mask-train calibrate` and `evaluate`'s ECE and reliability diagram."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from engines import ModelFileError, UserError, load_engine, read_meta
from engines.contract import ModelMeta
from tests.conftest import one_torch_thread
from tests.helpers import make_checkpoint
from tests.train.test_fit import CONFIG
from train.cli import _main as cli
from train.export.onnx import export_onnx
from train.fitting.calibration import fit_temperatures, rewrite_meta, with_temperature
from train.measures.calibration import report

TEMPS = {"single": {"classes": 2.5}, "multi": {"mask": 2.5, "gender": 0.6, "age": 1.4}}


def crops(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (512, 384, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("head", ["single", "multi"])
def test_onnx_and_pt_apply_the_stored_temperature_alike(head, tmp_path):
    with one_torch_thread():
        pt = make_checkpoint(tmp_path / "m.pt", head=head, input_size=(64, 48), seed=4)
        raw = load_engine(pt).classify(crops())
        rewrite_meta(pt, with_temperature(read_meta(pt), TEMPS[head]))
        export_onnx(pt, tmp_path / "m.onnx")
        assert read_meta(tmp_path / "m.onnx").temperature == TEMPS[head]  # the exporter carries it
        by_pt = load_engine(pt).classify(crops())
        by_onnx = load_engine(tmp_path / "m.onnx").classify(crops())
    np.testing.assert_allclose(by_pt, by_onnx, atol=1e-5)
    np.testing.assert_allclose(by_pt.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(by_pt - raw).max() > 1e-3  # the temperature changed them
    # the network itself is untouched: T = 1 gives the file's old probabilities
    engine = load_engine(tmp_path / "m.onnx")
    engine.temperature = {}
    np.testing.assert_allclose(engine.classify(crops()), raw, atol=1e-5)


def test_a_checkpoint_without_the_key_loads_with_t_1(tmp_path):
    pt = make_checkpoint(tmp_path / "old.pt", input_size=(64, 48))
    ckpt = torch.load(pt, weights_only=True)
    del ckpt["meta"]["temperature"]  # as written before the key existed
    torch.save(ckpt, pt)
    engine = load_engine(pt)
    assert engine.meta.temperature == {} and engine.temperature == {}


def test_rewrite_meta_changes_only_the_metadata(tmp_path):
    pt = make_checkpoint(tmp_path / "m.pt", input_size=(64, 48))
    export_onnx(pt, tmp_path / "m.onnx")
    before = load_engine(tmp_path / "m.onnx").classify(crops(2))
    meta = read_meta(tmp_path / "m.onnx")
    rewrite_meta(tmp_path / "m.onnx", with_temperature(meta, {"classes": 1.0}))
    again = read_meta(tmp_path / "m.onnx")
    assert again == ModelMeta(**{**meta.__dict__, "temperature": {"classes": 1.0}})
    np.testing.assert_array_equal(load_engine(tmp_path / "m.onnx").classify(crops(2)), before)
    with pytest.raises(ModelFileError):
        rewrite_meta(tmp_path / "m.onnx", with_temperature(meta, {"mask": 2.0}))  # no such softmax
    assert read_meta(tmp_path / "m.onnx").temperature == {"classes": 1.0}  # the failed write lost nothing


def test_fit_temperatures_skips_unknown_tasks_and_unlabelled_samples():
    from engines.labels import encode
    from train.data.targets import encode_target

    rng = np.random.default_rng(5)
    n = 300
    z = rng.normal(0, 1, (n, 18)) * 4
    probs = (np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)).astype(np.float32)
    masks = rng.integers(0, 3, n)
    codes = np.array([encode_target(int(m), -1, -1) for m in masks])  # mask-only labels
    t = fit_temperatures(probs, codes, "multi", {"mask": True, "gender": False, "age": False})
    assert set(t) == {"mask"} and t["mask"] > 1.0  # labels unrelated to the outputs: flatten them
    full = np.array([encode(int(m), 0, 0) for m in masks])
    assert set(fit_temperatures(probs, full, "single")) == {"classes"}
    rep = report(probs, codes, "multi", t)
    assert rep["ece_mask_calibrated"] < rep["ece_mask"] and rep["nll_mask_calibrated"] < rep["nll_mask"]


def test_cli_calibrate_writes_the_temperature_and_evaluate_reports_ece(prepared, tmp_path, capsys):
    data, cache, _ = prepared
    shutil.copytree(cache, tmp_path / "cache")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(data=data, cache=tmp_path / "cache", runs=tmp_path / "runs"))
    pt = make_checkpoint(tmp_path / "m.pt", input_size=(64, 48), seed=3)
    export_onnx(pt, tmp_path / "m.onnx")
    base = ["--config", str(config), "--threads", "1"]
    with one_torch_thread():
        # an ONNX file carries no validation split: calibrating on its training images is refused
        with pytest.raises(UserError, match="carries no validation split"):
            cli(["calibrate", *base, "--checkpoint", str(tmp_path / "m.onnx")])
        out = tmp_path / "cal.onnx"
        args = [
            "calibrate",
            *base,
            "--checkpoint",
            str(tmp_path / "m.onnx"),
            "--split",
            "all",
            "--out",
            str(out),
        ]
        assert cli(args) == 0
        printed = capsys.readouterr().out
        t = read_meta(out).temperature
        assert set(t) == {"classes"} and t["classes"] != 1.0
        assert read_meta(tmp_path / "m.onnx").temperature == {}  # --out leaves the original alone
        assert "mask ECE" in printed and str(out) in printed
        report_dir = tmp_path / "eval"
        assert (
            cli(["evaluate", *base, "--checkpoint", str(out), "--split", "all", "--report", str(report_dir)])
            == 0
        )
        printed = capsys.readouterr().out
    metrics = json.loads((report_dir / "metrics.json").read_text())
    assert metrics["temperature"] == t
    assert metrics["ece_mask"] <= metrics["ece_mask_uncalibrated"] + 1e-9  # fitted on these very images
    assert "ECE" in printed and "before the file's temperature" in printed
    assert (report_dir / "reliability.png").stat().st_size > 1000
