"""Atomic file writes: a crash or Ctrl-C never leaves a half-written file where a good one was."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engines.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    The temp name keeps the real suffix (some writers, e.g. cv2.imwrite, choose the format from it).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix or target.suffix or ".tmp", dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the mode a plain open() would have given
        os.chmod(tmp_path, target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for a moment, for every thread)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def require_file(path: str | os.PathLike[str], what: str, hint: str = "") -> Path:
    """`path` as a Path if it is a file; else the one-line error '<what> <path> does not exist[ (hint)]'."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {p} does not exist" + (f" ({hint})" if hint else ""))
    return p


def require_dir(path: str | os.PathLike[str], what: str) -> Path:
    """`path` as a Path if it is a folder; else the one-line error '<what> <path> does not exist'."""
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"{what} {p} does not exist")
    return p


def read_password_file(path: str | Path, what: str) -> str:
    """The first line of a password file (its line break is not part of the password)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not UTF-8 text") from None
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot read ({exc.strerror})") from None
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise UserError(f"{what} {path} is empty (the password is its first line)")
    return lines[0]
