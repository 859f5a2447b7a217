"""mask-train import: class folders, a labels CSV and PASCAL VOC boxes (with a corrupt image and malformed
XML), near-duplicate groups that never straddle the split, and the crops that land in the cache."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from tests.conftest import SHARED, one_torch_thread
from train.cli import main
from train.config import Config
from train.data.cache import Cache
from train.data.dhash import hashes, near_duplicate_groups
from train.data.folds import holdout_people
from train.data.importer import import_dataset

REAL = SHARED / "datasets" / "face-mask-real"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is missing")


def _real(kind: str, n: int, start: int = 0) -> list:
    return sorted((REAL / kind).glob("*.jpg"))[start : start + n]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """8 masked + 8 bare real photos, a mirrored copy of one, a resized copy of another, a corrupt file."""
    root = tmp_path_factory.mktemp("folders") / "set"
    for kind, n in (("with_mask", 8), ("without_mask", 8)):
        (root / kind).mkdir(parents=True)
        for p in _real(kind, n):
            shutil.copy(p, root / kind / p.name)
    first = cv2.imread(str(_real("with_mask", 1)[0]))
    cv2.imwrite(str(root / "with_mask" / "flipped.jpg"), first[:, ::-1])
    bare = cv2.imread(str(_real("without_mask", 1)[0]))
    cv2.imwrite(str(root / "without_mask" / "small.jpg"), cv2.resize(bare, None, fx=0.6, fy=0.6))
    (root / "with_mask" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


@pytest.fixture(scope="module")
def imported(folders, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache") / "cache"
    with one_torch_thread():
        report = import_dataset(folders, cache, Config(), name="real", show=False)
    return cache, report


def test_folders_are_cropped_into_the_cache_with_counts_and_problems(imported):
    cache_dir, report = imported
    c = report.counts
    assert report.layout == "folders" and c["samples"] == 18  # 8 + 8 + the two copies; not the broken one
    assert c["mtcnn"] + c["padded"] + c["whole_image"] == 18
    assert [p.kind for p in report.problems] == ["corrupt"] and "broken.jpg" in report.problems[0].path
    saved = json.loads((cache_dir / "imports" / "real" / "report.json").read_text())
    assert saved["counts"]["corrupt"] == 1 and saved["problems"][0]["path"].endswith("broken.jpg")
    samples = Cache(cache_dir).samples()
    assert len(samples) == 18 and {s.source for s in samples} == {"real"}
    assert all(s.gender == -1 and s.age_years == -1 for s in samples)
    assert sorted({s.mask for s in samples}) == [0, 2]
    crop = cv2.imread(str(samples[0].crop))
    assert crop.shape == (512, 384, 3)  # the cache's crop geometry, as prepare cuts


def test_flips_and_resized_copies_share_a_group_that_never_straddles_the_split(imported, folders):
    samples = Cache(imported[0]).samples()
    group = {s.key.split("/", 1)[1]: s.person for s in samples}
    first, bare = _real("with_mask", 1)[0].name, _real("without_mask", 1)[0].name
    assert group["with_mask/flipped.jpg"] == group[f"with_mask/{first}"]
    assert group["without_mask/small.jpg"] == group[f"without_mask/{bare}"]
    assert len(set(group.values())) <= 16
    for seed in range(5):
        val = holdout_people(samples, 0.3, seed)
        for g in set(group.values()):
            sides = {s.person in val for s in samples if s.person == g}
            assert len(sides) == 1


def test_near_duplicate_groups_are_transitive_and_keep_distinct_photos_apart():
    rng = np.random.default_rng(0)
    a = cv2.GaussianBlur(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), (9, 9), 0)
    b = cv2.GaussianBlur(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), (9, 9), 0)
    imgs = [a, a[:, ::-1].copy(), cv2.resize(a, (48, 48)), b]
    hs = [hashes(i) for i in imgs]
    groups = near_duplicate_groups([h for h, _ in hs], [f for _, f in hs])
    assert groups[0] == groups[1] == groups[2] != groups[3]


def test_a_rerun_reuses_crops_and_holdout_keeps_whole_groups_out(folders, tmp_path):
    cache = tmp_path / "cache"
    with one_torch_thread():
        first = import_dataset(folders, cache, Config(), name="real", holdout=0.4, seed=1, show=False)
        again = import_dataset(folders, cache, Config(), name="real", holdout=0.4, seed=1, show=False)
    assert again.counts["reused"] == first.counts["samples"] > 0
    held = (cache / "imports" / "real" / "holdout.csv").read_text().splitlines()[1:]
    assert len(held) == first.counts["held_out"] > 0
    kept = {s.key.split("/", 1)[1] for s in Cache(cache).samples()}
    held_files = {line.split(",")[0] for line in held}
    assert not kept & held_files
    groups_held = {line.split(",")[4] for line in held}
    kept_rows = (cache / "imports" / "real" / "kept.csv").read_text().splitlines()[1:]
    assert not groups_held & {line.split(",")[4] for line in kept_rows}


def test_labels_csv_with_partial_labels_and_a_bad_row(tmp_path):
    root = tmp_path / "csvset"
    (root / "img").mkdir(parents=True)
    for p in _real("with_mask", 3, 20) + _real("without_mask", 3, 20):
        shutil.copy(p, root / "img" / f"{p.parent.name}_{p.name}")
    names = sorted(p.name for p in (root / "img").iterdir())
    rows = ["file,mask,gender,age,group"]
    rows += [
        f"img/{n},{'wear' if n.startswith('with_') else 'not_wear'},,,g{i % 2}" for i, n in enumerate(names)
    ]
    rows[1] = rows[1].replace(",,,", ",female,34,")
    rows.append("img/missing.jpg,wear,,,")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    with one_torch_thread():
        report = import_dataset(root, tmp_path / "cache", Config(), name="csv1", show=False)
    assert report.layout == "csv" and report.counts["samples"] == 6
    assert [p.kind for p in report.problems] == ["missing_image"]
    samples = Cache(tmp_path / "cache").samples()
    labelled = [s for s in samples if s.gender >= 0]
    assert len(labelled) == 1 and labelled[0].gender == 1 and labelled[0].age_years == 34
    assert len({s.person for s in samples}) == 2  # the CSV's group column joins the photos
    (root / "labels.csv").write_text("file,mask\nimg/x.jpg,sunglasses\n")
    with pytest.raises(Exception, match="line 2: mask 'sunglasses'"):
        import_dataset(root, tmp_path / "cache2", Config(), name="csv2", show=False)


def _voc(name: str, image: str, boxes: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
        f"<ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in boxes
    )
    return f"<annotation><filename>{image}</filename>{objs}</annotation>"


def test_voc_boxes_every_box_a_sample_malformed_xml_listed(tmp_path, capsys):
    root = tmp_path / "voc"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    masked, bare = (
        cv2.resize(cv2.imread(str(_real(k, 1, 30)[0])), (120, 150)) for k in ("with_mask", "without_mask")
    )
    scene = np.full((300, 400, 3), 90, np.uint8)
    scene[50:200, 20:140], scene[60:210, 240:360] = masked, bare
    cv2.imwrite(str(root / "images" / "s0.png"), scene)
    boxes = [("with_mask", (30, 70, 130, 190)), ("without_mask", (250, 80, 350, 200))]
    (root / "annotations" / "s0.xml").write_text(_voc("s0", "s0.png", boxes))
    (root / "annotations" / "s1.xml").write_text(
        _voc("s1", "s1.png", [("mask_weared_incorrect", (0, 0, 50, 50))])
    )
    cv2.imwrite(str(root / "images" / "s1.png"), scene[:, ::-1])
    (root / "annotations" / "bad.xml").write_text("<annotation><object><name>with_mask</name>")
    (root / "images" / "s2.png").write_bytes(b"\x89PNG broken")
    (root / "annotations" / "s2.xml").write_text(_voc("s2", "s2.png", [("with_mask", (1, 1, 40, 40))]))
    cache = tmp_path / "cache"
    with one_torch_thread():
        code = main_code(["import", "--data", str(root), "--out", str(cache), "--name", "voc"])
    out = capsys.readouterr().out
    assert code == 0 and "voc detected" in out and "malformed_xml: annotations/bad.xml" in out
    rep = json.loads((cache / "imports" / "voc" / "report.json").read_text())
    assert (
        rep["counts"]["voc_detected"] + rep["counts"].get("voc_mapped", 0) == 3
        and rep["counts"]["malformed_xml"] == 1
        and rep["counts"]["corrupt"] == 1
    )
    samples = Cache(cache).samples()
    assert sorted(s.mask for s in samples) == [0, 1, 2]
    assert len({s.person for s in samples}) == 1  # s1 is s0 mirrored: one group, one side of any split


def main_code(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_a_folder_with_no_known_layout_is_one_line(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    code = main_code(
        ["import", "--data", str(tmp_path / "photos"), "--out", str(tmp_path / "c"), "--name", "x"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "no layout found to import" in err and len(err.strip().splitlines()) == 1


def test_a_labelled_collect_folder_imports_as_the_label_page_left_it(tmp_path, capsys):
    from engines.labels import age_group
    from tests.train.collectdir import make_collect_dir
    from train.label.store import LabelStore

    folder = tmp_path / "collect"
    names = make_collect_dir(folder, 6)
    store = LabelStore(folder)  # the label page's own store writes labels.csv and discarded.csv
    for name, mask in zip(names[:4], ("wear", "incorrect", "not_wear", "wear")):
        store.set(name, "mask", mask)
    store.set(names[0], "gender", "female")
    store.set(names[0], "age", ">=60")
    store.set(names[4], "gender", "male")  # a gender but no mask yet: not labelled, skipped
    store.set(names[5], "mask", "wear")
    store.set(names[5], "discard", "")
    with one_torch_thread():
        report = import_dataset(folder, tmp_path / "cache", Config(), name="door", show=False)
    assert report.layout == "collect"
    assert report.counts["samples"] == 4 and report.counts["collected_crop"] == 4
    assert report.counts["unlabelled"] == 1 and report.counts["discarded"] == 1
    samples = sorted(Cache(tmp_path / "cache").samples(), key=lambda s: s.key)
    assert [s.mask for s in samples] == [0, 1, 2, 0]
    assert samples[0].gender == 1 and age_group(samples[0].age_years, 58) == 2
    assert all(s.gender == -1 and s.age_years == -1 for s in samples[1:])
    assert len({s.person for s in samples}) == 4  # one track each (collected.jsonl), not one dHash blob
    # used as they are: the crop is the collected JPEG resized to the cache's 384x512, no detection
    crop = cv2.imread(str(tmp_path / "cache" / samples[0].crop))
    src = cv2.resize(cv2.imread(str(folder / names[0])), (384, 512), interpolation=cv2.INTER_LINEAR)
    assert crop.shape == (512, 384, 3) and np.abs(crop.astype(int) - src).mean() < 4
    (folder / "labels.csv").write_text(f"file,mask,gender,age\n{names[1]},wear,,\n{names[2]},maybe,,\n")
    code = main_code(["import", "--data", str(folder), "--out", str(tmp_path / "c2"), "--name", "door"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "labels.csv line 3" in err and names[2] in err and "'maybe'" in err
    (folder / "labels.csv").write_text(f"file,mask,gender,age\n{names[1]},wear,,60+\n")
    code = main_code(["import", "--data", str(folder), "--out", str(tmp_path / "c3"), "--name", "door"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "line 2: age '60+' is not valid" in err
