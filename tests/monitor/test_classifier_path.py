"""Which classifier file the monitor runs: --engine, else config engine.path, found from any config."""

from __future__ import annotations

import pytest

from engines.errors import UserError
from monitor.config import load_config
from monitor.inference.classifier import engine_path
from tests.conftest import REPO


def test_a_site_config_elsewhere_that_names_no_engine_runs_the_bundled_demo_model(tmp_path):
    site = tmp_path / "site.toml"
    site.write_text('[[sources]]\nname = "front"\nkind = "video"\naddress = "door.mp4"\n')
    assert engine_path(None, load_config(site)) == REPO / "samples" / "demo_model.onnx"


def test_an_engine_the_config_names_is_read_against_its_folder_and_a_missing_one_is_one_line(tmp_path):
    (tmp_path / "mine.onnx").write_bytes(b"x")
    site = tmp_path / "site.toml"
    site.write_text('[engine]\npath = "mine.onnx"\n')
    assert engine_path(None, load_config(site)) == tmp_path / "mine.onnx"
    site.write_text('[engine]\npath = "other.onnx"\n')
    with pytest.raises(UserError, match="config engine.path") as exc:
        engine_path(None, load_config(site))
    assert str(tmp_path / "other.onnx") in str(exc.value) and "\n" not in str(exc.value)
