"""TensorRT: build, header, dynamic batch, agreement with ONNX Runtime. Runs only where tensorrt imports and a
CUDA device exists (a GPU machine with `pip install -e '.[trt,dev]'`); skipped everywhere else.
Where neither exists, test_export.py checks the one-line refusals instead.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch

trt = pytest.importorskip("tensorrt", reason="tensorrt is not installed")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from engines import load_engine, read_meta  # noqa: E402
from engines.config import ExportConfig  # noqa: E402
from engines.contract import unpack_engine  # noqa: E402
from engines.fileio import sha256_file  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from train.export.onnx import export_onnx  # noqa: E402
from train.export.tensorrt import export_tensorrt  # noqa: E402

pytestmark = pytest.mark.gpu
PROFILE = ExportConfig(min_batch=1, opt_batch=4, max_batch=8)


@pytest.fixture(scope="module")
def built(tiny_checkpoint, tmp_path_factory):
    d = tmp_path_factory.mktemp("trt")
    onnx_path = d / "m.onnx"
    export_onnx(tiny_checkpoint, onnx_path)
    fp32 = d / "m.engine"
    export_tensorrt(onnx_path, fp32, PROFILE, timing_cache=d / "timing.cache")
    # from the checkpoint: an FP16 ONNX on TensorRT 11, the FP16 builder flag on TensorRT 10
    fp16 = d / "m_fp16.engine"
    export_tensorrt(
        tiny_checkpoint,
        fp16,
        ExportConfig(fp16=True, min_batch=1, opt_batch=4, max_batch=8),
        timing_cache=d / "timing.cache",
    )
    return {"dir": d, "onnx": onnx_path, "fp32": fp32, "fp16": fp16}


def _batches(meta, sizes=(1, 7)):
    rng = np.random.default_rng(11)
    h, w = meta.input_size
    return [rng.standard_normal((n, 3, h, w)).astype(np.float32) for n in sizes]


def test_header_round_trip(built, tiny_checkpoint):
    meta, plan = unpack_engine(built["fp32"].read_bytes())
    assert len(plan) > 1000 and meta == read_meta(built["fp32"])
    src = read_meta(tiny_checkpoint)
    for key in ("arch", "head", "input_height", "input_width", "mean", "std", "crop", "labels"):
        assert getattr(meta, key) == getattr(src, key), key
    assert meta.source_sha256 == sha256_file(tiny_checkpoint)
    assert meta.precision == "fp32" and read_meta(built["fp16"]).precision == "fp16"
    assert meta.extra["tensorrt"]["version"] == trt.__version__ and meta.extra["tensorrt"]["batch"] == [
        1,
        4,
        8,
    ]
    assert (built["dir"] / "timing.cache").stat().st_size > 0


def test_fp32_engine_matches_onnx_runtime_at_dynamic_batch(built):
    eng, ort = load_engine(built["fp32"]), load_engine(built["onnx"], device="cpu")
    assert eng.runtime.startswith("TensorRT") and eng.max_batch == 8
    for x in _batches(eng.meta, (1, 7, 20)):  # 20 > the profile's max: chunked
        p_trt, p_ort = eng.infer(x), ort.infer(x)
        assert p_trt.shape == (len(x), 18) and p_trt.dtype == np.float32
        # TensorRT's default lets FP32 convolutions run in TF32 (10-bit mantissa) on Ampere and later GPUs
        assert np.abs(p_trt - p_ort).max() <= 1e-2
        assert (p_trt.argmax(1) == p_ort.argmax(1)).mean() >= 0.9
    eng.close()


def test_fp16_engine_agrees_loosely(built):
    eng, ort = load_engine(built["fp16"]), load_engine(built["onnx"], device="cpu")
    for x in _batches(eng.meta):
        p16, p32 = eng.infer(x), ort.infer(x)
        assert np.isfinite(p16).all() and np.abs(p16 - p32).max() <= 0.05
        assert (p16.argmax(1) == p32.argmax(1)).mean() >= 0.8
    eng.close()


def test_fp16_engine_really_computes_in_half_precision(built):
    """The header's 'fp16' is a label; check the engine itself (a plain FP32 build would pass the test
    above)."""
    e16, e32 = load_engine(built["fp16"]), load_engine(built["fp32"])
    if not hasattr(trt.BuilderFlag, "FP16"):  # TensorRT 11: strongly typed, from an FP16 ONNX
        assert e16._in_dtype == torch.float16 and e32._in_dtype == torch.float32
    x = _batches(e16.meta, (7,))[0]
    assert not np.array_equal(e16.infer(x), e32.infer(x))  # other kernels, other rounding
    e16.close()
    e32.close()


def test_classify_crops_through_load_engine(built):
    eng = load_engine(built["fp32"], device="cuda")
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (512, 384, 3), dtype=np.uint8) for _ in range(11)]
    probs = eng.classify(crops, batch_size=16)  # 16 > max_batch 8: classify() respects the engine's limit
    assert probs.shape == (11, 18) and np.allclose(probs.sum(1), 1.0, atol=1e-3)
    eng.close()


def test_cli_export_trt(built, tmp_path):
    out = tmp_path / "cli.engine"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "train",
            "export-trt",
            "--onnx",
            str(built["onnx"]),
            "--out",
            str(out),
            "--max-batch",
            "4",
            "--opt-batch",
            "2",
            "--timing-cache",
            str(built["dir"] / "timing.cache"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    assert read_meta(out).extra["tensorrt"]["batch"] == [1, 2, 4]
    assert load_engine(out).max_batch == 4
