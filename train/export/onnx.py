"""The .onnx row of engines.formats.FORMATS: a checkpoint as one self-contained ONNX file, dynamic batch,
ModelMeta in its metadata_props (to_onnx is the exporter that row names)."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from engines.config import ExportConfig
from engines.contract import INPUT_NAME, META_KEY, OUTPUT_NAME, ModelMeta
from engines.errors import UserError
from engines.fileio import atomic_path
from engines.labels import NUM_CLASSES
from train.export.pytorch import load_for_export


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[io.StringIO]:
    """Keep torch.onnx's progress prints and warnings off the terminal (the CLI shows a spinner)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield buf


def export_onnx(
    checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], opset: int = 18, fp16: bool = False
) -> ModelMeta:
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
                torch.onnx.export(
                    model,
                    (example,),
                    str(tmp),
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_shapes={"images": {0: batch}},
                    opset_version=opset,
                    external_data=False,
                    verbose=False,
                )
        except Exception as exc:  # the exporter's errors are long; keep the first line
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:300]
            raise UserError(f"ONNX export of {checkpoint} failed: {first}") from None
        proto = onnx.load(str(tmp))
        del proto.metadata_props[:]
        prop = proto.metadata_props.add()
        prop.key, prop.value = META_KEY, meta.to_json()
        proto.doc_string = (
            f"mask-monitor classifier {meta.arch} ({meta.head} head), {NUM_CLASSES} mask/gender/age classes"
        )
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return meta


def to_onnx(checkpoint: Path, out: Path, cfg: ExportConfig, status=lambda _msg: None) -> ModelMeta:
    """The exporter engines.formats names for .onnx files: export.opset and export.fp16 from the config
    (`status` hears each step: the CLI's spinner)."""
    return export_onnx(checkpoint, out, opset=cfg.opset, fp16=cfg.fp16)
