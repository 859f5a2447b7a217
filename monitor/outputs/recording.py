"""--record: the annotated video (faces blurred but flagged people's; a source's zone drawn and its outside
dimmed), written beside OUT and renamed."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from engines.errors import UserError
from engines.fileio import PRIVATE_FILE, atomic_path, private_dir, require_dir
from monitor.decisions.decide import State
from monitor.decisions.results import FrameResult
from monitor.decisions.zones import Zone, draw_zone
from monitor.outputs.base import Context, NoSink

# BGR colours per mask state (wear, incorrect, not_wear) and for a track without a state yet
BOX_COLOURS = ((80, 200, 60), (0, 200, 255), (40, 40, 230))


UNKNOWN_COLOUR = (200, 200, 200)


def check_record_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.suffix.lower() not in (".mp4", ".avi", ".mkv", ".mov"):
        raise UserError(f"--record {p}: use a .mp4 (or .avi / .mkv / .mov) file name")
    require_dir(p.parent, f"--record {p}: folder")
    return p


def check_record_dir(path: str | os.PathLike[str]) -> Path:
    """--record with several sources: a private folder (made 0700 if missing) with one NAME.mp4 per source."""
    p = Path(path)
    if p.suffix.lower() in (".mp4", ".avi", ".mkv", ".mov") or (p.exists() and not p.is_dir()):
        raise UserError(
            f"--record {p}: with several sources, give a folder (one video per source is written)"
        )
    require_dir(p.parent, f"--record {p}: folder")
    try:
        private_dir(p)
    except OSError as exc:
        raise UserError(f"--record {p}: cannot create the folder ({exc.strerror})") from None
    return p


class Recorder:
    """The annotated video. Written to a temporary file beside OUT and renamed at close, so OUT is always a
    complete video (0600: it shows faces). Frames of another size are resized to the first frame's size."""

    def __init__(self, path: str | os.PathLike[str], fps: float) -> None:
        self.path = check_record_path(path)
        self.fps = fps
        self.frames = 0
        self._ctx = atomic_path(self.path, mode=PRIVATE_FILE)
        try:
            self._tmp = self._ctx.__enter__()
        except OSError as exc:  # a folder we may not write in
            raise UserError(f"--record {self.path}: cannot write ({exc.strerror})") from None
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if self._writer is None:
            fourcc = cv2.VideoWriter_fourcc(
                *("mp4v" if self.path.suffix.lower() in (".mp4", ".mov") else "MJPG")
            )
            writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (w, h))
            if not writer.isOpened():
                writer.release()  # self._writer stays None: close() leaves no empty file over OUT
                raise UserError(f"--record {self.path}: OpenCV cannot write this video format here")
            self._writer = writer
            self._size = (w, h)
        if (w, h) != self._size:
            image = cv2.resize(image, self._size)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self._ctx is None:
            return
        ctx, self._ctx = self._ctx, None
        if self._writer is not None and self.frames > 0:
            self._writer.release()
            ctx.__exit__(None, None, None)  # rename into place
        else:
            if self._writer is not None:
                self._writer.release()
            ctx.__exit__(RuntimeError, RuntimeError("no frames"), None)  # nothing recorded: leave no file


def blur_faces(
    image: np.ndarray, boxes: list[tuple[float, float, float, float]], grow: float = 0.2
) -> np.ndarray:
    """A copy of the frame with each box (grown by `grow` of its size on each side: hair, chin, a box that
    lags a moving head) reduced to a 6-cell-wide average and smoothed back: no face is recognisable in it."""
    out = image.copy()
    h, w = out.shape[:2]
    for x1, y1, x2, y2 in boxes:
        gw, gh = (x2 - x1) * grow, (y2 - y1) * grow
        a, b = max(int(x1 - gw), 0), max(int(y1 - gh), 0)
        c, d = min(int(round(x2 + gw)), w), min(int(round(y2 + gh)), h)
        if c - a < 2 or d - b < 2:
            continue
        roi = out[b:d, a:c]
        cells = (6, max(1, round(6 * (d - b) / (c - a))))
        small = cv2.resize(roi, cells, interpolation=cv2.INTER_AREA)
        out[b:d, a:c] = cv2.GaussianBlur(
            cv2.resize(small, (c - a, d - b), interpolation=cv2.INTER_LINEAR), (0, 0), max(c - a, d - b) / 12
        )
    return out


def annotate(
    image: np.ndarray, boxes: list[tuple[int, tuple[float, float, float, float], State | None, bool]]
) -> np.ndarray:
    """A copy of the frame with each track's box, id and state: (track_id, box, state, fresh)."""
    out = image.copy()
    scale = max(out.shape[0] / 480.0, 0.4)
    for track_id, box, state, fresh in boxes:
        colour = UNKNOWN_COLOUR if state is None else BOX_COLOURS[state.mask]
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2 if fresh else 1)
        number = f"#{track_id}" if track_id else "new"  # a track not yet confirmed has no person number
        text = number if state is None else f"{number} {state.mask_name} {state.confidence:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, 1)
        ty = max(y1 - 4, th + 2)
        cv2.rectangle(out, (x1, ty - th - 3), (x1 + tw + 2, ty + 2), colour, -1)
        cv2.putText(out, text, (x1 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


class RecordingSink(NoSink):
    """--record: one annotated video per source (OUT.mp4 for one source, DIR/NAME.mp4 for several); a source
    with a zone has it drawn and everything outside it dimmed (faces there do not count)."""

    def __init__(
        self, recorders: dict[str, Recorder], blur: bool, zones: dict[str, Zone] | None = None
    ) -> None:
        self.recorders, self.blur, self.zones = recorders, blur, zones or {}

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.recorders.values())

    def frame(self, result: FrameResult) -> None:
        recorder = self.recorders.get(result.source)
        if recorder is None or result.skipped or result.final:
            return
        boxes = [(t.number, t.box, t.settled or t.state, t.fresh) for t in result.tracks]
        image = result.frame.image
        if self.blur:  # every face in the recording but flagged people's
            image = blur_faces(image, [t.box for t in result.tracks if not t.flagged])
        zone = self.zones.get(result.source)
        if zone is not None:
            image = draw_zone(image, zone)
        recorder.write(annotate(image, boxes))

    def close(self) -> None:
        """Each video on its own: a full disk under one must not cost the others (the first error raised)."""
        error: OSError | None = None
        for r in self.recorders.values():
            try:
                r.close()
            except OSError as exc:
                error = error or exc
        if error is not None:
            raise error


def sink_for(ctx: Context) -> RecordingSink | None:
    record = ctx.options.record
    if record is None:
        return None
    sink = RecordingSink({}, ctx.cfg.record.blur != "none", ctx.zones)
    try:
        for s in ctx.sources:
            sink.recorders[s.name] = Recorder(record / f"{s.name}.mp4" if ctx.named else record, s.fps)
    except BaseException:
        sink.close()  # what was opened before the one that failed leaves no temp file behind
        raise
    return sink
