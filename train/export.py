"""Export a checkpoint to the formats of engines.contract.FORMATS, with ModelMeta inside each file."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from engines.contract import INPUT_NAME, META_KEY, OUTPUT_NAME, ModelMeta
from engines.errors import UserError
from engines.fileio import atomic_path, sha256_file


def load_for_export(checkpoint: str | os.PathLike[str]):
    """Checkpoint -> (InferenceModel in eval mode, its ModelMeta with the source hash filled in)."""
    from engines.backends.torch_backend import CKPT_MODEL, build_inference_model, load_checkpoint

    path = Path(checkpoint)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    meta, ckpt = load_checkpoint(path)
    model = build_inference_model(meta, ckpt[CKPT_MODEL], str(path))
    return model, replace(meta, source_sha256=sha256_file(path))


def export_onnx(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], opset: int = 18,
                fp16: bool = False) -> ModelMeta:
    """One self-contained .onnx file: dynamic batch axis, input 'images', output 'probs', metadata_props."""
    import onnx
    import torch

    model, meta = load_for_export(checkpoint)
    h, w = meta.input_size
    example = torch.randn(2, 3, h, w)
    if fp16:
        model, example = model.half(), example.half()
        meta = replace(meta, precision="fp16")
    batch = torch.export.Dim("batch", min=1, max=4096)
    with atomic_path(out) as tmp:
        try:
            torch.onnx.export(model, (example,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_shapes={"images": {0: batch}}, opset_version=opset,
                              external_data=False, verbose=False)
        except Exception as exc:  # the exporter's errors are long; keep the first line
            raise UserError(f"ONNX export of {checkpoint} failed: {str(exc).strip().splitlines()[0][:300]}") from None
        proto = onnx.load(str(tmp))
        del proto.metadata_props[:]
        prop = proto.metadata_props.add()
        prop.key, prop.value = META_KEY, meta.to_json()
        proto.doc_string = f"mask-monitor classifier {meta.arch} ({meta.head} head), 18 mask/gender/age classes"
        onnx.save(proto, str(tmp))
    return meta
