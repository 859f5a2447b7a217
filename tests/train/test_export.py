"""Export: ONNX Runtime agrees with PyTorch, metadata travels, the CLIs answer in one line.

ONNX exports take ~10 s each, so each file is exported once per module and shared.
"""

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from engines import FORMATS, ModelFileError, UserError, load_engine, read_meta
from engines.config import ExportConfig
from engines.contract import INPUT_NAME, pack_engine, unpack_engine
from engines.fileio import sha256_file
from tests.conftest import REPO
from train.export import export
from train.export.onnx import export_onnx
from train.export.tensorrt import TRT11_FP16_HINT, choose_precision, export_tensorrt


def _trt_here() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:
        return False
    return torch.cuda.is_available()


no_trt_here = pytest.mark.skipif(
    _trt_here(), reason="this machine has TensorRT and CUDA (see test_tensorrt.py)"
)


def _train(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "train", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _one_error_line(r, *needles):
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def single_onnx(tiny_checkpoint, onnx_dir):
    """Through the generic export(): the suffix picks the exporter."""
    out = onnx_dir / "single.onnx"
    export(tiny_checkpoint, out)
    return out


@pytest.fixture(scope="module")
def multi_onnx_cli(tiny_multi_checkpoint, onnx_dir):
    """Through the command line, end to end."""
    out = onnx_dir / "multi.onnx"
    r = _train("export-onnx", "--checkpoint", tiny_multi_checkpoint, "--out", out, "--opset", 18)
    return out, r


@pytest.fixture(scope="module")
def fp16_onnx(tiny_checkpoint, onnx_dir):
    out = onnx_dir / "single_fp16.onnx"
    export_onnx(tiny_checkpoint, out, fp16=True)
    return out


def _random_batches(meta, seed):
    rng = np.random.default_rng(seed)  # fresh input, not the tracing example
    h, w = meta.input_size
    return [rng.standard_normal((n, 3, h, w)).astype(np.float32) for n in (1, 7)]


def test_exporters_and_formats_name_the_same_formats(tiny_checkpoint, tmp_path):
    """Every FORMATS row's exporter resolves, and writes a file that read_meta reads back (where it can
    run)."""
    for fmt in FORMATS.values():
        exporter = fmt.load("exporter")
        assert callable(exporter), fmt.name
        if fmt.needs_gpu and not _trt_here():
            continue
        out = tmp_path / f"model{fmt.suffix}"
        meta = exporter(tiny_checkpoint, out, ExportConfig())
        assert read_meta(out).arch == meta.arch and read_meta(out).input_size == meta.input_size


@pytest.mark.parametrize("head", ["single", "multi"])
def test_onnx_runtime_matches_pytorch(
    head, tiny_checkpoint, tiny_multi_checkpoint, single_onnx, multi_onnx_cli
):
    ckpt, onnx_path = (
        (tiny_checkpoint, single_onnx) if head == "single" else (tiny_multi_checkpoint, multi_onnx_cli[0])
    )
    pt, ort = load_engine(ckpt, device="cpu"), load_engine(onnx_path, device="cpu")
    assert ort.runtime.startswith("ONNX Runtime") and pt.meta.head == ort.meta.head == head
    for x in _random_batches(pt.meta, seed=7):
        p_pt, p_ort = pt.infer(x), ort.infer(x)
        assert p_ort.shape == (len(x), 18) and p_ort.dtype == np.float32
        assert np.abs(p_pt - p_ort).max() <= 1e-4
        assert np.allclose(p_ort.sum(1), 1.0, atol=1e-5)
    p = ort.infer(_random_batches(pt.meta, seed=8)[1])
    assert np.abs(p[0] - p[1:]).max() > 1e-3  # the outputs depend on the input


@pytest.mark.parametrize("head", ["single", "multi"])
def test_onnx_metadata_round_trips(head, tiny_checkpoint, tiny_multi_checkpoint, single_onnx, multi_onnx_cli):
    import onnx

    ckpt, onnx_path = (
        (tiny_checkpoint, single_onnx) if head == "single" else (tiny_multi_checkpoint, multi_onnx_cli[0])
    )
    src, meta = read_meta(ckpt), read_meta(onnx_path)
    for key in (
        "arch",
        "head",
        "input_height",
        "input_width",
        "mean",
        "std",
        "crop",
        "labels",
        "age_old_threshold",
    ):
        assert getattr(meta, key) == getattr(src, key), key
    assert meta.source_sha256 == sha256_file(ckpt)
    assert meta.precision == "fp32"
    created = datetime.fromisoformat(meta.created)
    assert abs((datetime.now(UTC) - created).total_seconds()) < 24 * 3600
    model = onnx.load(str(onnx_path))
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == INPUT_NAME and dims[0].dim_param and not dims[0].dim_value  # dynamic batch
    assert [d.dim_value for d in dims[1:]] == [3, *meta.input_size]
    # one self-contained file: every weight inside it, nothing beside it
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert [p.name for p in onnx_path.parent.iterdir() if p.name.startswith(onnx_path.name)] == [
        onnx_path.name
    ]


def test_cli_export_onnx_is_quiet_and_reports_the_file(multi_onnx_cli):
    out, r = multi_onnx_cli
    assert r.returncode == 0, r.stderr
    assert out.is_file() and f"wrote {out}" in r.stdout
    assert "[torch.onnx]" not in r.stdout + r.stderr and "Traceback" not in r.stderr


def test_fp16_onnx_runs_in_onnx_runtime_and_agrees_loosely(tiny_checkpoint, fp16_onnx):
    import onnx

    model = onnx.load(str(fp16_onnx))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    pt, ort = load_engine(tiny_checkpoint, device="cpu"), load_engine(fp16_onnx, device="cpu")
    assert ort.meta.precision == "fp16" and ort.meta.source_sha256 == sha256_file(tiny_checkpoint)
    for x in _random_batches(pt.meta, seed=3):
        p_pt, p16 = pt.infer(x), ort.infer(x)
        assert p16.dtype == np.float32 and np.isfinite(p16).all()
        assert np.abs(p_pt - p16).max() <= 0.05
        assert (p_pt.argmax(1) == p16.argmax(1)).mean() >= 0.8


def test_export_to_pt_writes_a_slim_checkpoint_with_the_source_hash(tiny_checkpoint, tmp_path):
    out = tmp_path / "slim.pt"
    meta = export(tiny_checkpoint, out)
    assert meta.source_sha256 == sha256_file(tiny_checkpoint) == read_meta(out).source_sha256
    assert set(torch.load(out, weights_only=True)) == {"meta", "model"}
    x = _random_batches(meta, seed=1)[1]
    assert np.array_equal(
        load_engine(out, device="cpu").infer(x), load_engine(tiny_checkpoint, device="cpu").infer(x)
    )


def test_export_refuses_unknown_suffix(tiny_checkpoint, tmp_path):
    with pytest.raises(ModelFileError, match="unknown suffix '.pth'"):
        export(tiny_checkpoint, tmp_path / "m.pth")


@pytest.mark.parametrize("case", ["missing", "corrupt", "suffix"])
def test_cli_bad_checkpoint_or_out_is_one_line_exit_2(case, tmp_path, tiny_checkpoint):
    ckpt = {"missing": tmp_path / "nope.pt", "corrupt": tmp_path / "junk.pt", "suffix": tiny_checkpoint}[case]
    if case == "corrupt":
        ckpt.write_bytes(b"\x00this is not a checkpoint" * 20)
    out = tmp_path / ("m.engine" if case == "suffix" else "m.onnx")
    r = _train("export-onnx", "--checkpoint", ckpt, "--out", out)
    assert r.returncode == 2
    line = _one_error_line(r, "mask-train: error:")
    assert (str(ckpt) if case != "suffix" else "`mask-train export` (.pt, .onnx, .engine)") in line
    if case == "corrupt":
        assert "not a PyTorch checkpoint" in line and "unpickle" not in line
    assert not out.exists()


def test_an_onnx_file_given_as_checkpoint_is_named_as_such(single_onnx, tmp_path):
    with pytest.raises(UserError, match=r"is a \.onnx file; export starts from a \.pt checkpoint"):
        export_onnx(single_onnx, tmp_path / "again.onnx")
    assert not (tmp_path / "again.onnx").exists()


@no_trt_here
@pytest.mark.parametrize("source", ["--onnx", "--checkpoint"])
def test_cli_export_trt_here_is_one_clear_line(source, tiny_checkpoint, single_onnx, tmp_path):
    src = single_onnx if source == "--onnx" else tiny_checkpoint
    out = tmp_path / "m.engine"
    r = _train("export-trt", source, src, "--out", out, "--fp16")
    _one_error_line(r, "export-trt needs TensorRT and an NVIDIA GPU with CUDA", ".onnx file on a CPU machine")
    assert not out.exists() and r.stdout == ""


@no_trt_here
def test_export_to_engine_and_loading_an_engine_here_say_so_in_one_line(tiny_checkpoint, tmp_path):
    with pytest.raises(UserError, match="needs TensorRT") as exc:
        export(tiny_checkpoint, tmp_path / "m.engine")
    assert "\n" not in str(exc.value)
    eng = tmp_path / "m.engine"
    eng.write_bytes(pack_engine(read_meta(tiny_checkpoint), b"not a real plan"))
    with pytest.raises(UserError) as exc:
        load_engine(eng)
    msg = str(exc.value)
    assert "\n" not in msg and str(eng) in msg and "use the .onnx file on a cpu machine" in msg.lower()
    with pytest.raises(UserError, match="only on an NVIDIA GPU"):
        load_engine(eng, device="cpu")


# --- TensorRT 10 / 11 precision rules and the build's use of the API --------------------------------------


def test_precision_rules_for_tensorrt_10_and_11():
    # TensorRT 10: --fp16 on an FP32 ONNX uses the FP16 builder flag (weak typing)
    p = choose_precision(fp16=True, onnx_fp16=False, has_fp16_flag=True)
    assert (p.label, p.fp16_flag, p.strongly_typed) == ("fp16", True, False)
    # an FP16 ONNX is strongly typed on both versions; no flag
    for has_flag in (True, False):
        p = choose_precision(fp16=True, onnx_fp16=True, has_fp16_flag=has_flag)
        assert (p.label, p.fp16_flag, p.strongly_typed) == ("fp16", False, True)
    # FP32 stays strongly typed FP32
    p = choose_precision(fp16=False, onnx_fp16=False, has_fp16_flag=False)
    assert (p.label, p.fp16_flag, p.strongly_typed) == ("fp32", False, True)
    # TensorRT 11 cannot make an FP32 ONNX into FP16
    with pytest.raises(UserError, match="export-onnx --fp16"):
        choose_precision(fp16=True, onnx_fp16=False, has_fp16_flag=False)


def _recording_tensorrt(major: int, calls: list):
    """A stand-in for the `tensorrt` module that records what the builder is asked (no GPU here).

    It checks this project's sequence of calls and branches for each version, not TensorRT itself:
    test_tensorrt.py does that where TensorRT and a GPU exist.
    """
    import types

    trt = types.SimpleNamespace(__version__=f"{major}.1.0")
    trt.Logger = type("Logger", (), {"WARNING": 2, "ERROR": 1, "__init__": lambda self, level: None})
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
    trt.BuilderFlag = types.SimpleNamespace(**({"FP16": 5} if major == 10 else {}), TF32=7)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)
    named = lambda name: types.SimpleNamespace(name=name)  # noqa: E731

    class Network:
        num_inputs = num_outputs = 1
        get_input = staticmethod(lambda i: named(INPUT_NAME))
        get_output = staticmethod(lambda i: named("probs"))

    class Cache:
        def __init__(self, data):
            self.data = data

        def serialize(self):
            return b"CACHE" + self.data[:5]

    class Config:
        def __getattr__(self, name):
            if name == "create_timing_cache":
                return lambda data: calls.append(("timing_cache_in", bytes(data))) or Cache(bytes(data))
            if name == "set_timing_cache":
                return lambda cache, ignore_mismatch: setattr(self, "cache", cache) or True
            if name == "get_timing_cache":
                return lambda: self.cache
            return lambda *a: calls.append((name, *a))

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            calls.append(("profile", name, lo, opt, hi))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls.append(("network_flags", flags))
            return Network()

        create_builder_config = staticmethod(Config)
        create_optimization_profile = staticmethod(Profile)

        def build_serialized_network(self, network, config):
            return b"PLAN"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            calls.append(("parse", Path(path)))
            return True

    trt.Builder, trt.OnnxParser = Builder, OnnxParser
    return trt


@pytest.mark.parametrize("major", [10, 11])
def test_trt_build_sequence_for_each_version(major, single_onnx, fp16_onnx, tmp_path, monkeypatch):
    import engines.backends.tensorrt_backend as backend

    calls: list = []
    monkeypatch.setattr(backend, "require_tensorrt", lambda *a: _recording_tensorrt(major, calls))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU")
    cfg = ExportConfig(fp16=True, min_batch=2, opt_batch=4, max_batch=16, workspace_mb=64)
    cache = tmp_path / "timing.cache"
    out = tmp_path / "m.engine"
    onnx_in = single_onnx if major == 10 else fp16_onnx  # TensorRT 11: FP16 must come from the ONNX
    meta = export_tensorrt(onnx_in, out, cfg, timing_cache=cache)
    h, w = meta.input_size
    assert ("parse", onnx_in) in calls
    assert ("profile", INPUT_NAME, (2, 3, h, w), (4, 3, h, w), (16, 3, h, w)) in calls
    assert ("set_memory_pool_limit", 0, 64 << 20) in calls
    assert ("network_flags", 0) in calls  # 10: weak typing + FP16 flag; 11: strongly typed, no flag to pass
    assert (("set_flag", 5) in calls) == (major == 10)
    assert ("timing_cache_in", b"") in calls and cache.read_bytes() == b"CACHE"
    file_meta, plan = unpack_engine(out.read_bytes())
    assert plan == b"PLAN" and file_meta == meta == read_meta(out)
    assert meta.precision == "fp16" and meta.source_sha256 == read_meta(onnx_in).source_sha256
    assert meta.extra["tensorrt"]["batch"] == [2, 4, 16] and meta.extra["tensorrt"]["version"].startswith(
        str(major)
    )
    assert meta.created == read_meta(onnx_in).created and datetime.fromisoformat(
        meta.extra["tensorrt"]["built"]
    )
    # the saved timing cache is read back by the next build
    export_tensorrt(onnx_in, out, cfg, timing_cache=cache)
    assert ("timing_cache_in", b"CACHE") in calls
    if major == 11:  # an FP32 ONNX cannot become FP16 on TensorRT 11: one line that says what to do
        with pytest.raises(UserError, match="export-onnx --fp16") as exc:
            export_tensorrt(single_onnx, tmp_path / "x.engine", cfg)
        assert str(exc.value) == TRT11_FP16_HINT and not (tmp_path / "x.engine").exists()
    else:  # FP32 on TensorRT 10: a strongly typed network, the STRONGLY_TYPED bit set
        calls.clear()
        export_tensorrt(single_onnx, out, ExportConfig(), timing_cache=None)
        assert ("network_flags", 1 << 0) in calls and not any(c[0] == "set_flag" for c in calls)
        assert read_meta(out).precision == "fp32"


# --- bench-engines ------------------------------------------------------------------------------------------


def test_bench_mtcnn_counts_weak_detections_apart():
    """Its `faces` is what would start a person; a weak detection (the permissive thresholds let them
    through) is counted apart, so one weak false face does not read as a second face."""
    from engines.faces import Face
    from train.export.bench import bench_mtcnn

    class Detector:
        def __init__(self, scores):
            self.scores = scores

        def detect(self, frame):
            assert frame.shape == (120, 160, 3)
            return [Face((0.0, 0.0, 10.0, 10.0), s) for s in self.scores]

    photo = np.zeros((40, 30, 3), np.uint8)
    r = bench_mtcnn(Detector([0.99, 0.43]), 160, 120, photo, repeats=2, confirm=0.9)
    assert (r["faces"], r["weak"]) == (1, 1) and 0 <= r["median_ms"] <= r["p95_ms"]
    r = bench_mtcnn(Detector([0.95, 0.91]), 160, 120, photo, repeats=1, confirm=0.9)
    assert (r["faces"], r["weak"]) == (2, 0)


@pytest.mark.slow
def test_bench_engines_writes_positive_numbers(tiny_checkpoint, tmp_path):
    """Not a timing test: it checks the benchmark runs end to end and reports what it should."""
    out = tmp_path / "bench.json"
    r = _train("bench-engines", "--checkpoint", tiny_checkpoint, "--repeats", 1, "--json", out, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "ONNX Runtime / PyTorch" in r.stdout and "MTCNN" in r.stdout
    res = json.loads(out.read_text())
    assert set(res) >= {"machine", "model", "classifier", "mtcnn", "target"} and res["machine"]["cpus"] >= 1
    assert res["formats"] == {"pytorch": "PyTorch", "onnx": "ONNX Runtime"}  # every CPU row, baseline first
    cases = {(tuple(c["input"]), c["batch"]) for c in res["classifier"]}
    assert cases == {(s, b) for s in ((128, 96), (512, 384)) for b in (1, 8)}
    for c in res["classifier"]:
        rates = c["crops_per_s"]
        assert rates["pytorch"] > 0 and rates["onnx"] > 0 and c["ratio"]["pytorch"] == 1.0
        # the rates are rounded to 2 decimals and the ratio comes from the unrounded ones: on a loaded
        # machine PyTorch may manage well under 1 crop/s, where that rounding alone moves the ratio
        rel = 0.01 + 0.005 / rates["pytorch"] + 0.005 / rates["onnx"]
        assert c["ratio"]["onnx"] == pytest.approx(rates["onnx"] / rates["pytorch"], rel=rel)
    assert [m["frame"] for m in res["mtcnn"]] == [[640, 480], [1280, 720]]
    for m in res["mtcnn"]:
        assert 0 < m["median_ms"] <= m["p95_ms"] and m["faces"] >= 1 and m["weak"] >= 0
    # the astronaut's face alone at 640x480; MTCNN on the whole 1280x720 frame (the monitor shrinks it to
    # 320 px first) also sees a 21-px 'face' in the dark shuttle base beside her (0.81-0.94 by nets file)
    assert res["mtcnn"][0]["faces"] == 1 and res["mtcnn"][1]["faces"] <= 2
    assert res["target"]["ratio"] == next(
        c["ratio"]["onnx"] for c in res["classifier"] if c["input"] == [128, 96] and c["batch"] == 8
    )


def test_one_export_command_writes_each_format_its_out_suffix_names(tiny_checkpoint, tmp_path):
    """`mask-train export` reaches every exporter through the table: the .pt row's slim checkpoint too."""
    for suffix in (".onnx", ".pt"):
        out = tmp_path / f"m{suffix}"
        r = _train("export", "--checkpoint", tiny_checkpoint, "--out", out)
        assert r.returncode == 0, r.stderr
        assert f"wrote {out}" in r.stdout and read_meta(out).source_sha256 == sha256_file(tiny_checkpoint)
    assert (
        "opset 18" in _train("export", "--checkpoint", tiny_checkpoint, "--out", tmp_path / "o.onnx").stdout
    )


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--out", "m.onnx", "--min-batch", "4"], "--min-batch: not a setting of .onnx files"),
        (["--out", "m.pt", "--fp16"], "--fp16: not a setting of .pt files"),
        (["--out", "m.pth"], "unknown suffix '.pth'"),
    ],
)
def test_export_refuses_a_flag_or_suffix_its_format_does_not_take(args, needle, tiny_checkpoint, tmp_path):
    args = [str(tmp_path / a) if a.startswith("m.") else a for a in args]
    r = _train("export", "--checkpoint", tiny_checkpoint, *args)
    assert r.returncode == 2
    _one_error_line(r, needle)
    assert not any(tmp_path.iterdir())


def test_export_names_what_a_format_is_exported_from(single_onnx, tmp_path):
    r = _train("export", "--checkpoint", single_onnx, "--out", tmp_path / "again.onnx")
    _one_error_line(r, "a .onnx file is exported from .pt, not .onnx")
    assert not (tmp_path / "again.onnx").exists()


def test_a_new_formats_row_brings_its_flags_with_it():
    """Adding a format is one row: its [export] settings become flags of `mask-train export`."""
    import argparse

    from engines.formats import ExportOption, ModelFormat
    from train.options import add_export_flags, export_flags_given

    row = ModelFormat(
        "other",
        ".other",
        "Other Runtime",
        "m:Engine",
        "m:read_meta",
        "m:to_other",
        options=(ExportOption("--workspace-mb", "workspace_mb", "scratch memory", "MB"),),
    )
    p = argparse.ArgumentParser()
    add_export_flags(p, [FORMATS[".onnx"], row])
    args = p.parse_args(["--workspace-mb", "64", "--no-fp16"])
    assert getattr(args, "export.workspace_mb") == 64 and getattr(args, "export.fp16") is False
    assert export_flags_given(args, [FORMATS[".onnx"], row]) == {
        "--fp16": "export.fp16",
        "--workspace-mb": "export.workspace_mb",
    }
    with pytest.raises(ValueError, match="not an \\[export\\] key"):
        ExportOption("--speed", "speed", "no such key")
