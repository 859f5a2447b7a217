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
