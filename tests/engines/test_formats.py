"""engines.formats: one row per model-file format, and every read or load goes through its row.

The exporters a row names live in `train` and are tested there; these tests never resolve them (engines
must not import train).
"""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from engines.backends.base import Engine
from engines.contract import ModelFileError, ModelMeta
from engines.formats import FORMATS, ModelFormat, format_for, load_engine, read_meta

PARTS = ("backend", "read_meta", "exporter")
GOOD = {"backend": "pkg.mod:Cls", "read_meta": "pkg.mod:read_meta", "exporter": "pkg.export:write"}


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize(
    "bad", ["", None, 42, "pkg.mod", "pkg.mod:", ":Cls", "pkg mod:Cls", "pkg.mod:a.b", "pkg.mod:Cls:x"]
)
def test_a_row_with_a_missing_or_malformed_reference_is_refused(part, bad):
    with pytest.raises(ValueError, match=f"model format 'x': {part} must name 'module:attribute'"):
        ModelFormat("x", ".x", "X runtime", **(GOOD | {part: bad}))


@pytest.mark.parametrize("name, suffix", [("", ".x"), ("x", "x"), ("x", "")])
def test_a_row_needs_a_name_and_a_dotted_suffix(name, suffix):
    with pytest.raises(ValueError, match="needs a name and a suffix"):
        ModelFormat(name, suffix, "X runtime", **GOOD)


@pytest.mark.parametrize("suffix", sorted(FORMATS))
def test_each_row_names_an_engine_class_and_a_metadata_reader(suffix):
    fmt = FORMATS[suffix]
    backend = fmt.load("backend")
    assert isinstance(backend, type) and issubclass(backend, Engine) and backend is not Engine
    assert callable(fmt.load("read_meta"))
    assert format_for(Path(f"model{suffix.upper()}")) is fmt  # the suffix is matched case-blind


def _spy_module(monkeypatch, name: str, meta: ModelMeta) -> list[Path]:
    """A backend module as a new format would add it: an Engine subclass and a `read_meta(path)`."""
    calls: list[Path] = []

    def read(path: Path) -> ModelMeta:
        calls.append(path)
        return meta

    class SpyEngine(Engine):
        runtime = "spy"

        def __init__(self, path: Path, device: str = "auto", threads: int = 0) -> None:
            self._set_file(path, read(path))
            self.device, self.threads = device, threads

        def infer(self, batch: np.ndarray) -> np.ndarray:
            return np.full((len(batch), len(self.meta.labels)), 1 / len(self.meta.labels), np.float32)

    module = types.ModuleType(name)
    module.read_meta, module.SpyEngine = read, SpyEngine
    monkeypatch.setitem(sys.modules, name, module)
    return calls


@pytest.mark.parametrize("suffix", sorted(FORMATS))
def test_read_meta_goes_through_the_row_of_the_files_format(suffix, tmp_path, monkeypatch):
    meta = ModelMeta(arch=f"spy{suffix}")
    calls = _spy_module(monkeypatch, "spy_reader", meta)
    monkeypatch.setitem(
        FORMATS, suffix, dataclasses.replace(FORMATS[suffix], read_meta="spy_reader:read_meta")
    )
    path = tmp_path / f"m{suffix}"
    path.write_bytes(b"whatever the format holds")
    assert read_meta(path) is meta and calls == [path]


def test_a_new_format_is_one_module_and_one_row(tmp_path, monkeypatch):
    meta = ModelMeta(arch="spynet", input_height=32, input_width=24)
    calls = _spy_module(monkeypatch, "spy_backend", meta)
    monkeypatch.setitem(
        FORMATS,
        ".spy",
        ModelFormat(
            "spy",
            ".spy",
            "Spy runtime",
            "spy_backend:SpyEngine",
            "spy_backend:read_meta",
            "spy_export:never_resolved_here",
        ),
    )
    path = tmp_path / "m.spy"
    with pytest.raises(ModelFileError, match="does not exist"):
        read_meta(path)
    path.write_bytes(b"spy weights")
    assert format_for(path).name == "spy" and read_meta(path) is meta
    engine = load_engine(path, device="cpu", threads=3)
    assert engine.meta is meta and engine.path == path and (engine.device, engine.threads) == ("cpu", 3)
    probs = engine.classify([np.zeros((40, 30, 3), np.uint8)] * 3)
    assert probs.shape == (3, len(meta.labels)) and calls == [path, path]
    assert "spy_export" not in sys.modules


def test_an_unknown_suffix_names_the_known_ones():
    with pytest.raises(
        ModelFileError, match=r"unknown suffix '\.bin'; expected one of \.pt, \.onnx, \.engine"
    ):
        format_for("model.bin")
