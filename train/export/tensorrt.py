"""The .engine row of engines.formats.FORMATS: ONNX (or a checkpoint, exported to ONNX first) -> a TensorRT
plan behind the engine header (to_tensorrt is the exporter that row names). Written against TensorRT 10
and 11.

The two versions differ in how FP16 is asked for. TensorRT 10 still has weak typing: an FP32 network
with BuilderFlag.FP16 lets the builder pick FP16 kernels. TensorRT 11 removed that flag: every network
is strongly typed, so FP16 must already be in the ONNX (exported from a half-precision model). An FP16
ONNX is built as a strongly typed network on both versions; `choose_precision` holds that rule.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from engines.backends import tensorrt_backend
from engines.config import ExportConfig
from engines.contract import INPUT_NAME, OUTPUT_NAME, ModelMeta, pack_engine
from engines.errors import UserError
from engines.fileio import atomic_write_bytes, require_file
from engines.formats import format_for, read_meta
from train.export.onnx import export_onnx

TRT11_FP16_HINT = (
    "TensorRT 11 has no FP16 builder flag (its networks are strongly typed): build from an FP16 "
    "ONNX (mask-train export-onnx --fp16), or pass --checkpoint with --fp16"
)


@dataclass(frozen=True)
class Precision:
    """How one build gets its precision."""

    label: str  # "fp16" | "fp32": what the engine computes in, written into its header
    strongly_typed: bool  # types come from the ONNX (NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    fp16_flag: bool  # BuilderFlag.FP16 (TensorRT 10 weak typing)


def choose_precision(fp16: bool, onnx_fp16: bool, has_fp16_flag: bool) -> Precision:
    """The build's precision from what was asked, what the ONNX holds, and what this TensorRT offers."""
    if onnx_fp16:
        return Precision("fp16", strongly_typed=True, fp16_flag=False)
    if not fp16:
        return Precision("fp32", strongly_typed=True, fp16_flag=False)
    if has_fp16_flag:
        return Precision("fp16", strongly_typed=False, fp16_flag=True)
    raise UserError(TRT11_FP16_HINT)


def onnx_is_fp16(path: str | os.PathLike[str]) -> bool:
    """Whether the ONNX file's input is float16 (a half-precision export)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inputs = [i for i in model.graph.input if i.name == INPUT_NAME]
    if not inputs:
        raise UserError(
            f"{path}: the ONNX file has no input named {INPUT_NAME!r}; export it with "
            f"`mask-train export-onnx`"
        )
    return inputs[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


def network_flags(trt: ModuleType, strongly_typed: bool) -> int:
    """0 on TensorRT 11 (strong typing is always on, the flag deprecated); the STRONGLY_TYPED bit on 10."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if not strongly_typed or flag is None or not hasattr(trt.BuilderFlag, "FP16"):
        return 0
    return 1 << int(flag)


def _load_timing_cache(config, path: Path | None):
    """Give the builder the timing cache from `path` (if any); a stale or foreign one is replaced."""
    data = path.read_bytes() if path is not None and path.is_file() else b""
    try:
        cache = config.create_timing_cache(data)
    except Exception:  # a corrupt file: its timings are lost, the build is not
        cache = None
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _save_timing_cache(config, path: Path | None) -> None:
    if path is None:
        return
    cache = config.get_timing_cache()
    if cache is not None:
        atomic_write_bytes(path, bytes(memoryview(cache.serialize())))


def _parse(trt: ModuleType, builder, logger, onnx_path: Path, strongly_typed: bool):
    network = builder.create_network(network_flags(trt, strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors)) or "no details"
        raise UserError(f"{onnx_path}: TensorRT's ONNX parser refused it: {errors[:300]}")
    names_in = [network.get_input(i).name for i in range(network.num_inputs)]
    names_out = [network.get_output(i).name for i in range(network.num_outputs)]
    if names_in != [INPUT_NAME] or names_out != [OUTPUT_NAME]:
        raise UserError(
            f"{onnx_path}: I/O {names_in} -> {names_out}, expected [{INPUT_NAME!r}] -> "
            f"[{OUTPUT_NAME!r}]; export it with `mask-train export-onnx`"
        )
    return network, parser


def build_plan(
    trt: ModuleType,
    onnx_path: Path,
    input_size: tuple[int, int],
    precision: Precision,
    *,
    min_batch: int,
    opt_batch: int,
    max_batch: int,
    workspace_mb: int,
    timing_cache: Path | None = None,
) -> bytes:
    """A serialized TensorRT plan with one optimisation profile over the batch dimension."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse(
        trt, builder, logger, onnx_path, precision.strongly_typed
    )  # parser owns weights
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if precision.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    h, w = input_size
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (min_batch, 3, h, w), (opt_batch, 3, h, w), (max_batch, 3, h, w))
    config.add_optimization_profile(profile)
    _load_timing_cache(config, timing_cache)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise UserError(
            f"TensorRT could not build an engine from {onnx_path} (its messages above say why; "
            f"a larger --workspace-mb or a smaller --max-batch may help)"
        )
    _save_timing_cache(config, timing_cache)
    return bytes(memoryview(plan))


# --- the exporter ------------------------------------------------------------------------------------------


def export_tensorrt(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    cfg: ExportConfig = ExportConfig(),
    timing_cache: str | os.PathLike[str] | None = None,
    status: Callable[[str], None] = lambda _msg: None,
) -> ModelMeta:
    """A .engine file (header + TensorRT plan) from a checkpoint (.pt) or an ONNX file (.onnx).

    From a checkpoint, the ONNX is exported to a temporary file first: FP16 on TensorRT 11 (strongly typed),
    FP32 on TensorRT 10, where --fp16 uses the FP16 builder flag instead.
    """
    src = Path(source)
    kind = format_for(src).name
    if kind not in ("pytorch", "onnx"):
        raise UserError(f"{src}: a TensorRT engine is built from a checkpoint (.pt) or an ONNX file (.onnx)")
    require_file(src, "checkpoint" if kind == "pytorch" else "ONNX file")
    trt = tensorrt_backend.require_tensorrt("export-trt", " (mask-train export-onnx)")
    has_fp16_flag = hasattr(trt.BuilderFlag, "FP16")
    with tempfile.TemporaryDirectory(prefix="mask-monitor-trt-") as tmp:
        onnx_path = src
        if kind == "pytorch":
            status(f"Exporting {src.name} to ONNX")
            onnx_path = Path(tmp) / "model.onnx"
            export_onnx(src, onnx_path, opset=cfg.opset, fp16=cfg.fp16 and not has_fp16_flag)
        meta = read_meta(onnx_path)
        precision = choose_precision(cfg.fp16, onnx_is_fp16(onnx_path), has_fp16_flag)
        status(
            f"Building the TensorRT {trt.__version__} engine ({precision.label}, batch {cfg.min_batch}-"
            f"{cfg.max_batch}; this takes a while)"
        )
        plan = build_plan(
            trt,
            onnx_path,
            meta.input_size,
            precision,
            min_batch=cfg.min_batch,
            opt_batch=cfg.opt_batch,
            max_batch=cfg.max_batch,
            workspace_mb=cfg.workspace_mb,
            timing_cache=Path(timing_cache) if timing_cache else None,
        )
    import torch  # only for the GPU's name; torch is loaded by now

    # `created` stays the model's; when and how this plan was built goes beside it
    built = {
        "version": str(trt.__version__),
        "gpu": torch.cuda.get_device_name(),
        "batch": [cfg.min_batch, cfg.opt_batch, cfg.max_batch],
        "strongly_typed": precision.strongly_typed,
        "built": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    meta = replace(meta, precision=precision.label, extra={**meta.extra, "tensorrt": built})
    atomic_write_bytes(out, pack_engine(meta, plan))
    return meta


def default_timing_cache(out: str | os.PathLike[str], cfg: ExportConfig) -> Path:
    """export.timing_cache, or timing.cache beside the engine (shared by the engines built there)."""
    return Path(cfg.timing_cache) if cfg.timing_cache else Path(out).parent / "timing.cache"


def to_tensorrt(
    source: Path, out: Path, cfg: ExportConfig, status: Callable[[str], None] = lambda _msg: None
) -> ModelMeta:
    """The exporter engines.formats names for .engine files; `status` hears each build step (the CLI's
    spinner)."""
    return export_tensorrt(source, out, cfg, timing_cache=default_timing_cache(out, cfg), status=status)
