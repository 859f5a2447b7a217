"""Retention: the folders that hold faces keep them `max_age_days` at most and `max_mb` in all.

Applied by the running monitor (at start, every `monitor.prune_every_s`, and when --save-faces goes over its
cap) and once by `mask-monitor prune`. Only the monitor's own kind of file in each folder is touched (the
crops of --collect and --save-faces, the videos of --record) and nothing below it. A file older than
`max_age_days` (by its modification time) is deleted; then, while the folder's files are over `max_mb`, the
oldest. A hidden file (a temp file: a write in progress, or one a crash left) is deleted by age only and not
counted against `max_mb`: a recording still being written is never cut. Pruning a collect folder also drops
the lines of the crops it deleted from collected.jsonl (rewritten atomically), so the label page never meets a
record without its crop. 0 turns a limit off.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from engines.collected import COLLECTED_JSONL
from engines.errors import UserError
from engines.fileio import PRIVATE_FILE, atomic_write_bytes, require_dir
from monitor.config import Config
from monitor.decisions.results import FrameResult
from monitor.outputs.base import Context, NoSink

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
DAY_S = 86400.0


@dataclass(frozen=True)
class Kept:
    """One folder under retention."""

    flag: str  # the flag that names it, for messages ("--save-faces")
    folder: Path
    max_age_days: float  # 0: no age limit
    max_mb: float  # 0: no size limit
    match: Callable[[str], bool]  # the file names (without a leading dot) that are the monitor's here
    jsonl: str | None = None  # a file whose lines name the crops (collect): their lines go with them

    def owns(self, name: str) -> bool:
        return self.match(name.lstrip("."))


@dataclass
class Pruned:
    removed: int = 0
    removed_bytes: int = 0
    kept: int = 0
    kept_bytes: int = 0
    errors: list[str] | None = None

    def line(self, k: Kept) -> str:
        limits = [
            *([f"older than {k.max_age_days:g} days"] if k.max_age_days else []),
            *([f"over {k.max_mb:g} MB"] if k.max_mb else []),
        ]
        why = f" ({' or '.join(limits)})" if limits else " (no limits set)"
        return (
            f"{k.flag} {k.folder}: removed {self.removed} files, {self.removed_bytes / 1e6:.1f} MB{why}; "
            f"kept {self.kept} files, {self.kept_bytes / 1e6:.1f} MB"
        )


def suffix_in(suffixes: tuple[str, ...]) -> Callable[[str], bool]:
    return lambda name: Path(name).suffix.lower() in suffixes


def one_video(path: Path) -> Callable[[str], bool]:
    """--record OUT.mp4 (one source): OUT and its writes' temp files, none of the folder's other files."""
    name = path.name
    return lambda n: n == name or (n.startswith(f"{name}.") and Path(n).suffix.lower() in VIDEO_SUFFIXES)


def targets(
    cfg: Config,
    collect: Path | None = None,
    save_faces: Path | None = None,
    record: Path | None = None,
    record_is_dir: bool = False,
    evidence: Path | None = None,
) -> list[Kept]:
    """The folders a run (or `prune`) keeps under retention, with their limits from the config."""
    out = []
    if collect is not None:
        c = cfg.collect
        out.append(
            Kept("--collect", collect, c.max_age_days, c.max_mb, suffix_in(IMAGE_SUFFIXES), COLLECTED_JSONL)
        )
    if save_faces is not None:
        s = cfg.save_faces
        out.append(Kept("--save-faces", save_faces, s.max_age_days, s.max_mb, suffix_in(IMAGE_SUFFIXES)))
    if record is not None:
        r = cfg.record
        if record_is_dir:
            out.append(Kept("--record", record, r.max_age_days, r.max_mb, suffix_in(VIDEO_SUFFIXES)))
        else:
            out.append(Kept("--record", record.parent, r.max_age_days, r.max_mb, one_video(record)))
    if evidence is not None:  # as monitor.outputs.evidence.evidence_kept (which imports this module)
        e = cfg.evidence
        out.append(
            Kept("--evidence", evidence, e.max_age_days, e.max_mb, suffix_in(IMAGE_SUFFIXES + VIDEO_SUFFIXES))
        )
    return out


def prune(k: Kept, now: float | None = None) -> Pruned:
    """Apply `k`'s limits once; a file that cannot be deleted is named in .errors (the rest goes on)."""
    now = time.time() if now is None else now
    res = Pruned(errors=[])
    files: list[tuple[float, str, int]] = []  # (mtime, name, size)
    try:
        entries = list(os.scandir(k.folder))
    except (FileNotFoundError, NotADirectoryError):
        return res
    except OSError as exc:
        res.errors.append(f"{k.folder}: {exc.strerror or exc}")  # type: ignore[union-attr]
        return res
    for e in entries:
        with contextlib.suppress(OSError):
            if e.is_file(follow_symlinks=False) and k.owns(e.name):
                st = e.stat(follow_symlinks=False)
                files.append((st.st_mtime, e.name, st.st_size))
    files.sort()
    gone: set[str] = set()

    def remove(name: str, size: int) -> None:
        try:
            os.unlink(k.folder / name)
        except FileNotFoundError:
            pass
        except OSError as exc:
            res.errors.append(f"{k.folder / name}: {exc.strerror or exc}")  # type: ignore[union-attr]
            return
        gone.add(name)
        res.removed += 1
        res.removed_bytes += size

    if k.max_age_days > 0:
        for mtime, name, size in files:
            if now - mtime > k.max_age_days * DAY_S:
                remove(name, size)
    if k.max_mb > 0:
        # the oldest first; a hidden (temp) file neither counts nor goes: it is a write in progress
        total = sum(size for _, name, size in files if name not in gone and not name.startswith("."))
        for _, name, size in files:
            if total <= k.max_mb * 1e6:
                break
            if name in gone or name.startswith("."):
                continue
            remove(name, size)
            if name in gone:
                total -= size
    left = [(name, size) for _, name, size in files if name not in gone]
    res.kept, res.kept_bytes = len(left), sum(size for _, size in left)
    if k.jsonl and gone:
        _drop_lines(k.folder / k.jsonl, gone, res)
    return res


def _drop_lines(path: Path, gone: set[str], res: Pruned) -> None:
    """Rewrite `path` without the lines whose "file" was deleted (other lines, even unreadable ones, stay)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    except OSError as exc:
        res.errors.append(f"{path}: {exc.strerror or exc}")  # type: ignore[union-attr]
        return
    keep = []
    for line in data.splitlines(keepends=True):
        try:
            name = json.loads(line).get("file")
        except (ValueError, AttributeError):
            name = None
        if name not in gone:
            keep.append(line)
    try:
        atomic_write_bytes(path, b"".join(keep), PRIVATE_FILE)
    except OSError as exc:
        res.errors.append(f"{path}: {exc.strerror or exc}")  # type: ignore[union-attr]


class Retention:
    """The running monitor's retention (owned by the output thread, where every face file is written)."""

    def __init__(self, kept: list[Kept], every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.kept = kept
        self.every_s = every_s
        self.clock = clock
        self._last = -float("inf")
        self.removed = 0
        self.size: dict[str, int] = {}  # flag -> bytes of its files after the last prune, plus writes since

    def due(self) -> bool:
        return bool(self.kept) and self.clock() - self._last >= self.every_s

    def run(self, only: str | None = None) -> list[str]:
        """Prune every folder (or the one of flag `only`); the lines to show: what went, what failed."""
        if only is None:
            self._last = self.clock()
        notes = []
        for k in self.kept:
            if only is not None and k.flag != only:
                continue
            res = prune(k)
            self.size[k.flag] = res.kept_bytes
            self.removed += res.removed
            if res.removed:
                notes.append(f"retention: {res.line(k)}")
            notes += [f"warning: retention: cannot delete {e}" for e in res.errors or []]
        return notes

    def wrote(self, flag: str, nbytes: int) -> bool:
        """Count a file written under `flag`'s folder; True when that takes the folder over its cap."""
        self.size[flag] = self.size.get(flag, 0) + nbytes
        return any(k.flag == flag and k.max_mb > 0 and self.size[flag] > k.max_mb * 1e6 for k in self.kept)


@dataclass(frozen=True)
class PruneOptions:
    """`mask-monitor prune`'s folders (monitor.cli builds it)."""

    collect: Path | None = None
    save_faces: Path | None = None
    record: Path | None = None
    evidence: Path | None = None


def run_prune(args: PruneOptions, cfg: Config, out: IO[str] | None = None) -> int:
    """Check every path first (a bad one: one line, nothing deleted), then prune each folder once."""
    out = out or sys.stdout
    if not (args.collect or args.save_faces or args.record or args.evidence):
        raise UserError(
            "nothing to prune: give --collect DIR, --save-faces DIR, --record OUT.mp4|DIR and/or "
            "--evidence DIR"
        )
    folders = (("--collect", args.collect), ("--save-faces", args.save_faces), ("--evidence", args.evidence))
    for flag, folder in folders:
        if folder is not None and folder.exists() and not folder.is_dir():
            raise UserError(f"{flag} {folder} is a file; give the folder the monitor wrote")
        if folder is not None:
            require_dir(folder, flag)
    record_dir = args.record is not None and args.record.is_dir()
    if args.record is not None and not record_dir:
        if args.record.suffix.lower() not in VIDEO_SUFFIXES:
            raise UserError(f"--record {args.record}: give a video (.mp4 .avi .mkv .mov) or a folder of them")
        require_dir(args.record.parent, f"--record {args.record}: folder")
    failed = 0
    for k in targets(cfg, args.collect, args.save_faces, args.record, record_dir, args.evidence):
        res = prune(k)
        print(f"mask-monitor: prune {res.line(k)}", file=out, flush=True)
        for e in res.errors or []:
            print(f"mask-monitor: warning: cannot delete {e}", file=sys.stderr, flush=True)
            failed += 1
    return 1 if failed else 0


class RetentionSink(NoSink):
    """The running monitor's retention: at start and every monitor.prune_every_s, in the output thread."""

    def __init__(self, retention: Retention, note: Callable[[str], None], collector=None) -> None:
        self.retention, self.note, self.collector = retention, note, collector

    def frame(self, result: FrameResult) -> None:
        if self.retention.due():
            for m in self.retention.run():
                self.note(m)
            if self.collector is not None:  # --collect's size count after its folder was pruned
                self.collector.recount()


def sink_for(ctx: Context) -> RetentionSink | None:
    return RetentionSink(ctx.retention, ctx.note, ctx.collector) if ctx.retention is not None else None
