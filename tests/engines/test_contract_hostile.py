"""Model metadata from a stranger's file (Hypothesis): any JSON in the ONNX metadata or the engine header is a
ModelMeta within the config's bounds or one ModelFileError, never another exception or a huge allocation."""

from __future__ import annotations

import json
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engines import ModelFileError, ModelMeta
from engines.contract import MAX_META_BYTES, TRT_MAGIC, pack_engine, unpack_engine

FUZZ = settings(max_examples=200, deadline=None)
GOOD = ModelMeta(arch="mobilenet_v2").to_dict()

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)
numbers = st.integers(-(10**12), 10**12) | st.floats()
# a valid file's metadata with some fields replaced: by any JSON, or by numbers of any size
changes = st.dictionaries(
    st.sampled_from(sorted(GOOD)),
    json_values | numbers | st.lists(numbers, min_size=3, max_size=3),
    max_size=3,
)


def _check_bounds(meta: ModelMeta) -> None:
    assert all(8 <= v <= 2048 for v in meta.input_size)
    assert all(math.isfinite(v) and 0 <= v <= 1 for v in meta.mean)
    assert all(math.isfinite(v) and v > 0 for v in meta.std)
    assert math.isfinite(meta.crop.margin) and meta.crop.width <= 4096


@FUZZ
@given(change=changes)
def test_changed_metadata_loads_within_bounds_or_is_one_model_file_error(change):
    d = GOOD | change
    try:
        meta = ModelMeta.from_dict(d, "m.onnx")
    except ModelFileError as exc:
        assert str(exc).startswith("m.onnx") and "\n" not in str(exc)
        return
    _check_bounds(meta)


@FUZZ
@given(text=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_as_the_engine_header_are_a_meta_or_one_error(text):
    data = TRT_MAGIC + struct.pack("<I", len(text)) + text + b"plan"
    try:
        meta, plan = unpack_engine(data, "m.engine")
    except ModelFileError as exc:
        assert "m.engine" in str(exc)
        return
    _check_bounds(meta)
    assert plan == b"plan"


@pytest.mark.parametrize(
    "change, says",
    [
        ({"input_height": 10**9, "input_width": 10**9}, r"input size \(1000000000, 1000000000\) is outside"),
        ({"input_width": 4}, "input size .* is outside 8-2048"),
        ({"mean": [float("nan"), 0.5, 0.5]}, r"mean = \[nan, 0.5, 0.5\] is not 3 finite numbers"),
        ({"std": [0.2, 0.0, 0.2]}, r"std = \[0.2, 0.0, 0.2\] is not 3 finite numbers from 1e-06"),
        ({"std": [0.2, -1, 0.2]}, "std = .* is not 3 finite"),
        ({"age_old_threshold": 10**6}, "age_old_threshold = 1000000 is outside"),
        ({"crop": GOOD["crop"] | {"margin": float("nan")}}, r"margin = nan is out of range"),
    ],
)
def test_the_issue_s_metadata_is_refused_with_one_line(change, says):
    with pytest.raises(ModelFileError, match=f"m.onnx: .*{says}"):
        ModelMeta.from_dict(GOOD | change, "m.onnx")
    text = json.dumps(GOOD | change)  # the same through the JSON an ONNX file or engine header carries
    with pytest.raises(ModelFileError, match=says):
        ModelMeta.from_json(text, "m.onnx")


def test_deeply_nested_or_huge_metadata_is_refused_not_a_recursion_error():
    deep = "[" * 100000 + "]" * 100000
    with pytest.raises(ModelFileError, match="nests deeper than 16 levels"):
        ModelMeta.from_json('{"extra": ' + deep[:50000] + deep[-50000:] + "}", "m.onnx")
    nested: dict = {}
    for _ in range(40):
        nested = {"a": nested}
    with pytest.raises(ModelFileError, match="nests deeper than 16 levels"):
        ModelMeta.from_dict(GOOD | {"extra": nested}, "m.pt")
    with pytest.raises(ModelFileError, match="at most 1048576"):
        ModelMeta.from_json(" " * (MAX_META_BYTES + 1), "m.onnx")


def test_an_engine_header_length_past_the_limit_is_refused_before_it_is_read():
    data = TRT_MAGIC + struct.pack("<I", 0xFFFFFFFF) + b"{}"
    with pytest.raises(ModelFileError, match="m.engine: header of 4294967295 bytes"):
        unpack_engine(data, "m.engine")
    meta, plan = unpack_engine(pack_engine(ModelMeta(arch="x"), b"p"), "ok.engine")  # a real one still loads
    assert plan == b"p" and meta.arch == "x"
