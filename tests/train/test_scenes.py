"""Street scenes (PASCAL VOC): `mask-train import` cuts each face where the monitor's detector finds it
(voc_detected), else at the annotated box mapped by the fitted mapping (voc_mapped), skips faces under the
minimum height, keeps held-out groups apart; `mask-train evaluate-scenes` scores the monitor's path."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from engines.faces import FIRST_DEMO_DETECTOR, Face, FaceDetector, create_detector, iou
from tests.conftest import REPO, one_torch_thread
from tests.train.test_import import _voc, main_code
from train.config import Config, ScenesConfig
from train.data.importer import in_holdout
from train.data.scenes import BoxMapping, assign, detect_near, fit_mapping
from train.evaluation.scenes import NOT_FOUND, path_scores

PHOTOS = ("obama.jpg", "biden.jpg", "obama2.jpg", "astronaut.png", "obama3.jpg")
FACE_PX = 90  # the pasted faces' height in the scene
WALL = (300, 40, 360, 120)  # a box over the plain wall: no detector finds a face there
TINY = (20, 250, 30, 262)  # 12 px tall: under [scenes] min_face_height


def _annotated(face: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """An annotator's box of a face MTCNN boxes as `face`: narrower, lower (down to the chin)."""
    x1, y1, x2, y2 = face
    w, h = x2 - x1, y2 - y1
    return int(x1 + 0.08 * w), int(y1 + 0.12 * h), int(x2 - 0.08 * w), int(y2 + 0.08 * h)


def _scene(photo: str, rng: np.random.Generator, reference: FaceDetector) -> tuple[np.ndarray, tuple]:
    """A 400x300 wall with the photo's face pasted FACE_PX tall near the left; (scene, face box in it)."""
    img = cv2.imread(str(REPO / "samples" / "faces" / photo))
    x1, y1, x2, y2 = max(reference.detect(img), key=lambda f: f.score).box
    s = FACE_PX / (y2 - y1)
    cx, cy, half = (x1 + x2) / 2 * s, (y1 + y2) / 2 * s, FACE_PX
    small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    pad = cv2.copyMakeBorder(small, half, half, half, half, cv2.BORDER_REPLICATE)
    cut = pad[int(cy) : int(cy) + 2 * half, int(cx) : int(cx) + 2 * half]  # 180x180 around the face
    wall = np.clip(rng.normal(120, 8, (300, 400, 3)), 0, 255).astype(np.uint8)
    wall = cv2.GaussianBlur(wall, (5, 5), 0)
    ox, oy = 40, 60
    wall[oy : oy + 2 * half, ox : ox + 2 * half] = cut
    face = (
        ox + half - (cx - x1 * s),
        oy + half - (cy - y1 * s),
        ox + half + (x2 * s - cx),
        oy + half + (y2 * s - cy),
    )
    return wall, face


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    """Five scenes of one bundled face each (s0 also a box on the wall and a tiny one), s5 = s1 mirrored."""
    root = tmp_path_factory.mktemp("scenes") / "voc"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    names = ("without_mask", "with_mask", "mask_weared_incorrect", "without_mask", "with_mask")
    faces = {}
    with one_torch_thread():
        reference = FaceDetector(FIRST_DEMO_DETECTOR)
        for i, (photo, name) in enumerate(zip(PHOTOS, names)):
            scene, face = _scene(photo, rng, reference)
            faces[f"s{i}"] = face
            boxes = [(name, _annotated(face))]
            if i == 0:
                boxes += [("without_mask", WALL), ("with_mask", TINY)]
            cv2.imwrite(str(root / "images" / f"s{i}.png"), scene)
            (root / "annotations" / f"s{i}.xml").write_text(_voc(f"s{i}", f"s{i}.png", boxes))
            if i == 1:
                cv2.imwrite(str(root / "images" / "s5.png"), scene[:, ::-1])
                x1, y1, x2, y2 = _annotated(face)
                mirrored = (400 - x2, y1, 400 - x1, y2)
                (root / "annotations" / "s5.xml").write_text(_voc("s5", "s5.png", [(name, mirrored)]))
    return root, faces


@pytest.fixture(scope="module")
def imported(voc, tmp_path_factory):
    root, _ = voc
    cache = tmp_path_factory.mktemp("cache") / "cache"
    with one_torch_thread():
        assert main_code(["import", "--data", str(root), "--out", str(cache), "--name", "scenes"]) == 0
    folder = cache / "imports" / "scenes"
    with (folder / "manifest.csv").open() as fh:
        rows = {r["key"]: r for r in csv.DictReader(fh)}
    return folder, rows, json.loads((folder / "report.json").read_text())


def _box(row: dict) -> tuple[float, ...]:
    return tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2"))


def test_a_face_the_detector_finds_is_cut_at_the_detectors_box(voc, imported):
    root, faces = voc
    _, rows, report = imported
    detector = create_detector(Config())
    for i in range(5):
        row = rows[f"scenes/annotations/s{i}.xml#0"]
        assert row["how"] == "voc_detected" and row["found"] == "1"
        annotated = _annotated(faces[f"s{i}"])
        box = _box(row)
        # the detector's own box for that face, not the annotated one
        scene = cv2.imread(str(root / "images" / f"s{i}.png"))
        expected = detect_near(detector, scene, annotated, Config().scenes)
        assert expected is not None and np.allclose(box, expected.box, atol=0.11)
        assert iou(box, annotated) < 0.9 and iou(box, faces[f"s{i}"]) > 0.6
    assert report["counts"]["voc_detected"] == 6  # s0-s4, and the mirror image s5
    assert report["voc_mapping"]["faces"] == 6


def test_a_face_the_detector_misses_is_cut_at_the_mapped_box_and_tiny_faces_are_skipped(voc, imported):
    _, rows, report = imported
    wall = rows["scenes/annotations/s0.xml#1"]
    mapping = BoxMapping.from_dict(report["voc_mapping"])
    assert wall["how"] == "voc_mapped" and report["counts"]["voc_mapped"] == 1
    assert np.allclose(_box(wall), mapping.apply(WALL), atol=0.051)
    # the mapping moves the annotated box as the detector's boxes sit relative to them: up, and wider
    assert mapping.shift_y < -0.03 and mapping.scale_w > 1.05
    assert "scenes/annotations/s0.xml#2" not in rows and report["counts"]["too_small"] == 1
    assert len(rows) == 7


def test_a_rerun_reuses_the_detections_and_crops(voc, imported, tmp_path):
    root, _ = voc
    folder, rows, _ = imported
    cache = folder.parent.parent
    with one_torch_thread():
        assert main_code(["import", "--data", str(root), "--out", str(cache), "--name", "scenes"]) == 0
    report = json.loads((folder / "report.json").read_text())
    assert report["counts"]["reused"] == 7 and report["counts"]["voc_detected"] == 6


def test_held_out_groups_never_mix_with_kept_ones(voc, tmp_path):
    root, _ = voc
    keys = [f"annotations/s{i}.xml#0" for i in range(5)]  # each scene's group key (s5 joins s1's)
    seed = next(s for s in range(100) if 0 < sum(in_holdout(k, 0.5, s) for k in keys) < 4)
    cache = tmp_path / "cache"
    with one_torch_thread():
        args = ["import", "--data", str(root), "--out", str(cache), "--name", "v", "--holdout", "0.5"]
        assert main_code([*args, "--seed", str(seed)]) == 0
    folder = cache / "imports" / "v"
    with (folder / "holdout.csv").open() as fh:
        held = list(csv.DictReader(fh))
    with (folder / "manifest.csv").open() as fh:
        kept = list(csv.DictReader(fh))
    held_files = {r["file"] for r in held}
    kept_files = {f"images/s{r['key'].split('/s')[1].split('.')[0]}.png" for r in kept}
    assert held_files and kept_files and not held_files & kept_files
    assert {r["group"] for r in held}.isdisjoint({r["person"] for r in kept})
    assert ("images/s1.png" in held_files) == ("images/s5.png" in held_files)  # a mirror image: one group
    # what evaluation needs: the image, each face's box and state (small faces too: the <40 px bin)
    assert all(r["box"] and r["mask"] in ("wear", "incorrect", "not_wear") for r in held)
    if "images/s0.png" in held_files:
        assert sum(r["file"] == "images/s0.png" for r in held) == 3


def test_the_mapping_is_the_median_scale_and_offset():
    truth = BoxMapping(1.1, 1.2, -0.02, -0.15)
    boxes = [(10.0 * i, 20.0, 10.0 * i + 30 + i, 60.0 + i) for i in range(7)]
    pairs = [(b, truth.apply(b)) for b in boxes]
    pairs[3] = (boxes[3], (0.0, 0.0, 500.0, 500.0))  # one stray detection does not move a median
    fitted = fit_mapping(pairs)
    assert fitted.faces == 7
    assert np.allclose(
        (fitted.scale_w, fitted.scale_h, fitted.shift_x, fitted.shift_y), (1.1, 1.2, -0.02, -0.15), atol=1e-6
    )
    assert fit_mapping(pairs[:4]) == BoxMapping()  # too few faces: the annotated box as it is


def test_one_detection_goes_to_one_face_and_a_neighbour_is_not_matched():
    a, b = (0.0, 0.0, 40.0, 50.0), (30.0, 0.0, 70.0, 50.0)  # two neighbours in a crowd
    det = Face((2.0, -4.0, 42.0, 48.0), 0.99)
    assert assign([a, b], [det], ScenesConfig().match_iou) == [det, None]
    far = Face((200.0, 0.0, 240.0, 50.0), 0.99)
    assert assign([a], [far], 0.3) == [None]


def test_path_scores_count_a_face_not_found_as_not_flagged():
    truth = np.array([0, 0, 1, 2, 2])
    read = np.array([NOT_FOUND, 0, 1, NOT_FOUND, 0])
    conf = np.array([0.0, 0.9, 0.8, 0.0, 1.0])
    s = path_scores(truth, read, conf, 0.75)
    assert s["found"] == pytest.approx(3 / 5)
    assert s["masked_not_flagged"] == 1.0  # the masked face not found is not flagged: right
    assert s["flag_right"] == pytest.approx(3 / 5)  # the bare face not found is not flagged: wrong
    assert s["incorrect_recall"] == 1.0 and s["bare_read_as_worn"] == 1.0  # of the bare faces found
    assert s["wrong"] == 1 and s["wrong_confident"] == 1.0
    assert s["confusion"] == [[1, 0, 0, 1], [0, 1, 0, 0], [1, 0, 0, 1]]


def test_evaluate_scenes_prints_and_writes_the_numbers(voc, imported, tmp_path, capsys):
    root, _ = voc
    folder, _, _ = imported
    out = tmp_path / "scenes.json"
    args = ["evaluate-scenes", "--checkpoint", str(REPO / "samples" / "demo_model.onnx"), "--data", str(root)]
    with one_torch_thread():
        code = main_code([*args, "--list", str(folder / "kept.csv"), "--json", str(out), "--threads", "1"])
    printed = capsys.readouterr().out
    assert code == 0 and "issue 22's targets" in printed and "faces found" in printed
    report = json.loads(out.read_text())
    assert report["scenes"] == 6 and report["mapping"]["faces"] == 6  # the import's mapping, beside the list
    s = report["models"][str(REPO / "samples" / "demo_model.onnx")]
    e2e, boxed = s["all"]["end_to_end"], s["all"]["annotated_box"]
    assert e2e["faces"] == 8 and e2e["faces_per_state"] == {"wear": 4, "incorrect": 1, "not_wear": 3}
    c = np.array(e2e["confusion"])
    assert c[2, 3] >= 1 and c[0, 3] >= 1  # the faces on the wall (and the tiny one) are not found
    assert c[:, :3].sum() == 6  # the six pasted faces are
    flagged_right = c[0, 0] + c[0, 3] + c[1, 1:3].sum() + c[2, 1:3].sum()
    assert e2e["flag_right"] == pytest.approx(flagged_right / 8)
    assert np.array(boxed["confusion"])[:, 3].sum() == 0 and boxed["found"] == 1.0
    assert s["found_by_height"]["wear"]["<40"] == [0, 1]  # the tiny face, 19 px in the 640-px frame
    assert {t["key"] for t in s["targets"]} >= {"incorrect_recall", "found", "flag_right", "ece"}


def test_evaluate_scenes_refuses_a_list_without_boxes(voc, tmp_path):
    root, _ = voc
    (tmp_path / "l.csv").write_text("file,mask\nimages/s0.png,wear\n")
    args = ["evaluate-scenes", "--checkpoint", str(REPO / "samples" / "demo_model.onnx"), "--data", str(root)]
    with pytest.raises(Exception, match=r"needs the columns file,mask,box"):
        from train.cli import _main

        _main([*args, "--list", str(tmp_path / "l.csv")])


def test_evaluate_scenes_of_no_readable_image_is_one_error_naming_it(voc, tmp_path):
    from engines.errors import UserError
    from train.cli import _main

    root, _ = voc
    (tmp_path / "x.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "l.csv").write_text(f"file,mask,box\n{tmp_path / 'x.jpg'},wear,1 2 30 40\n")
    args = ["evaluate-scenes", "--checkpoint", str(REPO / "samples" / "demo_model.onnx"), "--data", str(root)]
    with pytest.raises(UserError, match=r"x\.jpg: not an image \(no scene of the list could be read\)"):
        _main([*args, "--list", str(tmp_path / "l.csv"), "--json", str(tmp_path / "out.json")])
    assert not (tmp_path / "out.json").exists()


SCENES = REPO.parent / "shared" / "datasets" / "face-mask-scenes" / "images"


@pytest.mark.skipif(not SCENES.is_dir(), reason=f"{SCENES} is missing")
def test_a_crop_of_a_scene_at_another_window_is_the_same_photo(tmp_path):
    from train.data.prepare import read_image
    from train.data.scenes import same_photo_groups

    photo = cv2.imread(str(SCENES / "maksssksksss222.jpg"))
    h, w = photo.shape[:2]
    crop = cv2.resize(photo[int(h * 0.2) :, : int(w * 0.7)], None, fx=0.8, fy=0.8)  # a dHash misses it
    files = [tmp_path / "a.png", tmp_path / "crop.png", *(SCENES / f"maksssksksss{i}.jpg" for i in (1, 10))]
    cv2.imwrite(str(files[0]), photo)
    cv2.imwrite(str(files[1]), crop)
    groups = same_photo_groups(files, read_image)
    assert groups == {files[0]: str(files[0]), files[1]: str(files[0])}
