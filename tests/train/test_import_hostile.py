"""`mask-train import` fed by a stranger: names that climb out of the data folder, boxes that are NaN or
outside their image, decompression bombs. Each is one problem in the report naming its file; the rest of the
set is imported. The parsers are fuzzed with Hypothesis, then a real import runs over a hostile folder."""

from __future__ import annotations

import json
import math
import shutil
import struct
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SHARED, one_torch_thread
from train.config import Config
from train.data.importer import ImportReport, _voc_object, box_problem, contained, import_dataset, voc_items
from train.data.prepare import MAX_IMAGE_PIXELS, image_problem, read_image

FUZZ = settings(max_examples=150, deadline=None)
REAL = SHARED / "datasets" / "face-mask-real"

names = st.text(max_size=30) | st.lists(st.sampled_from(["..", ".", "a", "images", "/", "x.jpg", "~"])).map(
    "/".join
)


@FUZZ
@given(name=names)
def test_a_contained_name_never_leads_outside_the_folder(tmp_path_factory, name):
    root = tmp_path_factory.getbasetemp() / "contained" / "data"
    root.mkdir(parents=True, exist_ok=True)
    path = contained(root, name)
    if path is not None:
        assert path.resolve().is_relative_to(root.resolve())


def test_names_out_of_the_folder_and_links_out_are_refused(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (tmp_path / "secret.jpg").write_bytes(b"x")
    (root / "images" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    for name in (
        "../../secret.jpg",
        "../secret.jpg",
        str(tmp_path / "secret.jpg"),
        "link.jpg",
        "C:/x.jpg",
        "",
    ):
        assert contained(root / "images", name) is None, name
    assert contained(root / "images", "sub/../a.jpg") == root / "images" / "sub/../a.jpg"


coordinate = st.floats() | st.integers(-(10**6), 10**6).map(str) | st.text(max_size=6)


@FUZZ
@given(values=st.lists(coordinate, min_size=4, max_size=4))
def test_a_voc_box_is_four_finite_ordered_numbers_or_a_value_error(values):
    obj = ET.fromstring(
        "<object><name>with_mask</name><bndbox>"
        + "".join(f"<{k}></{k}>" for k in ("xmin", "ymin", "xmax", "ymax"))
        + "</bndbox></object>"
    )
    for k, v in zip(("xmin", "ymin", "xmax", "ymax"), values):
        obj.find(f"bndbox/{k}").text = str(v)
    try:
        _, (x1, y1, x2, y2) = _voc_object(obj)
    except (ValueError, TypeError):
        return
    assert all(math.isfinite(v) for v in (x1, y1, x2, y2)) and x2 > x1 and y2 > y1


@FUZZ
@given(box=st.tuples(*[st.floats(-1e6, 1e6)] * 4), h=st.integers(12, 5000), w=st.integers(12, 5000))
def test_a_box_inside_the_image_is_accepted_and_one_outside_is_named(box, h, w):
    why = box_problem(box, (h, w, 3))
    inside = box[0] >= -2 and box[1] >= -2 and box[2] <= w + 2 and box[3] <= h + 2
    assert (why is None) == inside
    if why:
        assert f"outside the {w}x{h} image" in why


@FUZZ
@given(xml=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_annotation_bytes_give_items_or_problems(tmp_path_factory, xml):
    root = tmp_path_factory.mktemp("vocfuzz")
    (root / "annotations").mkdir()
    (root / "annotations" / "a.xml").write_bytes(xml)
    report = ImportReport("x", "voc")
    items = voc_items(root, report)
    assert items == [] and len(report.problems) == 1  # no image at all: one problem, never an exception


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_head(w: int, h: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))


def _bomb_png(path: Path, w: int, h: int) -> None:
    """A valid greyscale PNG of w x h zeros: a few hundred kilobytes on disk, w*h bytes decoded."""
    z = zlib.compressobj(9)
    row = b"\x00" * (w + 1)  # filter byte + pixels
    data = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    path.write_bytes(_png_head(w, h) + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    bomb = tmp_path / "bomb.png"
    _bomb_png(bomb, 10_001, 10_000)
    assert bomb.stat().st_size < 1_000_000
    assert image_problem(bomb) == f"10001x10000 = 100010000 pixels (at most {MAX_IMAGE_PIXELS})"
    assert read_image(bomb) is None
    header_only = tmp_path / "huge.png"  # a header that claims 100000 x 100000: refused before any data
    header_only.write_bytes(_png_head(10**5, 10**5) + _chunk(b"IEND", b""))
    assert image_problem(header_only).startswith(
        f"more than {MAX_IMAGE_PIXELS} pixels (Image size (10000000000"
    )
    assert read_image(header_only) is None


def _voc(image: str, boxes: list[tuple[str, tuple]]) -> str:
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
        f"<ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in boxes
    )
    return f"<annotation><filename>{image}</filename>{objs}</annotation>"


@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is missing")
def test_a_hostile_voc_set_imports_what_is_sound_and_names_the_rest(tmp_path):
    root = tmp_path / "voc"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    face = cv2.resize(cv2.imread(str(sorted((REAL / "with_mask").glob("*.jpg"))[30])), (120, 150))
    scene = np.full((300, 400, 3), 90, np.uint8)
    scene[50:200, 20:140] = face
    cv2.imwrite(str(root / "images" / "s0.png"), scene)
    cv2.imwrite(str(tmp_path / "outside.png"), scene)  # next to the data folder: never read
    _bomb_png(root / "images" / "bomb.png", 10_001, 10_000)
    nan, good = ("with_mask", ("nan", 70, 130, 190)), ("with_mask", (30, 70, 130, 190))
    files = {
        "s0.xml": _voc("s0.png", [nan, good, ("with_mask", (30, 70, 1e300, 190))]),
        "up.xml": _voc("../../outside.png", [good]),
        "abs.xml": _voc(str(tmp_path / "outside.png"), [good]),
        "bomb.xml": _voc("bomb.png", [good]),
    }
    for name, text in files.items():
        (root / "annotations" / name).write_text(text)
    with one_torch_thread():
        report = import_dataset(root, tmp_path / "cache", Config(), name="voc", show=False)
    problems = {(p.kind, p.path) for p in report.problems}
    assert problems == {
        ("bad_box", "annotations/s0.xml#0"),
        ("bad_box", "annotations/s0.xml#2"),
        ("outside_folder", "annotations/up.xml"),
        ("outside_folder", "annotations/abs.xml"),
        ("too_large", "annotations/bomb.xml#0"),
    }
    assert report.counts["samples"] == 1  # the sound box, cut where the detector finds it or mapped
    assert report.counts.get("voc_detected", 0) + report.counts.get("voc_mapped", 0) == 1
    rep = json.loads((tmp_path / "cache" / "imports" / "voc" / "report.json").read_text())
    assert rep["counts"]["outside_folder"] == 2 and rep["counts"]["bad_box"] == 2
    why = {p.path: p.detail for p in report.problems}
    assert "is outside the 400x300 image" in why["annotations/s0.xml#2"]
    assert "not finite" in why["annotations/s0.xml#0"]

    # a labels CSV names files by the same rule
    shutil.rmtree(root / "annotations")
    (root / "labels.csv").write_text(
        f"file,mask\nimages/s0.png,wear\n../outside.png,wear\n{tmp_path / 'outside.png'},wear\n"
    )
    with one_torch_thread():
        report = import_dataset(root, tmp_path / "cache", Config(), name="csv", show=False)
    assert report.counts["samples"] == 1
    assert sorted(p.kind for p in report.problems) == ["outside_folder", "outside_folder"]
