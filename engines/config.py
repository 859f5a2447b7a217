"""config.toml -> frozen dataclasses: the loader, and the sections both programs read.

Every default lives in config.toml and, identically, in the dataclasses (a test keeps the two equal), so a
user who deletes a key gets the documented default and a user who misspells one gets an error that names
the key and the closest valid one. CLI flags override the file through `with_overrides`.

Each program owns its sections: `monitor.config.Config` and `train.config.Config` extend the `Config` below
(the shared sections) with their own, and each checks them against its own tables (source kinds, losses).
One config.toml holds both programs' sections, so a program accepts the other's section names
(`PROGRAM_SECTIONS`, the one list that names them; a program's Config that differs from its row is refused
when it is defined) and checks only their keys, against the bundled config.toml; their values are the other
program's to check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import tomllib
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from engines.errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config.toml"
ENV_CONFIG = "MASK_MONITOR_CONFIG"


class ConfigError(UserError):
    """A config file or override the user must fix; the message names the file and key."""


def _f(
    default: Any,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[Any, ...] | Callable[[], tuple[Any, ...]] | None = None,
    length: int | None = None,
    path: bool = False,
    bundled: bool = False,
) -> Any:
    """A field with its default and the bounds that validation enforces. `bundled`: a path whose default
    is a file of the project (Config.locate finds it from a config file elsewhere). `choices` may be a
    function that returns them: a program's table, read when a value is checked (its import may be heavy)."""
    meta = {"min": min, "max": max, "choices": choices, "length": length, "path": path, "bundled": bundled}
    if callable(choices):  # a program's table: the default (one of its rows, tests check) needs no look-up
        meta["default"] = default
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults so the dataclass stays frozen")
    return field(default=default, metadata=meta)


DEVICES = ("auto", "cpu", "cuda")  # where PyTorch / ONNX Runtime work may run


@dataclass(frozen=True)
class EngineConfig:
    """Which classifier file the monitor runs, and where."""

    path: str = _f("samples/demo_model.onnx", path=True, bundled=True)
    device: str = _f("auto", choices=DEVICES)
    threads: int = _f(0, min=0, max=256)  # 0: let the runtime decide (all cores)


@dataclass(frozen=True)
class DetectorConfig:
    """MTCNN settings. Masked faces are the hard case for MTCNN, so its thresholds sit below its defaults."""

    thresholds: tuple[float, float, float] = _f((0.2, 0.6, 0.4), min=0.0, max=1.0, length=3)
    min_face_size: int = _f(20, min=12, max=2000)
    scale_factor: float = _f(0.709, min=0.3, max=0.95)
    min_score: float = _f(0.6, min=0.0, max=1.0)  # the taught O-Net passes signs and clothes at 0.4-0.6
    device: str = _f("cpu", choices=DEVICES)
    threads: int = _f(0, min=0, max=256)  # CPU threads detecting the frames of a batch side by side; 0 = auto
    # MTCNN's nets: "" = facenet-pytorch's own (learned on bare faces), else a `mask-train fit-detector` file
    weights: str = _f("samples/detector_masked.pt", path=True, bundled=True)


@dataclass(frozen=True)
class CropConfig:
    """The training-format crop: the face box grown by `margin`, made 3:4, shifted, padded, resized."""

    width: int = _f(384, min=32, max=4096)
    height: int = _f(512, min=32, max=4096)
    margin: float = _f(0.6, min=0.0, max=5.0)
    shift_y: float = _f(0.1, min=-0.5, max=0.5)
    border: str = _f("replicate", choices=("constant", "replicate", "reflect"))


@dataclass(frozen=True)
class ClassifierConfig:
    """How the monitor feeds the engine. The network input size comes from the model file itself."""

    batch_size: int = _f(16, min=1, max=1024)


@dataclass(frozen=True)
class MonitorConfig:
    detect_every: int = _f(3, min=1, max=100)
    classify_every: int = _f(5, min=1, max=1000)
    vote_window: int = _f(7, min=1, max=100)
    min_votes: int = _f(3, min=1, max=100)
    track_iou: float = _f(0.3, min=0.0, max=1.0)
    track_max_missed: int = _f(15, min=0, max=10000)
    recheck_margin: float = _f(0.5, min=0.0, max=5.0)
    confirm_score: float = _f(0.9, min=0.0, max=1.0)
    recheck_thresholds: tuple[float, float, float] = _f((0.2, 0.4, 0.4), min=0.0, max=1.0, length=3)
    recheck_min_face: float = _f(0.5, min=0.05, max=1.0)
    detect_max_side: int = _f(320, min=64, max=8192)
    torch_threads: int = _f(1, min=0, max=256)
    reconnect_initial_s: float = _f(0.5, min=0.0, max=60.0)
    reconnect_max_s: float = _f(10.0, min=0.1, max=600.0)
    flag_states: tuple[str, ...] = _f(("incorrect", "not_wear"), choices=("wear", "incorrect", "not_wear"))
    scene_change: float = _f(0.75, min=0.0, max=1.0)  # share of pixels changed at once that is a cut; 0 = off
    show_gender_age: bool = _f(False)  # estimate gender / age (where the model knows them); off: '-' / null
    prune_every_s: float = _f(600.0, min=1.0, max=1e7)  # retention applied at start and this often

    def check(self, where: str) -> None:
        if self.min_votes > self.vote_window:
            raise ConfigError(
                f"{where}.min_votes = {self.min_votes} exceeds vote_window = {self.vote_window}"
            )
        if self.reconnect_initial_s > self.reconnect_max_s:
            raise ConfigError(f"{where}.reconnect_initial_s exceeds reconnect_max_s")


@dataclass(frozen=True)
class ModelConfig:
    """The network that `mask-train` builds; its input size and normalisation travel in every model file."""

    arch: str = _f("mobilenet_v2")
    pretrained: bool = _f(True)
    head: str = _f("single", choices=("single", "multi"))
    freeze_backbone: bool = _f(False)
    dropout: float = _f(0.2, min=0.0, max=0.9)
    input_height: int = _f(256, min=32, max=2048)
    input_width: int = _f(192, min=32, max=2048)
    mean: tuple[float, float, float] = _f((0.485, 0.456, 0.406), min=0.0, max=1.0, length=3)
    std: tuple[float, float, float] = _f((0.229, 0.224, 0.225), min=1e-6, max=10.0, length=3)


@dataclass(frozen=True)
class ExportConfig:
    opset: int = _f(18, min=11, max=30)
    min_batch: int = _f(1, min=1, max=4096)
    opt_batch: int = _f(8, min=1, max=4096)
    max_batch: int = _f(32, min=1, max=4096)
    fp16: bool = _f(False)
    workspace_mb: int = _f(1024, min=16, max=1 << 20)
    timing_cache: str = _f("", path=True)  # "" = timing.cache beside the engine file

    def check(self, where: str) -> None:
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ConfigError(
                f"{where}: need min_batch <= opt_batch <= max_batch, got "
                f"{self.min_batch}, {self.opt_batch}, {self.max_batch}"
            )


@dataclass(frozen=True)
class CollectConfig:
    """`mask-monitor --collect DIR`: the crops of settled people the model was unsure of (opt-in only)."""

    max_confidence: float = _f(0.75, min=0.0, max=1.0)  # collect when the top mask probability is under this
    confident_share: float = _f(0.05, min=0.0, max=1.0)  # ... and this share of the confident ones
    confident_min_gap_s: float = _f(10.0, min=0.0, max=1e6)  # at most one confident crop per this many s
    max_mb: float = _f(500.0, min=0.0, max=1e7)  # the folder's size cap; reached: collecting stops
    jpeg_quality: int = _f(92, min=10, max=100)
    max_age_days: float = _f(30.0, min=0.0, max=36500.0)  # crops older than this are deleted; 0 = kept


# The sections each program owns, by name: the one list that lets a program accept the other's sections in a
# shared config.toml without importing it. A program's Config must declare exactly its row (checked when the
# class is defined, so the two cannot drift apart).
PROGRAM_SECTIONS: dict[str, tuple[str, ...]] = {
    "monitor": (
        "ui",
        "sources",
        "save_faces",
        "record",
        "metrics",
        "homeassistant",
        "evidence",
        "compliance",
    ),
    "train": ("data", "augment", "train", "tune", "label", "scenes"),
}


@dataclass(frozen=True)
class Config:
    """The shared sections; each program's Config adds its own (`monitor.config`, `train.config`)."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    # Where relative paths in the file are resolved from (the config file's folder); not a TOML key.
    base_dir: str = field(default=str(REPO_ROOT), compare=False)

    program: typing.ClassVar[str] = ""  # "" = the shared sections alone (no program's)

    def __init_subclass__(cls, program: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = tuple(cls.__dict__.get("__annotations__", {}))
        if program not in PROGRAM_SECTIONS or set(own) != set(PROGRAM_SECTIONS[program]):
            raise TypeError(
                f"{cls.__module__}.{cls.__name__}: a program's Config declares exactly its row of "
                f"engines.config.PROGRAM_SECTIONS ({program!r}: {own})"
            )
        cls.program = program

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """A path from the config, made absolute against the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def locate(self, path: str | os.PathLike[str]) -> Path:
        """A file the config names: against the config file's folder, or, where no such file is there, the
        project's own (a config file elsewhere that leaves a key at its default still finds the bundled
        samples/ file)."""
        p = self.resolve(path)
        if not p.exists() and not Path(path).expanduser().is_absolute() and (REPO_ROOT / path).exists():
            return REPO_ROOT / path
        return p

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (TOML/JSON-ready), e.g. to save the resolved config beside a run."""
        out = dataclasses.asdict(self)
        out.pop("base_dir")
        for name in _arrays(type(self)):
            if not out[name]:  # no [[sources]] in the file: TOML has no way to write an empty one
                out.pop(name)
        return _lists(out)


def _lists(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_lists(v) for v in obj]
    return obj


def _fields_of(schema: type) -> dict[str, Any]:
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in fields(schema) if f.name != "base_dir"}


def sections_of(schema: type = Config) -> dict[str, type]:
    """A Config's `[name]` tables -> their dataclasses (the `[[name]]` arrays of tables left out)."""
    return {k: tp for k, tp in _fields_of(schema).items() if typing.get_origin(tp) is not tuple}


def _arrays(schema: type) -> dict[str, type]:
    """A Config's `[[name]]` arrays of tables -> the dataclass of one table."""
    return {
        k: typing.get_args(tp)[0] for k, tp in _fields_of(schema).items() if typing.get_origin(tp) is tuple
    }


def tables_of(schema: type = Config) -> dict[str, type]:
    """Every table of a Config, `[name]` and `[[name]]`, -> its dataclass (e.g. for the docs reference)."""
    return {**sections_of(schema), **_arrays(schema)}


def _foreign(schema: type) -> list[str]:
    """The sections of the other program(s): accepted by name, their keys checked against config.toml."""
    own = getattr(schema, "program", "")
    return [name for program, names in PROGRAM_SECTIONS.items() if program != own for name in names]


_BUNDLED: dict[str, Any] = {}


def _bundled() -> dict[str, Any]:
    """The repository's config.toml (every section, every key), read once; {} where it is not there."""
    if not _BUNDLED and DEFAULT_CONFIG.is_file():
        with contextlib.suppress(OSError, tomllib.TOMLDecodeError), DEFAULT_CONFIG.open("rb") as fh:
            _BUNDLED.update(tomllib.load(fh))
    return _BUNDLED


def _suggest(name: str, valid: list[str]) -> str:
    # a key the name extends or abbreviates ('lr_rate' -> 'lr') first: a spelling ratio alone picks
    # whichever long key shares the most letters ('calibrate')
    close = [v for v in valid if min(len(v), len(name)) >= 2 and (name.startswith(v) or v.startswith(name))]
    close = close[:1] or difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    close = close or difflib.get_close_matches(name, valid, n=1, cutoff=0.4)
    return f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(valid)})"


class Choices(Sequence[Any]):
    """A setting's allowed values, read from its program's table on first use (argparse `choices=`): the
    table's import (torch, for the losses) waits until a value is checked or listed."""

    def __init__(self, load: Callable[[], tuple[Any, ...]]) -> None:
        self._load = load
        self._values: tuple[Any, ...] | None = None

    def _get(self) -> tuple[Any, ...]:
        if self._values is None:
            self._values = tuple(self._load())
        return self._values

    def __getitem__(self, i: Any) -> Any:
        return self._get()[i]

    def __len__(self) -> int:
        return len(self._get())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._get())

    def __contains__(self, value: object) -> bool:
        return value in self._get()


def _choices(meta: Mapping[str, Any]) -> tuple[Any, ...] | None:
    choices = meta.get("choices")
    return tuple(choices()) if callable(choices) else choices


def _convert(value: Any, tp: Any, where: str, meta: Mapping[str, Any]) -> Any:
    """Check one value against its annotated type and bounds; return it in the dataclass's type."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {type(value).__name__} {value!r}")
        if meta.get("length") is not None and len(value) != meta["length"]:
            raise ConfigError(f"{where} must have {meta['length']} items, got {len(value)}")
        item_tp = args[0]
        return tuple(_convert(v, item_tp, f"{where}[{i}]", meta) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
    else:  # pragma: no cover - schema bug, not user error
        raise TypeError(f"unsupported config type {tp!r} at {where}")
    lo, hi = meta.get("min"), meta.get("max")
    # a table's rows are read (its module imported: torch, for the losses) only for a value other than the
    # default, so loading an ordinary config imports no heavy library
    choices = None if "default" in meta and value == meta["default"] else _choices(meta)
    if lo is not None and not value >= lo or hi is not None and not value <= hi:  # NaN is out of range too
        raise ConfigError(f"{where} = {value!r} is out of range [{lo}, {hi}]")
    if choices is not None and value not in choices:
        raise ConfigError(
            f"{where} = {value!r} is not one of {', '.join(map(repr, choices))}"
            + (_suggest(value, list(choices)) if isinstance(value, str) else "")
        )
    return value


def _build_section(cls: type, table: Any, where: str) -> Any:
    """One section from its table; a section class may define `prepare(table) -> table` (before the keys are
    checked) and `check(self, where)` (relations between keys that single-key bounds cannot express)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table, got {table!r}")
    if hasattr(cls, "prepare"):
        table = cls.prepare(table)
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in table.items():
        if key not in hints:
            raise ConfigError(f"{where}: unknown key '{key}'{_suggest(key, valid)}")
        f = next(f for f in fields(cls) if f.name == key)
        kwargs[key] = _convert(value, hints[key], f"{where}.{key}", f.metadata)
    obj = cls(**kwargs)
    if hasattr(obj, "check"):
        obj.check(where)
    return obj


def section_from_dict(cls: type, table: Any, where: str) -> Any:
    """One validated section (e.g. the crop geometry stored in a model file), with the config's checks."""
    return _build_section(cls, table, where)


def _foreign_keys(name: str, table: Any, where: str) -> None:
    """Another program's section: its keys must be those of the bundled config.toml's table."""
    bundled = _bundled().get(name)
    if isinstance(bundled, dict) and isinstance(table, dict):
        for key in table:
            if key not in bundled:
                raise ConfigError(f"{where}: unknown key '{key}'{_suggest(key, list(bundled))}")


def from_dict(
    data: Mapping[str, Any],
    source: str = "config",
    base_dir: str | Path | None = None,
    schema: type[Config] = Config,
) -> Config:
    """A program's Config (`schema`) from a parsed file: its own sections checked, the other program's
    sections accepted by name (their keys checked against the bundled config.toml)."""
    tables, arrays, foreign = sections_of(schema), _arrays(schema), _foreign(schema)
    valid = [*tables, *arrays, *foreign]
    sections: dict[str, Any] = {}
    for name, table in data.items():
        if name in arrays:
            sections[name] = _array(arrays[name], table, f"{source}: [[{name}]]", name)
        elif name in tables:
            sections[name] = _build_section(tables[name], table, f"{source}: [{name}]")
        elif name in foreign:
            _foreign_keys(name, table, f"{source}: [{name}]")
        else:
            raise ConfigError(f"{source}: unknown section [{name}]{_suggest(name, valid)}")
    return schema(**sections, base_dir=str(base_dir if base_dir is not None else REPO_ROOT))


def _array(cls: type, tables: Any, where: str, name: str) -> tuple[Any, ...]:
    if not isinstance(tables, list):
        raise ConfigError(f"{where} must be an array of tables ([[{name}]]), got {tables!r}")
    out = []
    for i, table in enumerate(tables):
        label = table.get("name") if isinstance(table, dict) else None
        named = f" ({label})" if isinstance(label, str) and label else ""
        out.append(_build_section(cls, table, f"{where} #{i + 1}{named}"))
    return tuple(out)


def default_config_path() -> Path | None:
    """--config wins; else $MASK_MONITOR_CONFIG; else ./config.toml; else the repository's config.toml."""
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    for candidate in (Path.cwd() / "config.toml", DEFAULT_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    schema: type[Config] = Config,
) -> Config:
    """Read a config file (or the default one) into `schema` (a program's Config) and apply dotted overrides
    such as {"train.epochs": 3}."""
    p = Path(path) if path is not None else default_config_path()
    if p is None:
        cfg = schema()
    else:
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            with p.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
        cfg = from_dict(data, str(p), base_dir=p.resolve().parent, schema=schema)
    return with_overrides(cfg, overrides or {})


def with_overrides(cfg: Config, overrides: Mapping[str, Any]) -> Config:
    """Apply {"section.key": value} (e.g. from CLI flags) to the sections of cfg's program; None values are
    skipped, so unset flags change nothing."""
    tables = sections_of(type(cfg))
    grouped: dict[str, dict[str, Any]] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if section not in tables or not key:
            raise ConfigError(f"override '{dotted}': unknown section{_suggest(section, list(tables))}")
        grouped.setdefault(section, {})[key] = value
    for section, table in grouped.items():
        current = getattr(cfg, section)
        merged = {f.name: getattr(current, f.name) for f in fields(current)}
        merged.update({k: list(v) if isinstance(v, tuple) else v for k, v in table.items()})
        merged = {k: list(v) if isinstance(v, tuple) else v for k, v in merged.items()}
        new = _build_section(tables[section], merged, f"override [{section}]")
        cfg = replace(cfg, **{section: new})
    return cfg


def add_config_argument(parser: Any) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="config file (default: ./config.toml, else the repository's config.toml)",
    )


def _is_path_key(dotted: str, schema: type) -> bool:
    section, _, key = dotted.partition(".")
    cls = sections_of(schema).get(section)
    return cls is not None and any(f.name == key and f.metadata.get("path") for f in fields(cls))


def cli_overrides(args: Any, schema: type[Config] = Config) -> dict[str, Any]:
    """Every argparse dest written as 'section.key' that the user gave, as an override. A path typed on the
    command line is relative to the working directory, as the shell means it (a path in a config file stays
    relative to that file's folder), so it is made absolute here; "" keeps its meaning (the default)."""
    out = {}
    for k, v in vars(args).items():
        if "." not in k or v is None:
            continue
        if isinstance(v, str) and v and _is_path_key(k, schema):
            v = os.path.abspath(os.path.expanduser(v))
        out[k] = v
    return out


def config_from_args(args: Any, schema: type[Config] = Config) -> Config:
    """--config plus every argparse dest written as 'section.key' (e.g. dest='train.epochs') as an
    override, into `schema` (a program's Config)."""
    return load_config(getattr(args, "config", None), cli_overrides(args, schema), schema)


def choices_of(dotted: str, schema: type[Config] = Config) -> Sequence[Any]:
    """The allowed values of a 'section.key' setting, for argparse `choices=` (one list: the schema's; a
    program's table is read when argparse first looks at it)."""
    section, _, key = dotted.partition(".")
    cls = sections_of(schema).get(section)
    found = next((f for f in fields(cls) if f.name == key), None) if cls is not None else None
    if found is None or not found.metadata.get("choices"):
        raise KeyError(f"{dotted} is not a setting with a fixed list of values")
    choices = found.metadata["choices"]
    return Choices(choices) if callable(choices) else tuple(choices)
