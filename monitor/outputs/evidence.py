"""Evidence of each flag: a snapshot and, optionally, a clip of `clip_s` seconds before and after it.

The snapshot is the frame of the flag with the flagged person's box drawn and every other face blurred (the
tracked faces of that frame, confirmed or not); a zone's outside is blurred and dimmed as well (faces there
do not count and are not the flag's business). The clip is made the same way, frame by frame, from a bounded
ring buffer of JPEG-encoded frames (`buffer_mb` per source, and never more than `clip_s` of them) and the
frames that follow the flag; it is written when `clip_s` have passed after the flag (or at the end of the
run). Files are private (0600 in a 0700 folder), written by a temp file and a rename, named
`SOURCE_fFRAME_trackN_MASK.jpg` / `.mp4`, and kept under `[evidence]` `max_age_days` / `max_mb`
(`evidence_kept`, for monitor.outputs.retention). `evidence_for(flag event)` gives the paths to write
into the event.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.errors import UserError
from engines.fileio import PRIVATE_FILE, atomic_path, atomic_write_bytes, private_dir
from monitor.outputs.retention import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Kept, suffix_in

if TYPE_CHECKING:
    import numpy as np

    from monitor.config import EvidenceConfig
    from monitor.decisions.results import Event, FrameResult
    from monitor.decisions.zones import Zone

FLAG_COLOUR = (40, 40, 230)  # BGR
FLAG = "--evidence"  # the retention's name for the folder


def check_evidence_dir(folder: str | os.PathLike[str], what: str) -> Path:
    """The evidence folder, made (0700) and written to once: at start, before the model loads. A file there,
    or a folder that cannot be made or written, is one UserError naming `what` (`--evidence DIR`,
    `[evidence] folder DIR`)."""
    p = Path(folder)
    if p.exists() and not p.is_dir():
        raise UserError(f"{what} is a file; give a folder")
    try:
        private_dir(p)
        probe = p / ".evidence-write-test"
        atomic_write_bytes(probe, b"", PRIVATE_FILE)
        probe.unlink()
    except OSError as exc:
        raise UserError(f"{what}: cannot write ({exc.strerror or exc})") from None
    return p


@dataclass(frozen=True)
class Shot:
    """One frame in the ring: when, which, its JPEG, and the tracked faces on it (person number or -track id
    for a tentative track -> box)."""

    time: float
    index: int
    jpeg: bytes
    faces: dict[int, tuple[float, float, float, float]]


class FrameRing:
    """The last `max_s` seconds of frames, at most `max_bytes` of JPEG in all (the oldest go first)."""

    def __init__(self, max_s: float, max_bytes: int) -> None:
        self.max_s, self.max_bytes = max_s, max_bytes
        self._shots: deque[Shot] = deque()
        self.bytes = 0

    def add(self, shot: Shot) -> None:
        self._shots.append(shot)
        self.bytes += len(shot.jpeg)
        while self._shots and (self.bytes > self.max_bytes or shot.time - self._shots[0].time > self.max_s):
            self.bytes -= len(self._shots.popleft().jpeg)

    def since(self, t: float) -> list[Shot]:
        return [s for s in self._shots if s.time >= t]

    def __len__(self) -> int:
        return len(self._shots)


@dataclass
class _Clip:
    path: Path
    number: int
    until: float
    shots: list[Shot] = field(default_factory=list)


def evidence_kept(folder: str | os.PathLike[str], c: EvidenceConfig) -> Kept:
    """The evidence folder under retention (its images and videos): monitor.outputs.retention.Retention."""
    return Kept(FLAG, Path(folder), c.max_age_days, c.max_mb, suffix_in(IMAGE_SUFFIXES + VIDEO_SUFFIXES))


class EvidenceSink:
    """A Sink writing the evidence of every flag event of FrameResult.events (before the events file and MQTT
    sinks write the event: they add `evidence_for(event)` to it)."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        clip_s: float = 0.0,
        buffer_mb: float = 64.0,
        jpeg_quality: int = 85,
        zones: dict[str, Zone | None] | None = None,
        wrote: Callable[[str, int], Any] | None = None,
    ) -> None:
        """`zones`: per source; `wrote(FLAG, bytes)`: told of every file written (Retention.wrote, which
        says when the folder passes its cap)."""
        self.folder = check_evidence_dir(folder, f"evidence folder {folder}")
        self.clip_s, self.buffer_bytes = clip_s, int(buffer_mb * 1e6)
        self.quality, self.zones, self.wrote = jpeg_quality, zones or {}, wrote
        self._rings: dict[str, FrameRing] = {}
        self._clips: dict[str, list[_Clip]] = {}
        self._paths: dict[tuple[str, int, int], dict[str, str | None]] = {}
        self.snapshots = self.clips = 0

    @classmethod
    def from_config(cls, folder: str | os.PathLike[str], c: EvidenceConfig, **kw: Any) -> EvidenceSink:
        return cls(folder, c.clip_s, c.buffer_mb, c.jpeg_quality, **kw)

    def evidence_for(self, event: Event) -> dict[str, str | None] | None:
        """{"snapshot": path, "clip": path or None} of a flag event (the clip's path once it is due)."""
        return self._paths.get((event.source, event.track_id, event.frame))

    # --- the Sink interface -----------------------------------------------------------------------------
    def frame(self, result: FrameResult) -> None:
        source = result.source
        if result.final:
            self._finish(source, None)
            return
        image = result.frame.image
        if image is None or result.skipped:
            return
        faces = {(t.number or -t.id): tuple(t.box) for t in result.tracks}
        shot = None
        if self.clip_s > 0:
            shot = Shot(result.frame.time, result.frame.index, self._jpeg(image), faces)  # type: ignore[arg-type]
            ring = self._rings.setdefault(source, FrameRing(self.clip_s, self.buffer_bytes))
            ring.add(shot)
            for clip in self._clips.get(source, []):
                clip.shots.append(shot)
        for ev in result.events:
            if ev.event == "flag":
                self._flag(source, ev, image, faces)
        self._finish(source, result.frame.time)

    def event(self, event: Event) -> None:
        """Flags come with their frame (FrameResult.events), where their evidence is written."""

    def close(self) -> None:
        for source in list(self._clips):
            self._finish(source, None)

    # --- writing ------------------------------------------------------------------------------------------
    def _jpeg(self, image: np.ndarray) -> bytes:
        import cv2

        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:  # pragma: no cover - a uint8 BGR frame always encodes
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()

    def render(self, source: str, image: np.ndarray, faces: dict[int, Any], number: int) -> np.ndarray:
        """The frame as evidence shows it: every face but `number`'s blurred, the zone's outside blurred and
        dimmed, the flagged box drawn."""
        import cv2

        from monitor.decisions.zones import draw_zone
        from monitor.outputs.recording import blur_faces

        out = blur_faces(image, [b for n, b in faces.items() if n != number])
        zone = self.zones.get(source)
        if zone is not None and not zone.whole_frame:
            h, w = out.shape[:2]
            inside = draw_zone(out, None)
            blurred = cv2.GaussianBlur(out, (0, 0), max(h, w) / 40)
            keep = [n for n, b in faces.items() if n == number]  # the flagged face stays sharp
            out = draw_zone(blurred, zone)
            mask = _polygon_mask(zone, w, h)
            out[mask] = inside[mask]
            for n in keep:
                x1, y1, x2, y2 = (int(round(v)) for v in faces[n])
                out[max(y1, 0) : y2, max(x1, 0) : x2] = inside[max(y1, 0) : y2, max(x1, 0) : x2]
        if number in faces:
            x1, y1, x2, y2 = (int(round(v)) for v in faces[number])
            cv2.rectangle(out, (x1, y1), (x2, y2), FLAG_COLOUR, max(2, out.shape[0] // 240))
        return out

    def _name(self, source: str, ev: Event) -> str:
        return f"{source or 'flag'}_f{ev.frame:08d}_track{ev.track_id}_{ev.state.mask_name}"

    def _flag(self, source: str, ev: Event, image: np.ndarray, faces: dict[int, Any]) -> None:
        import cv2

        stem = self._name(source, ev)
        snap = self.folder / f"{stem}.jpg"
        ok, buf = cv2.imencode(
            ".jpg", self.render(source, image, faces, ev.track_id), [cv2.IMWRITE_JPEG_QUALITY, self.quality]
        )
        self._write(snap, buf.tobytes())
        self.snapshots += 1
        paths: dict[str, str | None] = {"snapshot": str(snap), "clip": None}
        if self.clip_s > 0:
            clip = _Clip(self.folder / f"{stem}.mp4", ev.track_id, ev.time + self.clip_s)
            clip.shots = self._rings[source].since(ev.time - self.clip_s)
            self._clips.setdefault(source, []).append(clip)
            paths["clip"] = str(clip.path)
        self._paths[(ev.source, ev.track_id, ev.frame)] = paths

    def _write(self, path: Path, data: bytes) -> None:
        try:
            if not self.folder.is_dir():  # removed while running: made again, private
                private_dir(self.folder)
            atomic_write_bytes(path, data, PRIVATE_FILE)
        except OSError as exc:
            raise UserError(f"evidence {path}: cannot write ({exc.strerror or exc})") from None
        if self.wrote is not None:
            self.wrote(FLAG, len(data))

    def _finish(self, source: str, now: float | None) -> None:
        """Write the clips of `source` that are due (all of them when `now` is None: the end)."""
        pending = self._clips.get(source, [])
        for clip in [c for c in pending if now is None or now >= c.until]:
            pending.remove(clip)
            self._write_clip(source, clip)

    def _write_clip(self, source: str, clip: _Clip) -> None:
        import cv2
        import numpy as np

        shots = clip.shots
        if not shots:
            return
        span = shots[-1].time - shots[0].time
        fps = (len(shots) - 1) / span if span > 0 and len(shots) > 1 else 10.0
        first = cv2.imdecode(np.frombuffer(shots[0].jpeg, np.uint8), cv2.IMREAD_COLOR)
        h, w = first.shape[:2]
        try:
            with atomic_path(clip.path, mode=PRIVATE_FILE) as tmp:
                writer = cv2.VideoWriter(
                    str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), min(max(fps, 1.0), 120.0), (w, h)
                )
                try:
                    for s in shots:
                        img = cv2.imdecode(np.frombuffer(s.jpeg, np.uint8), cv2.IMREAD_COLOR)
                        if img is not None and img.shape[:2] == (h, w):
                            writer.write(self.render(source, img, s.faces, clip.number))
                finally:
                    writer.release()
                size = tmp.stat().st_size
        except OSError as exc:
            raise UserError(f"evidence {clip.path}: cannot write ({exc.strerror or exc})") from None
        self.clips += 1
        if self.wrote is not None:
            self.wrote(FLAG, size)


def _polygon_mask(zone: Zone, w: int, h: int) -> np.ndarray:
    import cv2
    import numpy as np

    mask = np.zeros((h, w), np.uint8)
    pts = np.array([[round(x), round(y)] for x, y in zone.polygon(w, h)], np.int32)
    cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


def sink_for(ctx: Any) -> EvidenceSink | None:
    """--evidence DIR (monitor.outputs.sinks.SINKS): made before the events file and MQTT, which read
    `ctx.evidence.evidence_for(event)`; an unwritable folder is one UserError."""
    folder = ctx.options.evidence
    if folder is None:
        return None
    wrote = ctx.retention.wrote if ctx.retention is not None else None
    ctx.evidence = EvidenceSink.from_config(folder, ctx.cfg.evidence, zones=ctx.zones, wrote=wrote)
    return ctx.evidence
