"""Face detection (MTCNN from facenet-pytorch) and THE crop into the competition's 384x512 format.

`crop_face` is the only function that turns a face box into a classifier crop: `mask-train prepare`
uses it on the competition photos and `mask-monitor` on live frames, so the model sees the same geometry
in both. Images are BGR uint8 (OpenCV's order) everywhere in this module.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from engines.config import Config, CropConfig, DetectorConfig
from engines.device import cpu_cores, resolve_device
from engines.errors import UserError

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels

# MTCNN as the first demo ran it, before [detector] was tuned for masked faces: the sample video's masks were
# placed and the demo data's photos cut with these settings, and evaluate-frames finds each held-out photo's
# face with them, so tuning config.toml's [detector] moves none of them (the Makefile pins the same values);
# with facenet-pytorch's own nets
FIRST_DEMO_DETECTOR = DetectorConfig(
    thresholds=(0.5, 0.6, 0.6), min_face_size=40, scale_factor=0.709, min_score=0.0, weights=""
)

_BORDERS = {
    "constant": cv2.BORDER_CONSTANT,
    "replicate": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT_101,
}


@dataclass(frozen=True, eq=False)
class Face:
    box: Box
    score: float
    landmarks: np.ndarray | None = field(default=None, repr=False)  # [5, 2]: eyes, nose, mouth corners

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    def shifted(self, dx: float, dy: float) -> Face:
        x1, y1, x2, y2 = self.box
        lm = None if self.landmarks is None else self.landmarks + np.array([dx, dy], dtype=np.float32)
        return Face((x1 + dx, y1 + dy, x2 + dx, y2 + dy), self.score, lm)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 for boxes that do not meet)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# --- the crop -----------------------------------------------------------------------------------------------


def crop_box(box: Box, geom: CropConfig = CropConfig()) -> Box:
    """Face box -> the region of the image that becomes the crop (3:4, may extend past the image)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    cw, ch = w * (1 + 2 * geom.margin), h * (1 + 2 * geom.margin)
    aspect = geom.width / geom.height
    if cw / ch < aspect:
        cw = ch * aspect
    else:
        ch = cw / aspect
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + geom.shift_y * ch
    return cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2


def center_box(image_shape: Sequence[int], geom: CropConfig = CropConfig()) -> Box:
    """The crop region used where no face is found: the largest centred 3:4 region of the image."""
    h, w = image_shape[:2]
    aspect = geom.width / geom.height
    cw, ch = (w, w / aspect) if w / h < aspect else (h * aspect, h)
    return (w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2


def crop_region(image: np.ndarray, region: Box, geom: CropConfig = CropConfig()) -> np.ndarray:
    """Cut `region` out of `image`, padding where it leaves the image, resized to geom.width x geom.height."""
    if image is None or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ValueError(f"expected an HxWx3 image, got shape {getattr(image, 'shape', None)}")
    H, W = image.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in region)
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    ix1, iy1, ix2, iy2 = max(x1, 0), max(y1, 0), min(x2, W), min(y2, H)
    if ix1 >= ix2 or iy1 >= iy2:  # region entirely outside the image
        patch = np.zeros((y2 - y1, x2 - x1, 3), dtype=image.dtype)
        if geom.border != "constant":
            patch[:] = image[min(max(y1, 0), H - 1), min(max(x1, 0), W - 1)]
    else:
        patch = image[iy1:iy2, ix1:ix2]
        pads = (iy1 - y1, y2 - iy2, ix1 - x1, x2 - ix2)
        if any(pads):
            border = _BORDERS[geom.border]
            if border == cv2.BORDER_REFLECT_101 and (patch.shape[0] < 2 or patch.shape[1] < 2):
                border = cv2.BORDER_REPLICATE
            patch = cv2.copyMakeBorder(patch, *pads, border, value=(0, 0, 0))
    shrinking = patch.shape[1] > geom.width or patch.shape[0] > geom.height
    return cv2.resize(
        patch, (geom.width, geom.height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )


def crop_face(image: np.ndarray, box: Box, geom: CropConfig = CropConfig()) -> np.ndarray:
    """A face box -> the training-format crop (geom.height x geom.width x 3, BGR uint8)."""
    return crop_region(image, crop_box(box, geom), geom)


# --- the detector -------------------------------------------------------------------------------------------


class FaceDetector:
    """MTCNN behind `detect(frame) -> [Face]`, tuned by DetectorConfig.

    facenet-pytorch's nets are loaded on first use (their weights ship inside the package). Per-call
    `thresholds` / `min_face_size` let a caller take a more permissive second look at a small region.
    """

    def __init__(self, cfg: DetectorConfig = DetectorConfig()) -> None:
        self.cfg = cfg
        self._nets = None
        # guards the lazy load only: the nets keep no state, so frames may be detected on several threads
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._workers = 1

    def _load(self):
        with self._lock:
            return self._load_locked()

    def _load_locked(self):
        if self._nets is None:
            try:
                from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
            except ImportError as exc:  # pragma: no cover - a broken install
                raise UserError(
                    f"facenet-pytorch is not installed ({exc}); pip install facenet-pytorch==2.5.3"
                ) from None
            import torch

            device = resolve_device(self.cfg.device, "detector.device")
            nets = [PNet(), RNet(), ONet()]
            if self.cfg.weights:
                for net, state in zip(nets, load_detector_weights(self.cfg.weights)):
                    net.load_state_dict(state)
            # channels_last: PyTorch's CPU max-pooling is several times faster in it (MTCNN 1.4-1.7x overall)
            nets = tuple(net.to(device).eval().to(memory_format=torch.channels_last) for net in nets)
            self._nets = (nets, device)
            self._workers = self._worker_count(device, torch.get_num_threads())
        return self._nets

    def _worker_count(self, device: str, torch_threads: int) -> int:
        """Threads that detect the frames of one batch side by side on the CPU. Batching buys little on a CPU
        (MTCNN's work is per pyramid level and per candidate box, much of it in Python); frames on separate
        threads, each running PyTorch on the thread itself, fill the cores without OpenMP's spin-waiting."""
        if device != "cpu":
            return 1  # a GPU gains from one large batch instead
        if self.cfg.threads > 0:
            return self.cfg.threads
        return max(1, cpu_cores() // max(torch_threads, 1))

    def close(self) -> None:
        """Stops the detection threads (a later call starts them again)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def detect(
        self,
        frame: np.ndarray,
        *,
        thresholds: Sequence[float] | None = None,
        min_face_size: int | None = None,
    ) -> list[Face]:
        return self.detect_batch([frame], thresholds=thresholds, min_face_size=min_face_size)[0]

    def detect_batch(
        self,
        frames: Sequence[np.ndarray],
        *,
        thresholds: Sequence[float] | None = None,
        min_face_size: int | None = None,
    ) -> list[list[Face]]:
        """Faces in each frame. Frames of equal size run as one batch; others one by one."""
        if len(frames) == 0:
            return []
        for i, f in enumerate(frames):
            if (
                not isinstance(f, np.ndarray)
                or f.ndim != 3
                or f.shape[2] != 3
                or f.shape[0] < 12
                or f.shape[1] < 12
            ):
                raise ValueError(
                    f"frame {i}: expected an HxWx3 BGR image, got shape {getattr(f, 'shape', None)}"
                )
        if len({f.shape for f in frames}) > 1:
            return [
                self.detect_batch([f], thresholds=thresholds, min_face_size=min_face_size)[0] for f in frames
            ]
        import torch

        from engines.mtcnn import detect_faces

        th = list(thresholds if thresholds is not None else self.cfg.thresholds)
        minsize = int(min_face_size if min_face_size is not None else self.cfg.min_face_size)
        if min(frames[0].shape[:2]) < minsize:  # no face fits; facenet-pytorch would fail on an empty pyramid
            return [[] for _ in frames]
        (pnet, rnet, onet), device = self._load()
        rgb = np.stack(
            [cv2.cvtColor(np.ascontiguousarray(f, dtype=np.uint8), cv2.COLOR_BGR2RGB) for f in frames]
        )

        def run(part: np.ndarray) -> tuple[list, list]:
            with torch.inference_mode():
                return detect_faces(part, minsize, (pnet, rnet, onet), th, self.cfg.scale_factor, device)

        if self._workers > 1 and len(rgb) > 1:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="mtcnn")
                pool = self._pool
            parts = np.array_split(rgb, min(self._workers, len(rgb)))
            boxes, points = [], []
            for b, p in pool.map(run, parts):
                boxes += b
                points += p
        else:
            boxes, points = run(rgb)
        out: list[list[Face]] = []
        H, W = rgb.shape[1:3]
        for b, p in zip(boxes, points):
            faces = []
            for row, lm in zip(np.asarray(b).reshape(-1, 5), np.asarray(p).reshape(-1, 5, 2)):
                x1, y1, x2, y2, score = (float(v) for v in row)
                if score < self.cfg.min_score or x2 <= x1 or y2 <= y1:
                    continue
                box = (max(x1, 0.0), max(y1, 0.0), min(x2, float(W)), min(y2, float(H)))
                if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                    continue
                faces.append(Face(box, score, lm.astype(np.float32)))
            faces.sort(key=lambda f: -f.score)
            out.append(faces)
        return out

    def detect_region(self, frame: np.ndarray, region: Box, **kw) -> list[Face]:
        """Detect inside `region` only (clipped to the frame), boxes returned in frame coordinates."""
        H, W = frame.shape[:2]
        x1, y1 = max(int(region[0]), 0), max(int(region[1]), 0)
        x2, y2 = min(int(np.ceil(region[2])), W), min(int(np.ceil(region[3])), H)
        if x2 - x1 < 12 or y2 - y1 < 12:
            return []
        return [f.shifted(x1, y1) for f in self.detect(frame[y1:y2, x1:x2], **kw)]


DETECTOR_FORMAT = "mask-monitor mtcnn"
NET_NAMES = ("pnet", "rnet", "onet")


def load_detector_weights(path: str | Path) -> tuple[dict, dict, dict]:
    """The three nets' state dicts from a `mask-train fit-detector` file (weights_only: tensors and plain
    values only); a file of any other kind is one clear error naming it."""
    import torch

    p = Config().locate(path)  # relative: as the default config resolves it (create_detector: its config's)
    if not p.is_file():
        raise UserError(f'detector.weights: {p} does not exist ("" = facenet-pytorch\'s own nets)')
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: name it, whatever torch says
        raise UserError(f"detector.weights: {p} is not a detector file ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != DETECTOR_FORMAT:
        raise UserError(f"detector.weights: {p} is not a `mask-train fit-detector` file")
    return tuple(state[k] for k in NET_NAMES)


def create_detector(cfg: Config) -> FaceDetector:
    """The [detector] of a loaded config, its weights file resolved against the config file's folder, or,
    where no such file is there, against the project's (a config file of one's own elsewhere that leaves
    weights at its default still runs the bundled samples/detector_masked.pt)."""
    d = cfg.detector
    if d.weights:
        d = replace(d, weights=str(cfg.locate(d.weights)))
    return FaceDetector(d)


def detect_shrunk(detector: FaceDetector, image: np.ndarray, max_side: int, **kw) -> list[Face]:
    """The monitor's detection round: MTCNN on a copy shrunk to `max_side` (monitor.detect_max_side), boxes
    and landmarks in the full image's coordinates. `mask-train evaluate-frames` measures through it."""
    h, w = image.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s >= 1.0:
        return detector.detect(image, **kw)
    small = cv2.resize(
        image, (max(int(round(w * s)), 12), max(int(round(h * s)), 12)), interpolation=cv2.INTER_AREA
    )
    return [
        Face(
            tuple(v / s for v in f.box),
            f.score,
            None if f.landmarks is None else f.landmarks / s,
        )
        for f in detector.detect(small, **kw)
    ]
