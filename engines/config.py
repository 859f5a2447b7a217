"""config.toml -> frozen dataclasses.

Every default lives in config.toml and, identically, in the dataclasses below (a test keeps the two equal),
so a user who deletes a key gets the documented default and a user who misspells one gets an error that
names the key and the closest valid one. CLI flags override the file through `with_overrides`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from engines.errors import UserError
from engines.labels import TASK_NAMES

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
    choices: tuple[Any, ...] | None = None,
    length: int | None = None,
    path: bool = False,
    bundled: bool = False,
) -> Any:
    """A field with its default and the bounds that validation enforces. `bundled`: a path whose default
    is a file of the project (Config.locate finds it from a config file elsewhere)."""
    meta = {"min": min, "max": max, "choices": choices, "length": length, "path": path, "bundled": bundled}
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults so the dataclass stays frozen")
    return field(default=default, metadata=meta)


DEVICES = ("auto", "cpu", "cuda")  # where PyTorch / ONNX Runtime work may run


@dataclass(frozen=True)
class EngineConfig:
    """Which classifier file the monitor runs, and where."""

    path: str = _f("samples/demo_model.onnx", path=True)
    device: str = _f("auto", choices=DEVICES)
    threads: int = _f(0, min=0, max=256)  # 0: let the runtime decide (all cores)


@dataclass(frozen=True)
class DetectorConfig:
    """MTCNN settings. Masked faces are the hard case for MTCNN, so its thresholds sit below its defaults."""

    thresholds: tuple[float, float, float] = _f((0.2, 0.6, 0.4), min=0.0, max=1.0, length=3)
    min_face_size: int = _f(20, min=12, max=2000)
    scale_factor: float = _f(0.709, min=0.3, max=0.95)
    min_score: float = _f(0.0, min=0.0, max=1.0)
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


@dataclass(frozen=True)
class UIConfig:
    refresh_hz: float = _f(8.0, min=0.5, max=60.0)
    max_rows: int = _f(12, min=1, max=200)
    max_flags: int = _f(8, min=1, max=200)
    bell: bool = _f(False)


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
class DataConfig:
    data_dir: str = _f("data", path=True)
    cache_dir: str = _f("cache", path=True)
    age_old_threshold: int = _f(60, min=31, max=120)
    val_fraction: float = _f(0.2, min=0.0, max=0.9)
    folds: int = _f(5, min=2, max=50)
    batch_size: int = _f(32, min=1, max=4096)
    num_workers: int = _f(2, min=0, max=256)
    pin_memory: bool = _f(True)
    persistent_workers: bool = _f(True)
    prefetch_factor: int = _f(2, min=1, max=64)
    weighted_sampler: bool = _f(False)
    # "NAME=WEIGHT" per source: "prepared" (the folder `prepare` cropped) or an `import --name`; an image of a
    # source of weight 2 is drawn twice as often as one of weight 1; unlisted sources weigh 1
    source_weights: tuple[str, ...] = _f(())


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentations that keep a face a plausible face at an entrance; p = probability of each."""

    enabled: bool = _f(True)
    hflip: float = _f(0.5, min=0.0, max=1.0)
    shift_scale_rotate: float = _f(0.5, min=0.0, max=1.0)
    max_rotate: float = _f(10.0, min=0.0, max=45.0)
    color: float = _f(0.5, min=0.0, max=1.0)
    blur: float = _f(0.1, min=0.0, max=1.0)
    noise: float = _f(0.1, min=0.0, max=1.0)
    jpeg: float = _f(0.2, min=0.0, max=1.0)
    dropout: float = _f(0.2, min=0.0, max=1.0)
    # the face kept inside a random rectangle, the rest a plain noisy background: a tight photo pasted in a
    # frame, a face before a bare wall (without it, plain surroundings read as a mask)
    surroundings: float = _f(0.0, min=0.0, max=1.0)
    # faces as a camera sees them: the face box re-cut from the crop's surroundings +-box_jitter_range of its
    # size (scale and shift), a neighbour's face pasted in the margin beside or below (crowds), and the face
    # shrunk to small_face_px tall (lower, upper) then enlarged back, blurred, noisy, JPEG'd at the low size
    box_jitter: float = _f(0.5, min=0.0, max=1.0)
    box_jitter_range: float = _f(0.15, min=0.0, max=0.3)
    crowd: float = _f(0.2, min=0.0, max=1.0)
    small_face: float = _f(0.3, min=0.0, max=1.0)
    small_face_px: tuple[float, float] = _f((40.0, 80.0), min=8.0, max=512.0, length=2)
    # batch mixing, applied per batch on the tensors (the loss mixed to match); cutmix + mixup <= 1
    cutmix: float = _f(0.0, min=0.0, max=1.0)
    mixup: float = _f(0.0, min=0.0, max=1.0)
    cutmix_alpha: float = _f(1.0, min=0.01, max=10.0)
    mixup_alpha: float = _f(0.4, min=0.01, max=10.0)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _f(10, min=1, max=10000)
    optimizer: str = _f("adamw", choices=("adamw", "sgd"))
    lr: float = _f(3e-4, min=0.0, max=10.0)
    weight_decay: float = _f(1e-4, min=0.0, max=1.0)
    momentum: float = _f(0.9, min=0.0, max=1.0)
    scheduler: str = _f("cosine", choices=("none", "step", "cosine", "plateau"))
    step_size: int = _f(5, min=1, max=10000)
    gamma: float = _f(0.1, min=0.0, max=1.0)
    plateau_patience: int = _f(2, min=0, max=1000)
    loss: str = _f("ce", choices=("ce", "focal", "label_smoothing"))
    focal_gamma: float = _f(2.0, min=0.0, max=10.0)
    label_smoothing: float = _f(0.1, min=0.0, max=0.5)
    accumulate: int = _f(1, min=1, max=1024)
    amp: bool = _f(True)
    seed: int = _f(42, min=0, max=2**31 - 1)
    device: str = _f("auto", choices=DEVICES)
    threads: int = _f(0, min=0, max=256)  # CPU threads for training; 0 = torch's default (all cores)
    out_dir: str = _f("runs", path=True)
    best_metric: str = _f("f1", choices=("f1", "f1_mask"))  # what picks best.pt: 18-class or mask macro F1
    # the tasks the model file says it learnt from real labels; () = each task some training image has a label
    # for (a synthetic set's gender/age come from a few identities: list only "mask" then)
    known_tasks: tuple[str, ...] = _f((), choices=TASK_NAMES)
    # fit a temperature per softmax on the validation data with every checkpoint (engines.calibration)
    calibrate: bool = _f(True)


# `mask-train tune`'s default search space: "section.key = KIND ARGS", KIND one of float LOW HIGH,
# log LOW HIGH (log-uniform), int LOW HIGH, choice A B C ... (train.tuning.space reads and checks it)
TUNE_SPACE = (
    "train.lr = log 1e-5 3e-3",
    "train.weight_decay = log 1e-6 1e-2",
    "train.optimizer = choice adamw sgd",
    "train.scheduler = choice cosine step plateau none",
    "train.loss = choice ce focal label_smoothing",
    "train.focal_gamma = float 0.5 4.0",
    "train.label_smoothing = float 0.02 0.2",
    "data.batch_size = choice 16 32 64",
    "train.accumulate = choice 1 2",
    "augment.shift_scale_rotate = float 0.0 0.8",
    "augment.color = float 0.0 0.8",
    "augment.dropout = float 0.0 0.5",
    "data.age_old_threshold = int 57 60",
    "model.head = choice single multi",
    "model.freeze_backbone = choice false true",
    "augment.cutmix = float 0.0 0.5",
    "augment.mixup = float 0.0 0.5",
)


@dataclass(frozen=True)
class TuneConfig:
    """`mask-train tune`: Optuna's TPE sampler over `space`, weak trials pruned on validation macro F1."""

    trials: int = _f(20, min=1, max=100000)
    timeout_s: float = _f(0.0, min=0.0, max=1e7)  # stop starting trials after this long; 0 = no limit
    epochs: int = _f(0, min=0, max=10000)  # epochs per trial; 0 = train.epochs
    study: str = _f("mask-train")
    storage: str = _f("")  # an Optuna storage URL; "" = sqlite:///<out_dir>/study.db
    out_dir: str = _f("tune", path=True)
    seed: int = _f(42, min=0, max=2**31 - 1)
    startup_trials: int = _f(5, min=0, max=10000)  # random trials before TPE, and before any pruning
    pruner: str = _f("median", choices=("median", "hyperband", "none"))
    warmup_epochs: int = _f(1, min=0, max=10000)  # epochs in which the median pruner stops no trial
    space: tuple[str, ...] = _f(TUNE_SPACE)


@dataclass(frozen=True)
class ExportConfig:
    opset: int = _f(18, min=11, max=30)
    min_batch: int = _f(1, min=1, max=4096)
    opt_batch: int = _f(8, min=1, max=4096)
    max_batch: int = _f(32, min=1, max=4096)
    fp16: bool = _f(False)
    workspace_mb: int = _f(1024, min=16, max=1 << 20)
    timing_cache: str = _f("", path=True)  # "" = timing.cache beside the engine file


SOURCE_KINDS = ("camera", "video", "url")  # monitor.sources.SOURCES's rows (a test keeps the two equal)


@dataclass(frozen=True)
class SourceConfig:
    """One `[[sources]]` table: a video source of a monitor that watches several. Per-source settings left
    at 0 take the [monitor] value."""

    name: str = _f("")  # letters, digits, - and _ (it names files and MQTT topics); "" = from the address
    kind: str = _f("camera", choices=SOURCE_KINDS)
    address: str = _f("0")  # camera index, video file or stream URL
    realtime: bool = _f(False)  # a video file played at its own fps, like a camera
    detect_every: int = _f(0, min=0, max=100)
    classify_every: int = _f(0, min=0, max=1000)
    detect_max_side: int = _f(0, min=0, max=8192)
    # the zone: a polygon [[x, y], ...] (>= 3 points) inside which faces count (their box's centre);
    # every value in 0-1: fractions of the frame's width and height, else pixels; empty: the whole frame
    zone: tuple[tuple[float, ...], ...] = _f(())
    min_face_height: int = _f(0, min=0, max=10000)  # faces shorter than this (px in the frame) do not count


def zone_problem(points: Any) -> str | None:
    """Why `points` is not a zone polygon (None: it is one, or it is empty = no zone)."""
    if not isinstance(points, (list, tuple)):
        return f"must be a list of [x, y] points, got {points!r}"
    if not points:
        return None
    if len(points) < 3:
        return f"a polygon needs at least 3 points [x, y], got {len(points)}"
    for i, pt in enumerate(points):
        if not isinstance(pt, (list, tuple)) or len(pt) != 2:
            return f"point {i + 1} must be [x, y], got {pt!r}"
        for v in pt:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1e6:
                return f"point {i + 1} = {list(pt)!r}: coordinates must be numbers >= 0 (pixels or 0-1)"
    return None


@dataclass(frozen=True)
class MetricsConfig:
    """`mask-monitor --metrics [HOST:PORT]` and `site --metrics`: Prometheus metrics over HTTP."""

    host: str = _f("127.0.0.1")  # the address when --metrics names none (loopback: this machine only)
    port: int = _f(9108, min=0, max=65535)  # ... and the port (0: any free one)


@dataclass(frozen=True)
class HomeAssistantConfig:
    """MQTT discovery for Home Assistant (with --mqtt): entities per source, a device per machine."""

    enabled: bool = _f(False)  # with --mqtt: publish discovery and states, take the pause / resume buttons
    discovery_prefix: str = _f("homeassistant")  # Home Assistant's discovery prefix
    min_interval_s: float = _f(1.0, min=0.0, max=3600.0)  # a source's states at most this often


@dataclass(frozen=True)
class EvidenceConfig:
    """Evidence of each flag: a snapshot (other faces blurred), optionally a clip; 0600 files, 0700 folder."""

    folder: str = _f("", path=True)  # where evidence is written; "" = off (--evidence DIR overrides)
    clip_s: float = _f(0.0, min=0.0, max=60.0)  # s before and after the flag in a clip; 0: snapshot only
    buffer_mb: float = _f(64.0, min=1.0, max=4096.0)  # the ring buffer of encoded frames, per source
    jpeg_quality: int = _f(85, min=10, max=100)
    max_age_days: float = _f(30.0, min=0.0, max=36500.0)  # evidence older than this is deleted; 0 = kept
    max_mb: float = _f(1000.0, min=0.0, max=1e7)  # over this, the oldest evidence is deleted


@dataclass(frozen=True)
class ComplianceConfig:
    """The share of people without a correct mask over a rolling window, and the alert on it."""

    window_s: float = _f(600.0, min=1.0, max=86400.0)  # people who were seen in the last this many seconds
    threshold: float = _f(0.3, min=0.0, max=1.0)  # an alert when the share stays at or above this ...
    hold_s: float = _f(60.0, min=0.0, max=86400.0)  # ... for this long (and cleared after this long below)
    clear_below: float = _f(0.2, min=0.0, max=1.0)  # cleared when the share stays under this (hysteresis)
    min_people: int = _f(5, min=1, max=100000)  # no alert on fewer people in the window


@dataclass(frozen=True)
class LabelConfig:
    """`mask-train label`: the local labelling page (the host is never a config key: --host only)."""

    port: int = _f(8765, min=0, max=65535)  # 0: any free port
    unsure_below: float = _f(0.75, min=0.0, max=1.0)  # "model unsure": top mask probability under this


@dataclass(frozen=True)
class CollectConfig:
    """`mask-monitor --collect DIR`: the crops of settled people the model was unsure of (opt-in only)."""

    max_confidence: float = _f(0.75, min=0.0, max=1.0)  # collect when the top mask probability is under this
    confident_share: float = _f(0.05, min=0.0, max=1.0)  # ... and this share of the confident ones
    confident_min_gap_s: float = _f(10.0, min=0.0, max=1e6)  # at most one confident crop per this many s
    max_mb: float = _f(500.0, min=0.0, max=1e7)  # the folder's size cap; reached: collecting stops
    jpeg_quality: int = _f(92, min=10, max=100)
    max_age_days: float = _f(30.0, min=0.0, max=36500.0)  # crops older than this are deleted; 0 = kept


@dataclass(frozen=True)
class SaveFacesConfig:
    """`mask-monitor --save-faces DIR`: how long the crops of flagged people are kept (0 = no limit)."""

    max_age_days: float = _f(30.0, min=0.0, max=36500.0)
    max_mb: float = _f(500.0, min=0.0, max=1e7)  # over it, the oldest crops are deleted


@dataclass(frozen=True)
class RecordConfig:
    """`mask-monitor --record`: faces blurred or not, and how long recordings are kept (0 = no limit)."""

    blur: str = _f("faces", choices=("faces", "none"))  # faces: every face blurred but flagged people's
    max_age_days: float = _f(30.0, min=0.0, max=36500.0)
    max_mb: float = _f(2000.0, min=0.0, max=1e7)  # over it, the oldest recordings are deleted


@dataclass(frozen=True)
class ScenesConfig:
    """Street and crowd scenes with boxed faces (PASCAL VOC): `mask-train import` cuts each face where the
    monitor's detector puts it, `mask-train evaluate-scenes` runs them through the monitor's path."""

    min_face_height: int = _f(24, min=1, max=10000)  # import: shorter faces (px in the scene) are skipped
    search_grow: float = _f(2.5, min=1.2, max=10.0)  # import: the detector looks at the box grown this much
    search_face_px: int = _f(64, min=24, max=1000)  # ... scaled so the annotated face is this many px tall
    match_iou: float = _f(0.3, min=0.0, max=1.0)  # a detection is an annotated face's from this IoU on
    frame_width: int = _f(640, min=64, max=8192)  # evaluate-scenes: each scene scaled to this width


@dataclass(frozen=True)
class Config:
    engine: EngineConfig = field(default_factory=EngineConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    ui: UIConfig = field(default_factory=UIConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    sources: tuple[SourceConfig, ...] = ()  # `[[sources]]` tables; none by default (CLI flags name them)
    tune: TuneConfig = field(default_factory=TuneConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    save_faces: SaveFacesConfig = field(default_factory=SaveFacesConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)
    # Where relative paths in the file are resolved from (the config file's folder); not a TOML key.
    base_dir: str = field(default=str(REPO_ROOT), compare=False)

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
        if not out["sources"]:  # no [[sources]] in the file: TOML has no way to write an empty one
            out.pop("sources")
        return _lists(out)


def _lists(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_lists(v) for v in obj]
    return obj


_HINTS = typing.get_type_hints(Config)
SECTIONS: dict[str, type] = {
    f.name: _HINTS[f.name] for f in fields(Config) if f.name not in ("base_dir", "sources")
}


def _suggest(name: str, valid: list[str]) -> str:
    # a key the name extends or abbreviates ('lr_rate' -> 'lr') first: a spelling ratio alone picks
    # whichever long key shares the most letters ('calibrate')
    close = [v for v in valid if min(len(v), len(name)) >= 2 and (name.startswith(v) or v.startswith(name))]
    close = close[:1] or difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    close = close or difflib.get_close_matches(name, valid, n=1, cutoff=0.4)
    return f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(valid)})"


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
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if lo is not None and not value >= lo or hi is not None and not value <= hi:  # NaN is out of range too
        raise ConfigError(f"{where} = {value!r} is out of range [{lo}, {hi}]")
    if choices is not None and value not in choices:
        raise ConfigError(
            f"{where} = {value!r} is not one of {', '.join(map(repr, choices))}"
            + (_suggest(value, list(choices)) if isinstance(value, str) else "")
        )
    return value


def _build_section(cls: type, table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in table.items():
        if key not in hints:
            raise ConfigError(f"{where}: unknown key '{key}'{_suggest(key, valid)}")
        f = next(f for f in fields(cls) if f.name == key)
        kwargs[key] = _convert(value, hints[key], f"{where}.{key}", f.metadata)
    obj = cls(**kwargs)
    _cross_check(obj, where)
    return obj


def section_from_dict(cls: type, table: Any, where: str) -> Any:
    """One validated section (e.g. the crop geometry stored in a model file), with the config's checks."""
    return _build_section(cls, table, where)


def _cross_check(section: Any, where: str) -> None:
    """Relations between keys that single-key bounds cannot express."""
    if isinstance(section, ExportConfig):
        if not section.min_batch <= section.opt_batch <= section.max_batch:
            raise ConfigError(
                f"{where}: need min_batch <= opt_batch <= max_batch, got "
                f"{section.min_batch}, {section.opt_batch}, {section.max_batch}"
            )
    if isinstance(section, AugmentConfig) and section.cutmix + section.mixup > 1.0:
        raise ConfigError(
            f"{where}: cutmix + mixup = {section.cutmix + section.mixup:g} exceeds 1 (each is the share of "
            "batches mixed that way)"
        )
    if isinstance(section, AugmentConfig) and section.small_face_px[0] > section.small_face_px[1]:
        raise ConfigError(f"{where}.small_face_px = {list(section.small_face_px)}: lower exceeds upper")
    if isinstance(section, MonitorConfig) and section.min_votes > section.vote_window:
        raise ConfigError(
            f"{where}.min_votes = {section.min_votes} exceeds vote_window = {section.vote_window}"
        )
    if isinstance(section, MonitorConfig) and section.reconnect_initial_s > section.reconnect_max_s:
        raise ConfigError(f"{where}.reconnect_initial_s exceeds reconnect_max_s")
    if isinstance(section, SourceConfig) and (why := zone_problem(section.zone)):
        raise ConfigError(f"{where}.zone: {why}")
    if isinstance(section, ComplianceConfig) and section.clear_below > section.threshold:
        raise ConfigError(
            f"{where}.clear_below = {section.clear_below:g} exceeds threshold = {section.threshold:g}"
        )


def from_dict(data: Mapping[str, Any], source: str = "config", base_dir: str | Path | None = None) -> Config:
    valid = [*SECTIONS, "sources"]
    sections: dict[str, Any] = {}
    for name, table in data.items():
        if name == "sources":
            sections["sources"] = _sources(table, f"{source}: [[sources]]")
            continue
        if name not in SECTIONS:
            raise ConfigError(f"{source}: unknown section [{name}]{_suggest(name, valid)}")
        sections[name] = _build_section(SECTIONS[name], table, f"{source}: [{name}]")
    return Config(**sections, base_dir=str(base_dir if base_dir is not None else REPO_ROOT))


def _sources(tables: Any, where: str) -> tuple[SourceConfig, ...]:
    if not isinstance(tables, list):
        raise ConfigError(f"{where} must be an array of tables ([[sources]]), got {tables!r}")
    out = []
    for i, table in enumerate(tables):
        if isinstance(table, dict) and isinstance(table.get("address"), int):
            table = {**table, "address": str(table["address"])}  # a camera index written as a number
        name = table.get("name") if isinstance(table, dict) else None
        named = f" ({name})" if isinstance(name, str) and name else ""
        out.append(_build_section(SourceConfig, table, f"{where} #{i + 1}{named}"))
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
    path: str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Config:
    """Read a config file (or the default one) and apply dotted overrides such as {"train.epochs": 3}."""
    p = Path(path) if path is not None else default_config_path()
    if p is None:
        cfg = Config()
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
        cfg = from_dict(data, str(p), base_dir=p.resolve().parent)
    return with_overrides(cfg, overrides or {})


def with_overrides(cfg: Config, overrides: Mapping[str, Any]) -> Config:
    """Apply {"section.key": value} (e.g. from CLI flags); None values are skipped, so unset flags change
    nothing."""
    grouped: dict[str, dict[str, Any]] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if section not in SECTIONS or not key:
            raise ConfigError(f"override '{dotted}': unknown section{_suggest(section, list(SECTIONS))}")
        grouped.setdefault(section, {})[key] = value
    for section, table in grouped.items():
        current = getattr(cfg, section)
        merged = {f.name: getattr(current, f.name) for f in fields(current)}
        merged.update({k: list(v) if isinstance(v, tuple) else v for k, v in table.items()})
        merged = {k: list(v) if isinstance(v, tuple) else v for k, v in merged.items()}
        new = _build_section(SECTIONS[section], merged, f"override [{section}]")
        cfg = replace(cfg, **{section: new})
    return cfg


def add_config_argument(parser: Any) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="config file (default: ./config.toml, else the repository's config.toml)",
    )


def _is_path_key(dotted: str) -> bool:
    section, _, key = dotted.partition(".")
    cls = SECTIONS.get(section)
    return cls is not None and any(f.name == key and f.metadata.get("path") for f in fields(cls))


def cli_overrides(args: Any) -> dict[str, Any]:
    """Every argparse dest written as 'section.key' that the user gave, as an override. A path typed on the
    command line is relative to the working directory, as the shell means it (a path in a config file stays
    relative to that file's folder), so it is made absolute here; "" keeps its meaning (the default)."""
    out = {}
    for k, v in vars(args).items():
        if "." not in k or v is None:
            continue
        if isinstance(v, str) and v and _is_path_key(k):
            v = os.path.abspath(os.path.expanduser(v))
        out[k] = v
    return out


def config_from_args(args: Any) -> Config:
    """--config plus every argparse dest written as 'section.key' (e.g. dest='train.epochs') as an
    override."""
    return load_config(getattr(args, "config", None), cli_overrides(args))


def choices_of(dotted: str) -> tuple[Any, ...]:
    """The allowed values of a 'section.key' setting, for argparse `choices=` (one list: the schema's)."""
    section, _, key = dotted.partition(".")
    cls = next((f.type for f in fields(Config) if f.name == section), None)
    if isinstance(cls, str):
        cls = typing.get_type_hints(Config)[section]
    found = next((f for f in fields(cls) if f.name == key), None) if cls is not None else None
    if found is None or not found.metadata.get("choices"):
        raise KeyError(f"{dotted} is not a setting with a fixed list of values")
    return tuple(found.metadata["choices"])
