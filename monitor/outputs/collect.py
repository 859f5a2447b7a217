"""`mask-monitor --collect DIR`: the faces the model is unsure of, kept for `mask-train label DIR`.

Opt-in only: without the flag no Collector exists and no crop is kept. Per settled person who leaves (or is
still in view when the run ends), the pipeline hands over the crop of the person's latest settled
classification with that vote; the output thread writes it when the person was uncertain (top mask
probability under `collect.max_confidence`, or a vote in the window named another mask state), or as part of
a small, rate-limited share of confident people (`collect.confident_share`, at most one per
`collect.confident_min_gap_s`). Each crop is written atomically (temp + rename), then its line is appended to
DIR/collected.jsonl (the format README 'The collect folder' describes). A removed folder is made again on the
next crop; the size cap (`collect.max_mb`) and a failing disk each stop collecting with one warning, and the
monitor goes on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

import cv2

from engines.collected import COLLECTED_JSONL, CollectedRecord
from engines.config import CollectConfig
from engines.errors import UserError
from engines.fileio import PRIVATE_FILE, atomic_write_bytes, open_private_append, private_dir, sha256_file
from engines.labels import AGE_NAMES, GENDER_NAMES, MASK_NAMES
from monitor.decisions.results import Candidate, FrameResult
from monitor.outputs.base import Context, NoSink


def model_sha256(path: Path | None) -> str:
    """SHA-256 of the model file that makes the guesses ('' when there is no such file, as with a fake)."""
    if path is None or not Path(path).is_file():
        return ""
    return sha256_file(path)


def record(c: Candidate, file: str, source: str, reason: str, sha: str) -> CollectedRecord:
    """One line of collected.jsonl."""
    s = c.state
    names = {"mask": MASK_NAMES[s.mask], "gender": GENDER_NAMES[s.gender], "age": AGE_NAMES[s.age]}
    probs = dict(zip(("mask", "gender", "age"), (list(p) for p in c.probs)))
    shown = [t for t in names if t in s.known]  # gender / age only where shown (monitor.show_gender_age)
    return CollectedRecord(
        file=file,
        source=source,
        time=round(float(c.time), 3),
        frame=int(c.frame),
        track=int(c.track),
        predicted={t: names[t] for t in shown},
        probs={t: probs[t] for t in shown},
        reason=reason,
        model_sha256=sha,
    )


def folder_bytes(folder: Path) -> int:
    total = 0
    with contextlib.suppress(OSError):
        for p in folder.iterdir():
            with contextlib.suppress(OSError):
                if p.is_file():
                    total += p.stat().st_size
    return total


class Collector:
    """Writes the chosen crops and their records; owned by the output thread (never the pipeline's)."""

    def __init__(
        self,
        folder: Path,
        cfg: CollectConfig,
        sha: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = Path(folder)
        try:
            private_dir(self.folder)
        except OSError as exc:
            raise UserError(f"--collect {self.folder}: cannot create the folder ({exc.strerror})") from None
        self.cfg, self.sha, self.clock = cfg, sha, clock
        self.used = folder_bytes(self.folder)
        self.written = 0
        self.stopped = False
        self.run = time.strftime("%Y%m%d-%H%M%S")  # a reused folder keeps the crops of earlier runs
        self._credit = 0.0
        self._last_confident = -float("inf")

    def recount(self) -> None:
        """The folder's size again (after the retention deleted crops)."""
        self.used = folder_bytes(self.folder)

    def reason(self, c: Candidate) -> str | None:
        """'uncertain', 'confident' (the rate-limited share) or None (not collected)."""
        if c.state.confidence < self.cfg.max_confidence or c.disagree:
            return "uncertain"
        self._credit = min(self._credit + self.cfg.confident_share, 1.0)
        now = self.clock()
        if self._credit >= 1.0 - 1e-9 and now - self._last_confident >= self.cfg.confident_min_gap_s:
            self._credit, self._last_confident = 0.0, now
            return "confident"
        return None

    def offer(self, c: Candidate, source: str) -> list[str]:
        """Collect `c` if it qualifies; the warnings to show (each problem once: then collecting stops)."""
        if self.stopped:
            return []
        why = self.reason(c)
        if why is None:
            return []
        ok, buf = cv2.imencode(".jpg", c.crop, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        if not ok:
            return []
        name = f"{self.run}_{self.written + 1:06d}.jpg"
        line = (record(c, name, source, why, self.sha).to_json() + "\n").encode("utf-8")
        size = len(buf) + len(line)
        if self.used + size > self.cfg.max_mb * 1e6:
            self.stopped = True
            return [
                f"warning: --collect {self.folder} reached collect.max_mb = {self.cfg.max_mb:g} MB; "
                f"collecting stopped ({self.written} crops this run), the monitor goes on"
            ]
        notes: list[str] = []
        try:
            for attempt in (0, 1):
                if not self.folder.is_dir():  # deleted while running: made again, counted from zero
                    private_dir(self.folder)
                    self.used = 0
                    notes = [f"note: --collect {self.folder} was removed; made it again"]
                try:
                    self._write(name, buf.tobytes(), line)
                    break
                except FileNotFoundError:  # removed between the crop and its line
                    if attempt:
                        raise
        except OSError as exc:
            self.stopped = True
            what = exc.strerror or os.strerror(exc.errno or errno.EIO)
            return [
                *notes,
                f"warning: --collect {self.folder}: cannot write ({what}); collecting stopped "
                f"({self.written} crops this run), the monitor goes on",
            ]
        self.used += size
        self.written += 1
        return notes

    def _write(self, name: str, data: bytes, line: bytes) -> None:
        """The crop by temp + rename, then its line appended; a line the disk refused is cut off again and
        its crop removed, so the folder never holds half a record."""
        crop = self.folder / name
        atomic_write_bytes(crop, data, PRIVATE_FILE)
        path = self.folder / COLLECTED_JSONL
        fd = open_private_append(path)
        start = os.fstat(fd).st_size
        try:
            if start and _last_byte(path) != b"\n":
                line = b"\n" + line  # an earlier line cut short by a crash stays a line of its own
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            with contextlib.suppress(OSError):
                crop.unlink()
            raise
        finally:
            os.close(fd)


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


class CollectSink(NoSink):
    """--collect DIR: the people who left, offered to the Collector (which decides and writes)."""

    def __init__(self, collector: Collector, note: Callable[[str], None]) -> None:
        self.collector, self.note = collector, note

    def frame(self, result: FrameResult) -> None:
        for c in result.collect:
            for m in self.collector.offer(c, result.source):
                self.note(m)


def sink_for(ctx: Context) -> CollectSink | None:
    return CollectSink(ctx.collector, ctx.note) if ctx.collector is not None else None
