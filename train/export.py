"""Export a checkpoint to the formats of engines.contract.FORMATS, with ModelMeta inside each file.

`EXPORTERS` is keyed by the FORMATS names, so the one suffix table decides both what `export()` writes and
which backend loads the result. Commands: `mask-train export-onnx` and `mask-train export-trt`.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
import warnings
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from engines.config import Config, ExportConfig
from engines.contract import INPUT_NAME, META_KEY, OUTPUT_NAME, ModelMeta, pack_engine
from engines.formats import format_for
from engines.errors import UserError
from engines.fileio import atomic_path, atomic_write_bytes, sha256_file


def read_source(checkpoint: str | os.PathLike[str]) -> tuple[ModelMeta, dict]:
    """The .pt checkpoint every export starts from: (its ModelMeta with the source hash filled in, the dict)."""
    from engines.backends.torch_backend import load_checkpoint

    path = Path(checkpoint)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    if format_for(path).name != "pytorch":
        raise UserError(f"checkpoint {path} is a {path.suffix} file; export starts from a .pt "
                        f"checkpoint (best.pt or last.pt of `mask-train fit`)")
    meta, ckpt = load_checkpoint(path)
    return replace(meta, source_sha256=sha256_file(path)), ckpt


def load_for_export(checkpoint: str | os.PathLike[str]):
    """Checkpoint -> (InferenceModel in eval mode, its ModelMeta with the source hash filled in)."""
    from engines.backends.torch_backend import build_inference_model
    from engines.contract import CKPT_MODEL

    meta, ckpt = read_source(checkpoint)
    return build_inference_model(meta, ckpt[CKPT_MODEL], str(checkpoint)), meta


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[io.StringIO]:
    """Keep torch.onnx's progress prints and warnings off the terminal (the CLI shows a spinner)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield buf


def export_onnx(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], opset: int = 18,
                fp16: bool = False) -> ModelMeta:
    """One self-contained .onnx file: dynamic batch axis, input 'images', output 'probs', metadata_props.

    fp16 traces a half-precision copy of the model: its I/O and weights are float16, which TensorRT 11
    (strongly typed) needs for an FP16 engine. torch.export traces with fake tensors, so this works on a
    CPU machine too; ONNX Runtime runs the result (the onnx backend casts the input to float16).
    """
    import onnx
    import torch

    model, meta = load_for_export(checkpoint)
    h, w = meta.input_size
    example = torch.randn(2, 3, h, w)
    if fp16:
        model, example = model.half(), example.half()
    meta = replace(meta, precision="fp16" if fp16 else "fp32")
    batch = torch.export.Dim("batch", min=1, max=4096)
    with atomic_path(out) as tmp:
        try:
            with _quiet_exporter():
                torch.onnx.export(model, (example,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  dynamic_shapes={"images": {0: batch}}, opset_version=opset,
                                  external_data=False, verbose=False)
        except Exception as exc:  # the exporter's errors are long; keep the first line
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:300]
            raise UserError(f"ONNX export of {checkpoint} failed: {first}") from None
        proto = onnx.load(str(tmp))
        del proto.metadata_props[:]
        prop = proto.metadata_props.add()
        prop.key, prop.value = META_KEY, meta.to_json()
        proto.doc_string = f"mask-monitor classifier {meta.arch} ({meta.head} head), 18 mask/gender/age classes"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return meta


def export_pytorch(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str]) -> ModelMeta:
    """A slim inference checkpoint: only the metadata (with the source hash) and the weights."""
    import torch

    from engines.contract import CKPT_META, CKPT_MODEL

    meta, ckpt = read_source(checkpoint)
    with atomic_path(out) as tmp:
        torch.save({CKPT_META: meta.to_dict(), CKPT_MODEL: ckpt[CKPT_MODEL]}, tmp)
    return meta


def export_tensorrt(source: str | os.PathLike[str], out: str | os.PathLike[str],
                    cfg: ExportConfig = ExportConfig(), timing_cache: str | os.PathLike[str] | None = None,
                    status: Callable[[str], None] = lambda _msg: None) -> ModelMeta:
    """A .engine file (header + TensorRT plan) from a checkpoint (.pt) or an ONNX file (.onnx).

    From a checkpoint, the ONNX is exported to a temporary file first: FP16 on TensorRT 11 (strongly typed),
    FP32 on TensorRT 10, where --fp16 uses the FP16 builder flag instead.
    """
    from engines.formats import read_meta
    from engines.backends.tensorrt_backend import require_tensorrt
    from train.tensorrt_build import build_plan, choose_precision, onnx_is_fp16

    src = Path(source)
    kind = format_for(src).name
    if kind not in ("pytorch", "onnx"):
        raise UserError(f"{src}: a TensorRT engine is built from a checkpoint (.pt) or an ONNX file (.onnx)")
    if not src.is_file():
        raise UserError(f"{'checkpoint' if kind == 'pytorch' else 'ONNX file'} {src} does not exist")
    trt = require_tensorrt("export-trt", " (mask-train export-onnx)")
    has_fp16_flag = hasattr(trt.BuilderFlag, "FP16")
    with tempfile.TemporaryDirectory(prefix="mask-monitor-trt-") as tmp:
        onnx_path = src
        if kind == "pytorch":
            status(f"Exporting {src.name} to ONNX")
            onnx_path = Path(tmp) / "model.onnx"
            export_onnx(src, onnx_path, opset=cfg.opset, fp16=cfg.fp16 and not has_fp16_flag)
        meta = read_meta(onnx_path)
        precision = choose_precision(cfg.fp16, onnx_is_fp16(onnx_path), has_fp16_flag)
        status(f"Building the TensorRT {trt.__version__} engine ({precision.label}, batch {cfg.min_batch}-"
               f"{cfg.max_batch}; this takes a while)")
        plan = build_plan(trt, onnx_path, meta.input_size, precision, min_batch=cfg.min_batch,
                          opt_batch=cfg.opt_batch, max_batch=cfg.max_batch, workspace_mb=cfg.workspace_mb,
                          timing_cache=Path(timing_cache) if timing_cache else None)
    import torch

    # `created` stays the model's; when and how this plan was built goes beside it
    built = {"version": str(trt.__version__), "gpu": torch.cuda.get_device_name(),
             "batch": [cfg.min_batch, cfg.opt_batch, cfg.max_batch], "strongly_typed": precision.strongly_typed,
             "built": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    meta = replace(meta, precision=precision.label, extra={**meta.extra, "tensorrt": built})
    atomic_write_bytes(out, pack_engine(meta, plan))
    return meta


# --- one table: FORMATS name -> exporter ---------------------------------------------------------------------

Exporter = Callable[[Path, Path, ExportConfig], ModelMeta]


def _to_pytorch(checkpoint: Path, out: Path, cfg: ExportConfig) -> ModelMeta:
    return export_pytorch(checkpoint, out)


def _to_onnx(checkpoint: Path, out: Path, cfg: ExportConfig) -> ModelMeta:
    return export_onnx(checkpoint, out, opset=cfg.opset, fp16=cfg.fp16)


def _to_tensorrt(checkpoint: Path, out: Path, cfg: ExportConfig) -> ModelMeta:
    return export_tensorrt(checkpoint, out, cfg, timing_cache=default_timing_cache(out, cfg))


EXPORTERS: dict[str, Exporter] = {"pytorch": _to_pytorch, "onnx": _to_onnx, "tensorrt": _to_tensorrt}


def export(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str],
           cfg: ExportConfig = ExportConfig()) -> ModelMeta:
    """Write `out` in the format its suffix names (engines.contract.FORMATS), from a checkpoint."""
    fmt = format_for(out)
    return EXPORTERS[fmt.name](Path(checkpoint), Path(out), cfg)


def default_timing_cache(out: str | os.PathLike[str], cfg: ExportConfig) -> Path:
    """export.timing_cache, or timing.cache beside the engine (shared by the engines built there)."""
    return Path(cfg.timing_cache) if cfg.timing_cache else Path(out).parent / "timing.cache"


# --- the commands ---------------------------------------------------------------------------------------------

def _add_precision_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fp16", dest="export.fp16", action=argparse.BooleanOptionalAction, default=None,
                   help="half precision (default: [export] fp16)")
    p.add_argument("--opset", dest="export.opset", type=int, default=None, metavar="N",
                   help="ONNX opset (default: [export] opset)")


def add_arguments_export_onnx(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, type=Path, metavar="FILE", help="a .pt checkpoint")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="the .onnx file to write")
    _add_precision_flags(p)


def add_arguments_export_trt(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--onnx", type=Path, metavar="FILE", help="an .onnx file from export-onnx")
    src.add_argument("--checkpoint", type=Path, metavar="FILE", help="a .pt checkpoint (exported to ONNX first)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="the .engine file to write")
    _add_precision_flags(p)
    for flag, key in (("--min-batch", "min_batch"), ("--opt-batch", "opt_batch"), ("--max-batch", "max_batch")):
        p.add_argument(flag, dest=f"export.{key}", type=int, default=None, metavar="N",
                       help=f"optimisation profile (default: [export] {key})")
    p.add_argument("--workspace-mb", dest="export.workspace_mb", type=int, default=None, metavar="MB",
                   help="builder workspace (default: [export] workspace_mb)")
    p.add_argument("--timing-cache", dest="export.timing_cache", default=None, metavar="FILE",
                   help="TensorRT timing cache, read and updated (default: [export] timing_cache, "
                        "else timing.cache beside --out)")


def _expect_suffix(out: Path, suffix: str, other: str) -> None:
    if out.suffix.lower() != suffix:
        raise UserError(f"--out {out}: expected a {suffix} file (got {out.suffix or 'no suffix'!r}); "
                        f"for another format use {other}")


@contextlib.contextmanager
def _spinner(message: str) -> Iterator[Callable[[str], None]]:
    from rich.console import Console

    with Console(stderr=True).status(message, spinner="dots") as st:
        yield lambda msg: st.update(msg)


def _summary(out: Path, meta: ModelMeta, seconds: float, what: str) -> str:
    size = out.stat().st_size / 1e6
    return (f"wrote {out} ({what}, {meta.precision}, {meta.arch} {meta.head} head, input "
            f"{meta.input_width}x{meta.input_height}, {size:.1f} MB, {seconds:.1f} s)")


def run_export_onnx(args: argparse.Namespace, cfg: Config) -> int:
    _expect_suffix(args.out, ".onnx", "export-trt (.engine)")
    t0 = time.perf_counter()
    with _spinner(f"Exporting {args.checkpoint.name} to ONNX (opset {cfg.export.opset})"):
        meta = export_onnx(args.checkpoint, args.out, opset=cfg.export.opset, fp16=cfg.export.fp16)
    print(_summary(args.out, meta, time.perf_counter() - t0, f"ONNX opset {cfg.export.opset}"))
    return 0


def run_export_trt(args: argparse.Namespace, cfg: Config) -> int:
    _expect_suffix(args.out, ".engine", "export-onnx (.onnx)")
    source = args.onnx or args.checkpoint
    expected = ".onnx" if args.onnx else ".pt"
    if source.suffix.lower() != expected:
        raise UserError(f"{'--onnx' if args.onnx else '--checkpoint'} {source}: expected a {expected} file")
    timing = Path(cfg.resolve(cfg.export.timing_cache)) if cfg.export.timing_cache else None
    timing = timing or default_timing_cache(args.out, cfg.export)
    t0 = time.perf_counter()
    with _spinner(f"Preparing the TensorRT build of {source.name}") as status:
        meta = export_tensorrt(source, args.out, cfg.export, timing_cache=timing, status=status)
    print(_summary(args.out, meta, time.perf_counter() - t0, f"TensorRT {meta.extra['tensorrt']['version']}"))
    print(f"timing cache: {timing}")
    return 0
