"""Temperature scaling fitted on validation data (engines.calibration applies it): per softmax of the network
("classes", or mask / gender / age for three heads), the T that minimises the negative log-likelihood of the
validation labels. `fit` does it with each checkpoint it writes, `mask-train calibrate` on an existing model
file, and writes it into the file; train.measures.calibration has the numbers (ECE of the mask state's top
probability, NLL) that both and evaluate report.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from engines.calibration import fit_temperature, log_probs
from engines.contract import CKPT_META, META_KEY, ModelMeta, pack_engine, unpack_engine
from engines.errors import UserError
from engines.fileio import atomic_path, atomic_write_bytes
from engines.labels import TASK_NAMES
from train.data.targets import is_full, split_targets

MIN_SAMPLES = 20  # fewer labelled validation samples than this for a softmax: its T stays 1.0


def task_targets(codes: np.ndarray, head: str) -> dict[str, np.ndarray]:
    """Per softmax of the head: each sample's label for it, -1 where unknown (partial labels)."""
    codes = np.asarray(codes, np.int64)
    if head == "single":
        return {"classes": np.where(is_full(codes), codes, -1)}
    return dict(zip(TASK_NAMES, (np.asarray(t) for t in split_targets(codes))))


def fit_temperatures(
    probs: np.ndarray, codes: np.ndarray, head: str, knows: Mapping[str, bool] | None = None
) -> dict[str, float]:
    """{softmax: T} from [N, 18] probabilities at T = 1 and the samples' target codes; a softmax of a task the
    model does not know (`knows`), or with under MIN_SAMPLES labels, is left out (1.0)."""
    logits = log_probs(probs, head)
    out = {}
    for key, y in task_targets(codes, head).items():
        known = y >= 0
        if (knows is not None and key in knows and not knows[key]) or known.sum() < MIN_SAMPLES:
            continue
        out[key] = round(fit_temperature(logits[key][known], y[known]), 4)
    return out


def rewrite_meta(path: str | os.PathLike[str], meta: ModelMeta) -> None:
    """Replace the metadata inside a model file (.pt, .onnx, .engine), written to a temporary name and
    renamed: a failure leaves the file as it was."""
    p = Path(path)
    meta.check(str(p))  # what a reader would refuse is never written
    suffix = p.suffix.lower()
    if suffix == ".pt":
        import torch

        from engines.backends.torch_backend import load_checkpoint

        _, ckpt = load_checkpoint(p)
        ckpt[CKPT_META] = meta.to_dict()
        with atomic_path(p) as tmp:
            torch.save(ckpt, tmp)
    elif suffix == ".onnx":
        import onnx

        model = onnx.load(str(p), load_external_data=False)
        props = [x for x in model.metadata_props if x.key != META_KEY]
        del model.metadata_props[:]
        model.metadata_props.extend(props)
        entry = model.metadata_props.add()
        entry.key, entry.value = META_KEY, meta.to_json()
        atomic_write_bytes(p, model.SerializeToString())
    elif suffix == ".engine":
        _, plan = unpack_engine(p.read_bytes(), str(p))
        atomic_write_bytes(p, pack_engine(meta, plan))
    else:
        raise UserError(f"{p}: cannot write a temperature into a {suffix or 'suffix-less'} file")


def with_temperature(meta: ModelMeta, temperature: Mapping[str, float]) -> ModelMeta:
    return replace(meta, temperature={k: float(v) for k, v in temperature.items()})
