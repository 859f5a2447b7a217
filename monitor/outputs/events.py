"""--events FILE.jsonl: one JSON object per flag and per person who leaves (private, flushed at once)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import IO, Any

from engines.errors import UserError
from engines.fileio import open_private_append, require_dir
from monitor.decisions.results import Event
from monitor.outputs.base import Context, NoSink
from monitor.outputs.recording import check_record_path


class EventLog:
    """Appends one JSON object per line, flushed at once: a crash loses nothing already logged. The file is
    private (0600): it says who was where, when."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: IO[str] | None = open(open_private_append(self.path), "a", encoding="utf-8")
        except OSError as exc:
            raise UserError(f"events file {self.path}: cannot write ({exc.strerror})") from None

    def write(self, event: Event, with_source: bool = True, extra: dict[str, Any] | None = None) -> None:
        self.write_dict({**event.to_dict(with_source), **(extra or {})})

    def write_dict(self, record: dict[str, Any]) -> None:
        """One line (a flag, a departure, a compliance alert)."""
        if self._fh is not None:
            try:
                self._fh.write(json.dumps(record) + "\n")
                self._fh.flush()
            except OSError as exc:  # a full disk: the run stops with this line (its file named)
                raise UserError(f"events file {self.path}: cannot write ({exc.strerror or exc})") from None

    def close(self) -> None:
        """Flush, sync and close; the handle is closed even when the disk refuses the last flush."""
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            with contextlib.suppress(OSError):  # a second failure of the same flush adds nothing
                fh.close()


def check_outputs(
    events: Path | None, record: Path | None, save_faces: Path | None, collect: Path | None = None
) -> None:
    """Refuse bad output paths before the model loads and the source opens (and before any file is made)."""
    if events is not None:
        require_dir(events.parent, f"--events {events}: folder")
    if events is not None and events.is_dir():
        raise UserError(f"--events {events} is a folder; give a file name such as events.jsonl")
    if record is not None:
        check_record_path(record)
    if save_faces is not None and save_faces.exists() and not save_faces.is_dir():
        raise UserError(f"--save-faces {save_faces} is a file; give a folder")
    if collect is not None and collect.exists() and not collect.is_dir():
        raise UserError(f"--collect {collect} is a file; give a folder")


class EventsSink(NoSink):
    """--events FILE.jsonl: every flag and departure (`source` only when the monitor watches several), each
    flag with its `evidence` paths under --evidence; every compliance alert."""

    def __init__(self, log: EventLog, named: bool, evidence: Any = None) -> None:
        self.log, self.named, self.evidence = log, named, evidence

    def event(self, event: Event) -> None:
        if event.person:
            self.log.write(event, self.named, evidence_of(self.evidence, event))

    def close(self) -> None:
        self.log.close()


def evidence_of(evidence: Any, event: Event) -> dict[str, Any] | None:
    """{"evidence": {"snapshot": ..., "clip": ...}} of a flag under --evidence, else None."""
    paths = evidence.evidence_for(event) if evidence is not None and event.event == "flag" else None
    return {"evidence": paths} if paths else None


def sink_for(ctx: Context) -> EventsSink | None:
    if ctx.options.events is None:
        return None
    sink = EventsSink(EventLog(ctx.options.events), ctx.named, ctx.evidence)
    ctx.alert_to.append(lambda alert: sink.log.write_dict(alert.to_dict()))
    return sink
