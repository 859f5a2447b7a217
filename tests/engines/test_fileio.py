import os

import pytest

from engines.fileio import atomic_path, atomic_write_text


def test_atomic_write_replaces_in_one_step_and_keeps_the_old_file_on_error(tmp_path):
    p = tmp_path / "out.json"
    atomic_write_text(p, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half-written")
            raise RuntimeError("crash while writing")
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["out.json"]  # no temp file left behind


def test_new_files_get_the_usual_mode_and_replaced_files_keep_theirs(tmp_path):
    old = os.umask(0o022)
    try:
        p = tmp_path / "model.onnx"
        atomic_write_text(p, "x")
        assert p.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
        os.chmod(p, 0o640)
        atomic_write_text(p, "y")
        assert p.stat().st_mode & 0o777 == 0o640 and p.read_text() == "y"
    finally:
        os.umask(old)


def test_private_files_and_folders_are_the_owners_alone_whatever_the_umask(tmp_path):
    from engines.fileio import PRIVATE_FILE, atomic_write_bytes, open_private_append, private_dir

    old = os.umask(0o002)
    try:
        folder = private_dir(tmp_path / "a" / "b")  # both made, both 0700
        assert all((tmp_path / d).stat().st_mode & 0o777 == 0o700 for d in ("a", "a/b"))
        atomic_write_bytes(folder / "face.jpg", b"x", PRIVATE_FILE)
        assert (folder / "face.jpg").stat().st_mode & 0o777 == 0o600
        shared = tmp_path / "shared"
        shared.mkdir(mode=0o755)
        os.chmod(shared, 0o755)
        private_dir(shared)  # a folder of ours that exists is tightened
        assert shared.stat().st_mode & 0o777 == 0o700
        log = tmp_path / "events.jsonl"
        log.write_text("earlier\n")
        os.chmod(log, 0o644)
        os.close(open_private_append(log))  # an existing log of ours is tightened, and kept
        assert log.stat().st_mode & 0o777 == 0o600 and log.read_text() == "earlier\n"
        os.close(open_private_append(tmp_path / "new.jsonl"))
        assert (tmp_path / "new.jsonl").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
    with pytest.raises(NotADirectoryError):
        private_dir(log)
