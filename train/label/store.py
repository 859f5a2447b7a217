"""A collect folder and its labels: DIR/*.jpg crops, DIR/collected.jsonl (optional, one record per crop),
DIR/labels.csv (what the user labelled) and DIR/discarded.csv (crops the user threw away).

collected.jsonl, one engines.collected.CollectedRecord per line (what `mask-monitor --collect DIR` writes;
only `file` is required, the rest is shown when present). labels.csv: `file,mask,gender,age`; mask is wear |
incorrect | not_wear (the vocabulary of `mask-train import`), gender male | female, age <30 | 30-59 | >=60;
an empty cell is "not labelled". Every change rewrites the file atomically (temp + rename).
"""

from __future__ import annotations

import csv
import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from engines.collected import COLLECTED_JSONL, CollectedRecord
from engines.errors import UserError
from engines.fileio import atomic_write_text
from engines.labels import IMAGE_SUFFIXES, TASK_NAMES, TASKS

LABELS_CSV = "labels.csv"
DISCARDED_CSV = "discarded.csv"
FIELDS = TASK_NAMES
VOCAB = TASKS  # the values labels.csv may hold, per column


@dataclass
class Crop:
    """One crop of the folder: its record from collected.jsonl ({} without one) and whether it decodes."""

    file: str
    record: CollectedRecord | None = None
    readable: bool = True

    def top_mask_probability(self) -> float | None:
        return self.record.top_mask_probability() if self.record else None

    def guess(self) -> str:
        return self.record.guess() if self.record else ""


def read_crops(folder: Path) -> tuple[list[Crop], list[str]]:
    """The folder's crops (JSONL order first, then any other image by name) and one warning line per
    problem (a bad JSONL line, a record without its image, an image that does not decode)."""
    import cv2

    warnings: list[str] = []
    records = _read_jsonl(folder / COLLECTED_JSONL, warnings)
    candidates = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    for p in candidates:
        if p.is_symlink():  # a link may lead anywhere on the machine: never served
            warnings.append(f"{p}: a symbolic link, not a crop of this folder; skipped")
    images = sorted(p.name for p in candidates if p.is_file() and not p.is_symlink())
    present = set(images)
    crops = []
    for name, rec in records.items():
        if name not in present:
            warnings.append(f"{folder / COLLECTED_JSONL}: {name} has a record but no image; skipped")
            continue
        crops.append(Crop(name, rec))
    crops += [Crop(name) for name in images if name not in records]
    for crop in crops:
        if cv2.imread(str(folder / crop.file)) is None:
            crop.readable = False
            warnings.append(f"{folder / crop.file}: not a readable image; shown as a placeholder")
    return crops, warnings


def read_records(path: Path) -> dict[str, CollectedRecord]:
    """collected.jsonl's records by file name (bad lines skipped): what `mask-train import` reads."""
    return _read_jsonl(path, [])


def _read_jsonl(path: Path, warnings: list[str]) -> dict[str, CollectedRecord]:
    records: dict[str, CollectedRecord] = {}
    if not path.is_file():
        return records
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = CollectedRecord.from_json(line)
        except ValueError:
            warnings.append(f"{path} line {n}: not a record with a plain 'file' name; skipped")
            continue
        records[rec.file] = rec
    return records


LOCK_FILE = ".label.lock"


def lock_folder(folder: Path) -> IO[bytes]:
    """Hold DIR/.label.lock (flock) for as long as the returned file is open: a second `mask-train label` on
    the same folder would rewrite labels.csv from its own memory and lose the first one's labels."""
    import fcntl

    path = folder / LOCK_FILE
    try:
        fh = open(path, "a+b")  # noqa: SIM115 - held open for the server's life
    except OSError as exc:
        raise UserError(f"{path}: cannot create the folder's lock ({exc.strerror})") from None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise UserError(
            f"{folder}: another `mask-train label` is labelling this folder ({path} is held); "
            "use that page, or stop it first"
        ) from None
    return fh


class LabelStore:
    """labels.csv and discarded.csv of one folder, in memory, with an undo stack; thread-safe."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.labels = read_labels(folder / LABELS_CSV)
        self.discarded = read_discarded(folder / DISCARDED_CSV)
        self._undo: list[tuple[str, dict[str, str] | None, bool]] = []
        self._lock = threading.Lock()

    def state(self, file: str) -> dict[str, Any]:
        row = self.labels.get(file, {})
        return {**{k: row.get(k, "") for k in FIELDS}, "discarded": file in self.discarded}

    def set(self, file: str, key: str, value: str) -> dict[str, Any]:
        """Set one field ('' clears it) or, with key 'discard', throw the crop away; saved at once."""
        if key != "discard" and (key not in VOCAB or (value and value not in VOCAB[key])):
            raise ValueError(f"unknown label {key}={value!r}")
        with self._lock:
            self._undo.append(
                (file, dict(self.labels[file]) if file in self.labels else None, file in self.discarded)
            )
            if key == "discard":
                self.labels.pop(file, None)
                self.discarded.add(file)
            else:
                self.discarded.discard(file)
                row = self.labels.setdefault(file, dict.fromkeys(FIELDS, ""))
                row[key] = value
                if not any(row.values()):
                    del self.labels[file]
            self._save()
            return self.state(file)

    def undo(self) -> str | None:
        """Put back the crop changed last; its name, or None when there is nothing to undo."""
        with self._lock:
            if not self._undo:
                return None
            file, row, was_discarded = self._undo.pop()
            if row is None:
                self.labels.pop(file, None)
            else:
                self.labels[file] = row
            (self.discarded.add if was_discarded else self.discarded.discard)(file)
            self._save()
            return file

    def _save(self) -> None:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(("file", *FIELDS))
        for name in sorted(self.labels):
            w.writerow((name, *(self.labels[name][k] for k in FIELDS)))
        atomic_write_text(self.folder / LABELS_CSV, out.getvalue())
        atomic_write_text(
            self.folder / DISCARDED_CSV, "file\n" + "".join(f"{n}\n" for n in sorted(self.discarded))
        )


def read_labels(path: Path) -> dict[str, dict[str, str]]:
    """labels.csv -> {file: {mask, gender, age}}; an unknown value is one line naming file, line and value."""
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "file" not in reader.fieldnames:
            raise UserError(f"{path}: no 'file' column in the header line (expected file,mask,gender,age)")
        labels = {}
        for row in reader:
            line = reader.line_num
            name = (row.get("file") or "").strip()
            if not name:
                raise UserError(f"{path} line {line}: empty 'file'")
            clean = {}
            for key in FIELDS:
                value = (row.get(key) or "").strip()
                if value and value not in VOCAB[key]:
                    raise UserError(
                        f"{path} line {line}: unknown {key} {value!r} for {name} "
                        f"(expected one of {', '.join(VOCAB[key])}, or empty)"
                    )
                clean[key] = value
            labels[name] = clean
    return labels


def read_discarded(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    lines = path.read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines[1:] if line.strip()}
