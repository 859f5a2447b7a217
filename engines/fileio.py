"""Atomic file writes: a crash or Ctrl-C never leaves a half-written file where a good one was; private files
and folders (0600 / 0700) for whatever holds faces or events."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engines.errors import UserError

PRIVATE_FILE = 0o600  # files holding faces or events: the owner alone reads them
PRIVATE_DIR = 0o700


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], suffix: str | None = None, mode: int | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    The temp name keeps the real suffix (some writers, e.g. cv2.imwrite, choose the format from it). `mode`
    (e.g. PRIVATE_FILE) is the file's mode from its first byte on; None: what a plain open() would give.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix or target.suffix or ".tmp", dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        if mode is not None:
            os.chmod(tmp_path, mode)
        yield tmp_path
        if mode is None:
            # mkstemp makes the file private (0600); give it the mode a plain open() would have given
            os.chmod(tmp_path, target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask())
        else:
            os.chmod(tmp_path, mode)  # a writer that replaced the temp file (cv2) made it anew
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


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int | None = None) -> None:
    with atomic_path(path, mode=mode) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str, mode: int | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


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


def private_dir(path: str | os.PathLike[str]) -> Path:
    """`path` as a folder only its owner can enter (0700): made so with every missing parent, or, where it
    exists and is ours, tightened to 0700 (a folder of someone else's is left as it is). OSError as mkdir."""
    p = Path(path)
    missing = []
    q = p
    while not q.exists() and q != q.parent:
        missing.append(q)
        q = q.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another writer
            d.mkdir(mode=PRIVATE_DIR)
        os.chmod(d, PRIVATE_DIR)  # mkdir's mode passes through the umask
    if not missing:
        if not p.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(p))
        _tighten(p, PRIVATE_DIR)
    return p


def open_private_append(path: str | os.PathLike[str]) -> int:
    """A descriptor appending to `path`, created 0600 (an existing file of ours is tightened to 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
    st = os.fstat(fd)
    if st.st_uid == os.getuid() and st.st_mode & 0o777 != PRIVATE_FILE:
        with contextlib.suppress(OSError):
            os.fchmod(fd, PRIVATE_FILE)
    return fd


def _tighten(path: Path, mode: int) -> None:
    with contextlib.suppress(OSError):
        st = path.stat()
        if st.st_uid == os.getuid() and st.st_mode & 0o777 != mode:
            os.chmod(path, mode)
