"""The model file is the contract between `train` (writes it) and `monitor` (reads it).

`ModelMeta` is what the monitor needs to run a model and nothing else: labels, network input size,
normalisation, crop geometry, architecture, provenance. It travels inside every model file:
the `.pt` checkpoint dict, the `.onnx` metadata_props, a header before the TensorRT plan in `.engine`.
engines.formats.FORMATS is the one table that says, per suffix, which backend loads a file, which reader
takes its metadata and which exporter writes it. This module imports no backend and no runtime.
"""

from __future__ import annotations

import io
import json
import math
import struct
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from engines.calibration import check_temperature
from engines.config import ConfigError, CropConfig, ModelConfig, section_from_dict
from engines.errors import UserError
from engines.labels import NUM_CLASSES, TASK_NAMES, class_names

META_KEY = "mask_monitor_meta"  # key of the metadata JSON in an ONNX file's metadata_props
CKPT_META = "meta"  # a .pt checkpoint is a dict: its metadata (ModelMeta.to_dict()) ...
CKPT_MODEL = "model"  # ... and the network's state_dict
META_VERSION = 1
TRT_MAGIC = b"MASKMON-TRT\x00"  # 12 bytes, then uint32 little-endian JSON length, JSON, TensorRT plan
MAX_META_BYTES = 1 << 20  # a model file's metadata JSON is a few kilobytes: more is not ours
MAX_META_DEPTH = 16  # nesting of the metadata JSON (`extra` holds small tables)
INPUT_NAME = "images"  # float32 [N, 3, H, W], RGB, normalised with meta.mean/std
OUTPUT_NAME = "probs"  # float32 [N, 18], rows sum to 1


class ModelFileError(UserError):
    """A model file that is missing, of an unknown format, corrupt, or made for other labels."""


# JSON types of ModelMeta's scalar fields: a file with "input_height": "256" is refused when it loads, not
# once per frame later
_FIELD_TYPES: dict[str, type] = {
    "arch": str,
    "head": str,
    "input_height": int,
    "input_width": int,
    "age_old_threshold": int,
    "created": str,
    "source_sha256": str,
    "precision": str,
    "extra": dict,
    "knows": dict,
    "temperature": dict,
    "version": int,
}


# bounds of the numbers, as config.toml [model] / [data] allow them: a file is refused when it loads, before
# an input of 1e9 x 1e9 is allocated or a NaN mean turns every frame into NaN
_INPUT_SIDE = (8, 2048)
_MEAN = (0.0, 1.0)
_STD = (1e-6, 10.0)  # std > 0: every pixel is divided by it
_AGE_OLD = (31, 120)


def _within(value: float, bounds: tuple[float, float]) -> bool:
    return math.isfinite(value) and bounds[0] <= value <= bounds[1]


def _depth_ok(value: Any, limit: int = MAX_META_DEPTH) -> bool:
    """Whether a decoded JSON value nests no deeper than `limit` (looked at without recursion)."""
    stack = [(value, 1)]
    while stack:
        v, n = stack.pop()
        if n > limit:
            return False
        if isinstance(v, dict):
            stack += [(x, n + 1) for x in v.values()]
        elif isinstance(v, (list, tuple)):
            stack += [(x, n + 1) for x in v]
    return True


def _is(value: Any, kind: type) -> bool:
    if isinstance(value, bool):  # JSON true is not a number
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


# the keys config.toml [model] and a model file's metadata share: the network and its input
MODEL_FIELDS = ("arch", "head", "input_height", "input_width", "mean", "std")


@dataclass(frozen=True)
class ModelMeta:
    arch: str
    head: str = "single"
    input_height: int = 256
    input_width: int = 192
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    crop: CropConfig = field(default_factory=CropConfig)
    labels: tuple[str, ...] = field(default_factory=lambda: tuple(class_names()))
    age_old_threshold: int = 60
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    source_sha256: str = ""
    precision: str = "fp32"
    extra: dict[str, Any] = field(default_factory=dict)  # training facts (epoch, val F1, data), for people
    version: int = META_VERSION
    # per task: was the model trained on real labels for it? Files written before this key claim all three
    knows: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(TASK_NAMES, True))
    # per softmax of the network ("classes", or "mask" / "gender" / "age" for three heads): the temperature
    # its logits are divided by (engines.calibration); a missing key is 1.0, as in files made before this key
    temperature: dict[str, float] = field(default_factory=dict)

    @classmethod
    def for_model(cls, model: ModelConfig, crop: CropConfig, **kw: Any) -> ModelMeta:
        """The metadata of a network built from config [model] and cut with `crop`; `kw`: the other fields."""
        shared = {k: getattr(model, k) for k in MODEL_FIELDS}
        shared["mean"], shared["std"] = tuple(model.mean), tuple(model.std)
        return cls(**shared, crop=crop, **kw)

    def model_config(self, base: ModelConfig) -> ModelConfig:
        """config [model] for this file's network: base with the keys they share taken from the file."""
        return replace(base, **{k: getattr(self, k) for k in MODEL_FIELDS})

    def known_tasks(self) -> tuple[str, ...]:
        """The tasks whose outputs mean something (mask, gender, age, in that order)."""
        return tuple(t for t in TASK_NAMES if self.knows.get(t, True))

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the network input."""
        return self.input_height, self.input_width

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"], d["labels"] = list(self.mean), list(self.std), list(self.labels)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "model file") -> ModelMeta:
        if not isinstance(d, dict):
            raise ModelFileError(f"{source}: its mask-monitor metadata is not a JSON object")
        if not _depth_ok(d):
            raise ModelFileError(
                f"{source}: its mask-monitor metadata nests deeper than {MAX_META_DEPTH} levels"
            )
        try:
            known = {f.name for f in fields(cls)}
            kw = {k: v for k, v in d.items() if k in known}
            kw["crop"] = section_from_dict(CropConfig, d.get("crop", {}), f"{source}: crop")
            for name, kind in _FIELD_TYPES.items():
                if name in kw and not _is(kw[name], kind):
                    raise TypeError(f"{name} = {kw[name]!r} is not {kind.__name__}")
            for name in ("mean", "std"):
                v = d[name]
                if not (isinstance(v, list) and len(v) == 3 and all(_is(x, float) for x in v)):
                    raise TypeError(f"{name} = {v!r} is not 3 numbers")
                kw[name] = tuple(float(x) for x in v)
            kw["labels"] = tuple(d["labels"])
            meta = cls(**kw)
        except ConfigError as exc:
            raise ModelFileError(f"{exc} (in its mask-monitor metadata)") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(
                f"{source}: its mask-monitor metadata is incomplete or malformed ({exc})"
            ) from None
        meta.check(source)
        return meta

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "model file") -> ModelMeta:
        if len(text) > MAX_META_BYTES:
            raise ModelFileError(
                f"{source}: its mask-monitor metadata is {len(text)} long (at most {MAX_META_BYTES})"
            )
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"{source}: its mask-monitor metadata is not valid JSON ({exc})") from None
        except RecursionError:
            raise ModelFileError(
                f"{source}: its mask-monitor metadata nests deeper than {MAX_META_DEPTH} levels"
            ) from None
        if not isinstance(d, dict):
            raise ModelFileError(f"{source}: its mask-monitor metadata is not a JSON object")
        return cls.from_dict(d, source)

    def check(self, source: str = "model file") -> None:
        """Refuse files made for another label schema: their outputs would be read as the wrong classes."""
        if self.version > META_VERSION:
            raise ModelFileError(
                f"{source}: metadata version {self.version} is newer than this program "
                f"understands ({META_VERSION}); upgrade mask-monitor"
            )
        if list(self.labels) != class_names():
            raise ModelFileError(
                f"{source}: the model has other labels ({len(self.labels)} classes, first "
                f"{list(self.labels[:2])}) than the {NUM_CLASSES} mask/gender/age classes"
            )
        if set(self.knows) - set(TASK_NAMES) or not all(isinstance(v, bool) for v in self.knows.values()):
            raise ModelFileError(
                f"{source}: knows = {self.knows!r} is not {{task: true|false}} for {TASK_NAMES}"
            )
        if self.head not in ("single", "multi"):
            raise ModelFileError(f"{source}: unknown head {self.head!r}")
        if not all(_within(v, _INPUT_SIDE) for v in self.input_size):
            raise ModelFileError(
                f"{source}: input size {self.input_size} is outside {_INPUT_SIDE[0]}-{_INPUT_SIDE[1]} "
                "pixels a side"
            )
        for name, values, bounds in (("mean", self.mean, _MEAN), ("std", self.std, _STD)):
            if not all(_within(v, bounds) for v in values):
                raise ModelFileError(
                    f"{source}: {name} = {list(values)} is not 3 finite numbers "
                    f"from {bounds[0]:g} to {bounds[1]:g}"
                )
        if not _within(self.age_old_threshold, _AGE_OLD):
            raise ModelFileError(
                f"{source}: age_old_threshold = {self.age_old_threshold} is outside "
                f"{_AGE_OLD[0]}-{_AGE_OLD[1]}"
            )
        problem = check_temperature(self.temperature, self.head, source)
        if problem:
            raise ModelFileError(f"{source}: {problem}")


# --- the TensorRT engine file: header + plan -------------------------------------------------------------


def pack_engine(meta: ModelMeta, plan: bytes) -> bytes:
    header = meta.to_json().encode("utf-8")
    return TRT_MAGIC + struct.pack("<I", len(header)) + header + bytes(plan)


def unpack_engine(data: bytes, source: str = "engine file") -> tuple[ModelMeta, bytes]:
    fh = io.BytesIO(data)
    meta = _read_header(fh, source)
    return meta, data[fh.tell() :]


def _read_header(fh: BinaryIO, source: str) -> ModelMeta:
    """The metadata at the start of an engine file; `fh` is left at the plan."""
    n = len(TRT_MAGIC)
    head = fh.read(n + 4)
    if len(head) < n + 4 or head[:n] != TRT_MAGIC:
        raise ModelFileError(
            f"{source}: not a mask-monitor TensorRT engine (no header); build it with `mask-train export-trt`"
        )
    (length,) = struct.unpack("<I", head[n:])
    if length > MAX_META_BYTES:
        raise ModelFileError(
            f"{source}: header of {length} bytes (at most {MAX_META_BYTES}): not a mask-monitor engine"
        )
    body = fh.read(length)
    if len(body) < length:
        raise ModelFileError(f"{source}: truncated header")
    return ModelMeta.from_json(body, source)


def read_engine_header(path: Path) -> ModelMeta:
    """The metadata at the start of an engine file, without reading its (large) plan."""
    with open(path, "rb") as fh:
        return _read_header(fh, str(path))
