"""Synthetic masks (train.synth.mask_render / train.synth.build), `mask-train synth`, and the sample
entrance video."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from tests.conftest import MASKS, REPO, one_torch_thread
from train.synth.mask_render import MaskStyle, draw_mask, face_frame, mask_layer

SAMPLES = REPO / "samples"
# MTCNN's answer on samples/faces/astronaut.png (tests/test_faces.py checks the detector itself).
ASTRO_LM = np.array(
    [[205.3, 101.4], [247.1, 103.2], [225.4, 129.0], [201.0, 140.2], [245.2, 141.3]], np.float32
)
ASTRO_BOX = (180.0, 61.0, 268.0, 172.0)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    img = cv2.imread(str(SAMPLES / "faces" / "astronaut.png"))
    assert img is not None
    return img


def _disc(shape, centre, radius) -> np.ndarray:
    m = np.zeros(shape[:2], np.uint8)
    cv2.circle(m, (int(round(centre[0])), int(round(centre[1]))), int(radius), 1, -1)
    return m.astype(bool)


def _changed(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """Share of pixels in `where` that differ by more than a little."""
    diff = np.abs(a.astype(int) - b.astype(int)).max(axis=2)
    return float((diff[where] > 12).mean())


# --- draw_mask --------------------------------------------------------------------------------------------


def test_not_wear_returns_an_unchanged_copy(astronaut):
    out = draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "not_wear", np.random.default_rng(0))
    assert out is not astronaut and np.array_equal(out, astronaut)


@pytest.mark.parametrize("style", ["surgical_blue", "surgical_white", "cloth_black", "pattern_dots"])
def test_worn_mask_covers_nose_and_mouth_not_the_eyes(astronaut, style):
    out = draw_mask(
        astronaut, ASTRO_LM, ASTRO_BOX, "wear", np.random.default_rng(1), style=MaskStyle.named(style)
    )
    d = float(np.linalg.norm(ASTRO_LM[1] - ASTRO_LM[0]))
    mouth = ASTRO_LM[3:].mean(axis=0)
    chin = mouth + np.array([0, 0.55 * d])
    for point in (ASTRO_LM[2], mouth, chin, ASTRO_LM[3], ASTRO_LM[4]):
        assert _changed(out, astronaut, _disc(out.shape, point, 0.1 * d)) > 0.9, point
    for eye in ASTRO_LM[:2]:
        assert np.array_equal(out[_disc(out.shape, eye, 0.2 * d)], astronaut[_disc(out.shape, eye, 0.2 * d)])
    # nothing above the eyes, nothing far below the chin
    eye_y = int(ASTRO_LM[:2, 1].min() - 0.2 * d)
    assert np.array_equal(out[:eye_y], astronaut[:eye_y])
    assert np.array_equal(out[int(ASTRO_BOX[3] + 1.2 * d) :], astronaut[int(ASTRO_BOX[3] + 1.2 * d) :])


def test_under_the_nose_leaves_the_nose_free_and_covers_the_mouth(astronaut):
    d = float(np.linalg.norm(ASTRO_LM[1] - ASTRO_LM[0]))
    nose = _disc(astronaut.shape, ASTRO_LM[2], 0.08 * d)  # the tip; the nostrils sit just below
    mouth = _disc(astronaut.shape, ASTRO_LM[3:].mean(axis=0), 0.12 * d)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        worn = draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "wear", rng)
        under = draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "incorrect", rng, placement="under_nose")
        assert _changed(worn, astronaut, nose) > 0.9
        assert _changed(under, astronaut, nose) < 0.05
        assert _changed(under, astronaut, mouth) > 0.9


def test_on_the_chin_leaves_the_mouth_free_and_covers_the_chin(astronaut):
    d = float(np.linalg.norm(ASTRO_LM[1] - ASTRO_LM[0]))
    mouth_c = ASTRO_LM[3:].mean(axis=0)
    for seed in range(5):
        out = draw_mask(
            astronaut, ASTRO_LM, ASTRO_BOX, "incorrect", np.random.default_rng(seed), placement="chin"
        )
        assert _changed(out, astronaut, _disc(out.shape, mouth_c, 0.12 * d)) < 0.05
        for corner in ASTRO_LM[3:]:
            assert _changed(out, astronaut, _disc(out.shape, corner, 0.06 * d)) < 0.05
        assert _changed(out, astronaut, _disc(out.shape, mouth_c + [0, 0.75 * d], 0.1 * d)) > 0.9
        assert _changed(out, astronaut, _disc(out.shape, ASTRO_LM[2], 0.15 * d)) == 0.0


def test_random_incorrect_is_either_placement(astronaut):
    d = float(np.linalg.norm(ASTRO_LM[1] - ASTRO_LM[0]))
    nose = _disc(astronaut.shape, ASTRO_LM[2], 0.08 * d)
    mouth = _disc(astronaut.shape, ASTRO_LM[3:].mean(axis=0), 0.12 * d)
    seen = set()
    for seed in range(12):
        out = draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "incorrect", np.random.default_rng(seed))
        assert _changed(out, astronaut, nose) < 0.05  # never over the nose
        seen.add("under_nose" if _changed(out, astronaut, mouth) > 0.9 else "chin")
    assert seen == {"under_nose", "chin"}


def _orientation(alpha: np.ndarray) -> float:
    ys, xs = np.nonzero(alpha > 0.5)
    cov = np.cov(np.stack([xs, ys]))
    evals, evecs = np.linalg.eigh(cov)
    vx, vy = evecs[:, np.argmax(evals)]
    return float(np.degrees(np.arctan2(vy, vx))) % 180


def test_mask_follows_the_roll_of_the_face(astronaut):
    centre = ASTRO_LM[:2].mean(axis=0)
    angles = []
    for roll in (0.0, 20.0, -15.0):
        rot = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), -roll, 1.0)  # +roll: clockwise
        lm = (np.c_[ASTRO_LM, np.ones(5)] @ rot.T).astype(np.float32)
        assert face_frame(lm).roll_degrees == pytest.approx(roll + face_frame(ASTRO_LM).roll_degrees, abs=0.5)
        _, alpha, _, _ = mask_layer(
            astronaut, lm, None, "over_nose", np.random.default_rng(3), MaskStyle.named("surgical_blue")
        )
        angles.append(_orientation(alpha))
    base = angles[0]
    assert (angles[1] - base) % 180 == pytest.approx(20.0, abs=4.0)
    assert (angles[2] - base) % 180 == pytest.approx(180 - 15.0, abs=4.0)


def test_same_seed_same_mask_and_styles_differ(astronaut):
    a = draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "wear", np.random.default_rng(5))
    b = draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "wear", np.random.default_rng(5))
    assert np.array_equal(a, b)
    mouth = _disc(astronaut.shape, ASTRO_LM[3:].mean(axis=0), 8)
    colours = {
        tuple(
            np.round(
                draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "wear", None, style=MaskStyle.named(s))[mouth].mean(
                    axis=0
                )
                / 40
            )
        )
        for s in ("surgical_blue", "surgical_white", "cloth_black")
    }
    assert len(colours) == 3
    black = draw_mask(
        astronaut, ASTRO_LM, ASTRO_BOX, "wear", np.random.default_rng(0), style=MaskStyle.named("cloth_black")
    )[mouth].mean()
    white = draw_mask(
        astronaut,
        ASTRO_LM,
        ASTRO_BOX,
        "wear",
        np.random.default_rng(0),
        style=MaskStyle.named("surgical_white"),
    )[mouth].mean()
    assert black < 90 < 160 < white


def test_texture_image_is_used(astronaut, shared):
    tex = cv2.imread(str(MASKS / "mask_blue.jpg"))
    out = draw_mask(
        astronaut,
        ASTRO_LM,
        ASTRO_BOX,
        "wear",
        np.random.default_rng(0),
        tex,
        style=MaskStyle.named("cloth_black"),
    )
    b, g, r = out[_disc(out.shape, ASTRO_LM[3:].mean(axis=0), 10)].mean(axis=0)
    assert b > r + 30 and b > 120  # light blue fabric, not the black style it overrides


def test_bad_state_and_image_are_refused(astronaut):
    with pytest.raises(ValueError, match="state"):
        draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "half")
    with pytest.raises(ValueError, match="placement"):
        draw_mask(astronaut, ASTRO_LM, ASTRO_BOX, "wear", placement="chin")
    with pytest.raises(ValueError, match="image"):
        draw_mask(astronaut[:, :, 0], ASTRO_LM, ASTRO_BOX, "wear")


# --- one training image -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def astro_face():
    from engines.faces import Face

    return Face(ASTRO_BOX, 1.0, ASTRO_LM.copy())


def test_render_sample_without_jitter_is_the_engines_crop(astronaut, astro_face):
    from engines.faces import crop_box, crop_region
    from train.synth.build import Jitter, render_sample

    out = render_sample(astronaut, astro_face, "not_wear", Jitter(), np.random.default_rng(0))
    ref = crop_region(astronaut, crop_box(ASTRO_BOX))
    assert out.shape == (512, 384, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_masks_change_the_lower_face_only_under_the_same_jitter(astronaut, astro_face, variant):
    from train.synth.build import crop_points, person_jitter, render_sample

    jit = person_jitter(np.random.default_rng(variant), variant)
    assert jit.angle != 0 and jit.scale != 1
    render = lambda state, placement=None: render_sample(  # noqa: E731
        astronaut, astro_face, state, jit, np.random.default_rng(9), placement=placement
    )
    bare, worn = render("not_wear"), render("wear")
    under, chin = render("incorrect", "under_nose"), render("incorrect", "chin")
    lm = crop_points(ASTRO_LM, astro_face, jit, astronaut.shape[1])
    d = float(np.linalg.norm(lm[1] - lm[0]))
    at = lambda p, r: _disc(bare.shape, p, r * d)  # noqa: E731
    mouth = lm[3:].mean(axis=0)
    for img in (worn, under, chin):  # the eyes are never touched
        for eye in lm[:2]:
            assert _changed(img, bare, at(eye, 0.2)) == 0.0
    assert _changed(worn, bare, at(lm[2], 0.08)) > 0.9 and _changed(worn, bare, at(mouth, 0.12)) > 0.9
    assert _changed(under, bare, at(lm[2], 0.08)) < 0.05 and _changed(under, bare, at(mouth, 0.12)) > 0.9
    assert _changed(chin, bare, at(mouth, 0.12)) < 0.05
    assert _changed(chin, bare, at(mouth + (lm[2] - lm[:2].mean(axis=0)) * 1.4, 0.1)) > 0.9


@pytest.mark.parametrize("cut", [(61, 172, 180, 268), (75, 150, 185, 265), (70, 150, 180, 268)])
def test_a_tight_crop_is_found_padded(astronaut, cut):
    """On a face the photo's border cuts, MTCNN strays (landmarks 17-27 px off here) or finds nothing;
    looked for again padded into a frame, the landmarks that place the mask are right."""
    from engines.config import DetectorConfig
    from engines.faces import FaceDetector
    from train.synth.build import find_face

    y1, y2, x1, x2 = cut
    tight = np.ascontiguousarray(astronaut[y1:y2, x1:x2])
    with one_torch_thread():
        face = find_face(FaceDetector(DetectorConfig()), tight)
    assert face is not None
    assert np.abs(face.landmarks - (ASTRO_LM - [x1, y1])).max() < 5


def test_a_mask_on_a_tight_crop_is_drawn_whole(astronaut, astro_face):
    """A photo that ends at the chin: the chin mask is drawn past its edge, over the border the crop adds,
    so the image shows the mask the same face shows with room below it; cut off at the edge, its last row
    was smeared down the crop's replicated border instead."""
    from engines.faces import Face
    from train.synth.build import Jitter, render_sample, room_for_mask

    assert room_for_mask(astronaut, astro_face)[0] is astronaut  # room enough: untouched
    x1, y1, x2, y2 = (int(v) for v in ASTRO_BOX)
    tight = np.ascontiguousarray(astronaut[y1:y2, x1:x2])
    face = Face((0.0, 0.0, float(x2 - x1), float(y2 - y1)), 1.0, ASTRO_LM - [x1, y1])
    padded, moved = room_for_mask(tight, face)
    bx1, by1, bx2, by2 = (int(v) for v in moved.box)
    assert padded.shape[0] > tight.shape[0] and np.array_equal(padded[by1:by2, bx1:bx2], tight)

    def mask_pixels(photo, f) -> np.ndarray:
        render = lambda state, where=None: render_sample(  # noqa: E731
            photo, f, state, Jitter(), np.random.default_rng(3), placement=where
        )
        diff = np.abs(render("incorrect", "chin").astype(int) - render("not_wear").astype(int))
        return diff.max(axis=2) > 12

    roomy, cut = mask_pixels(astronaut, astro_face), mask_pixels(tight, face)
    near = cv2.dilate(roomy.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    assert roomy.sum() > 1000
    assert (cut & roomy).sum() > 0.9 * roomy.sum()
    assert (cut & ~near).sum() < 0.05 * roomy.sum()


def test_crop_points_follow_the_jitter(astronaut, astro_face, shared):
    """The mapped eyes are where MTCNN finds them in the rendered (flipped, turned, scaled) image."""
    from engines.config import DetectorConfig
    from engines.faces import FaceDetector
    from train.synth.build import Jitter, crop_points, render_sample

    jit = Jitter(flip=True, scale=1.1, dx=0.04, dy=-0.03, angle=9.0)
    out = render_sample(astronaut, astro_face, "not_wear", jit, np.random.default_rng(0))
    found = FaceDetector(DetectorConfig()).detect(out)
    assert len(found) == 1
    expected = crop_points(ASTRO_LM, astro_face, jit, astronaut.shape[1])[
        [1, 0, 2, 4, 3]
    ]  # mirrored: sides swap
    assert np.abs(found[0].landmarks - expected).max() < 8  # pixels of the 384x512 image


# --- mask-train synth -------------------------------------------------------------------------------------


def _synth(capsys, *args: str) -> tuple[int, str]:
    from train.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["synth", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) <= 1, err  # at most one error line (a progress bar may precede it)
    return int(exc.value.code or 0), (errors[0] if errors else err)


def _labels(path, text: str):
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    """Two bundled photos, two variants each, plus one eval person: made once for the tests below."""
    from train.config import Config
    from train.synth.build import build, read_labels

    tmp = tmp_path_factory.mktemp("synth")
    labels = _labels(
        tmp / "labels.csv",
        "# two people\nfile,gender,age,variants,split\n"
        "astronaut.png,female,42,,\nobama2.jpg,Male,49,2,train\nbiden.jpg,male,68,1,eval\n",
    )
    out = tmp / "out"
    summary = build(read_labels(labels, SAMPLES / "faces"), out, Config(), variants=2, seed=3)
    return out, labels, summary


def test_synth_writes_the_competition_layout(synth_set):
    from engines.labels import parse_mask_stem, parse_person_dir

    out, _, summary = synth_set
    assert summary == {
        "people": 5,
        "made": 5,
        "kept": 0,
        "train": 4,
        "eval": 1,
        "no_face": 0,
        "layout": "competition",
    }
    rows = (out / "train" / "train.csv").read_text().splitlines()
    assert rows[0] == "id,gender,race,age,path" and len(rows) == 5
    folders = sorted(p.name for p in (out / "train" / "images").iterdir())
    assert folders == sorted(r.split(",")[4] for r in rows[1:])
    genders = []
    for row in rows[1:]:
        pid, gender, race, age, folder = row.split(",")
        person = parse_person_dir(folder)
        assert (person.id, person.race, person.age_years) == (pid, race, int(age))
        genders.append(gender)
        files = sorted(p.name for p in (out / "train" / "images" / folder).iterdir())
        assert files == sorted(
            f"{s}.jpg" for s in ("mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal")
        )
        for name in files:
            img = cv2.imread(str(out / "train" / "images" / folder / name))
            assert img.shape == (512, 384, 3)
        assert sorted(parse_mask_stem(name) for name in files) == [0, 0, 0, 0, 0, 1, 2]
    assert genders == ["female", "female", "male", "male"]


def test_synth_variants_differ_and_images_of_a_person_vary(synth_set):
    out, _, _ = synth_set
    folders = sorted((out / "train" / "images").iterdir())
    a = cv2.imread(str(folders[2] / "normal.jpg")).astype(int)
    b = cv2.imread(str(folders[3] / "normal.jpg")).astype(int)
    assert np.abs(a - b).mean() > 8  # two "people" from one photo
    m1, m2 = (cv2.imread(str(folders[2] / f"mask{k}.jpg")).astype(int) for k in (1, 2))
    assert np.abs(m1 - m2).mean() > 3  # no two of a person's photos alike


def test_synth_eval_split_has_info_and_truth(synth_set):
    out, _, _ = synth_set
    info = (out / "eval" / "info.csv").read_text().splitlines()
    truth = (out / "eval" / "truth.csv").read_text().splitlines()
    assert info[0] == truth[0] == "ImageID,ans" and len(info) == len(truth) == 8
    assert all(line.endswith(",0") for line in info[1:])
    assert [i.split(",")[0] for i in info] == [t.split(",")[0] for t in truth]
    # biden, male, 68: wear 0*6+0*3+2 = 2, incorrect 8, not wear 14
    assert sorted(int(t.split(",")[1]) for t in truth[1:]) == [2, 2, 2, 2, 2, 8, 14]
    for line in info[1:]:
        assert cv2.imread(str(out / "eval" / "images" / line.split(",")[0])).shape == (512, 384, 3)


def test_synth_runs_again_safely(synth_set, capsys):
    out, labels, _ = synth_set
    before = {p: p.stat().st_mtime_ns for p in (out / "train" / "images").rglob("*.jpg")}
    victim = next(iter(sorted(before)))
    victim.unlink()  # as if a run had stopped half-way
    code, err = _synth(
        capsys,
        "--faces",
        str(SAMPLES / "faces"),
        "--labels",
        labels,
        "--out",
        str(out),
        "--variants",
        "2",
        "--seed",
        "3",
    )
    assert code == 0 and "1 made, 4 already there" in err
    after = {p: p.stat().st_mtime_ns for p in (out / "train" / "images").rglob("*.jpg")}
    assert set(after) == set(before)
    untouched = [p for p in before if p.parent != victim.parent]
    assert all(after[p] == before[p] for p in untouched)
    # other settings: refused without --force, nothing lost
    code, err = _synth(
        capsys,
        "--faces",
        str(SAMPLES / "faces"),
        "--labels",
        labels,
        "--out",
        str(out),
        "--variants",
        "2",
        "--seed",
        "4",
    )
    assert code == 2 and "--force" in err
    assert all(p.is_file() for p in before)


@pytest.mark.parametrize(
    "csv_text, message",
    [
        ("file,gender,age\nnobody.jpg,male,40\n", "nobody.jpg does not exist"),
        ("file,gender,age\nastronaut.png,F,42\n", "gender must be 'male' or 'female', got 'F'"),
        ("file,gender,age\nastronaut.png,female,forty\n", "age must be whole years 0..120, got 'forty'"),
        ("file,gender,age\nastronaut.png,female,130\n", "got '130'"),
        ("file,gender\nastronaut.png,female\n", "missing column 'age'"),
        ("file,gender,age,colour\nastronaut.png,female,42,red\n", "unknown column 'colour'"),
        ("file,gender,age\nastronaut.png,female\n", "line 2: 2 values for 3 columns"),
        ("# nothing\n", "is empty"),
        ("file,gender,age,split\nastronaut.png,female,42,test\n", "split must be 'train' or 'eval'"),
    ],
)
def test_bad_labels_are_one_line_errors(tmp_path, capsys, csv_text, message):
    labels = _labels(tmp_path / "labels.csv", csv_text)
    code, err = _synth(
        capsys, "--faces", str(SAMPLES / "faces"), "--labels", labels, "--out", str(tmp_path / "o")
    )
    assert code == 2 and err.startswith("mask-train: error: ") and message in err
    assert not (tmp_path / "o").exists()


def test_photo_without_a_face_and_unreadable_photo(tmp_path, capsys):
    faces = tmp_path / "faces"
    faces.mkdir()
    cv2.imwrite(str(faces / "wall.png"), np.full((300, 300, 3), 128, np.uint8))
    (faces / "broken.jpg").write_bytes(b"not a jpeg")
    for name, message in (("wall.png", "no face found"), ("broken.jpg", "not a readable image")):
        labels = _labels(tmp_path / "labels.csv", f"file,gender,age\n{name},male,30\n")
        code, err = _synth(capsys, "--faces", str(faces), "--labels", labels, "--out", str(tmp_path / "o"))
        assert code == 2 and err.startswith("mask-train: error: ") and message in err and name in err
        assert not (tmp_path / "o").exists()


def test_out_folder_of_something_else_is_refused(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "precious.txt").write_text("keep me")
    labels = _labels(tmp_path / "labels.csv", "file,gender,age\nastronaut.png,female,42\n")
    code, err = _synth(
        capsys, "--faces", str(SAMPLES / "faces"), "--labels", labels, "--out", str(tmp_path / "o")
    )
    assert code == 2 and "not made by mask-train synth" in err
    assert (tmp_path / "o" / "precious.txt").read_text() == "keep me"


def test_bundled_labels_parse():
    from engines.labels import age_group
    from train.synth.build import read_labels

    rows = read_labels(SAMPLES / "faces" / "labels.csv", SAMPLES / "faces")
    assert {r.path.name for r in rows} == {
        "astronaut.png",
        "obama.jpg",
        "obama2.jpg",
        "obama3.jpg",
        "biden.jpg",
    }
    by = {r.path.name: r for r in rows}
    assert by["astronaut.png"].gender == "female" and age_group(by["astronaut.png"].age) == 1
    assert by["biden.jpg"].gender == "male" and age_group(by["biden.jpg"].age) == 2


# --- the sample entrance video ----------------------------------------------------------------------------


def _video_module():
    import importlib.util
    import sys

    if "make_entrance_video" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "make_entrance_video", SAMPLES / "make_entrance_video.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
    return sys.modules["make_entrance_video"]


@pytest.fixture(scope="module")
def truth() -> dict:
    import json

    return json.loads((SAMPLES / "entrance_truth.json").read_text())


def _read_frames(path, wanted: set[int]) -> tuple[int, dict[int, np.ndarray], tuple[int, int], float]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames, n, size = {}, 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        size = frame.shape[1], frame.shape[0]
        if n in wanted:
            frames[n] = frame
        n += 1
    cap.release()
    return n, frames, size, fps


def test_sample_video_and_truth_agree(truth):
    video = SAMPLES / truth["video"]
    assert video.stat().st_size < 6_000_000  # small enough for git
    n, _, size, fps = _read_frames(video, set())
    assert n == truth["frames"] and size == (640, 480) == (truth["width"], truth["height"])
    assert fps == pytest.approx(truth["fps"]) and 15 <= n / fps <= 25.5
    people = truth["people"]
    assert len(people) >= 6
    assert {p["mask"] for p in people} == {"wear", "incorrect", "not_wear"}
    assert any(p["placement"] == "under_nose" for p in people)
    last_end = -1
    for p in people:
        assert last_end < p["first_frame"] <= p["first_in_view"] < p["last_in_view"] <= p["last_frame"] < n
        assert p["last_in_view"] - p["first_in_view"] >= 1.2 * fps  # stands a while in view
        last_end = p["last_frame"]  # one after another
        frames = [b[0] for b in p["face_boxes"]]
        assert frames == list(range(p["first_in_view"], p["last_in_view"] + 1))
        heights = [b[4] - b[2] for b in p["face_boxes"]]
        assert 150 <= min(heights) and max(heights) <= 250
        for _, x1, y1, x2, y2 in p["face_boxes"]:
            assert 0 <= x1 < x2 <= 639 and 0 <= y1 < y2 <= 479
        assert p["gender"] in ("male", "female") and p["age"] in ("<30", "30-59", ">=60")
        assert (SAMPLES / p["source"]).is_file()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return 10 * np.log10(255**2 / max(mse, 1e-9))


def _block_means(img: np.ndarray, k: int = 8) -> np.ndarray:
    return cv2.resize(img, (img.shape[1] // k, img.shape[0] // k), interpolation=cv2.INTER_AREA)


def test_sample_video_is_what_the_script_makes(truth, shared):
    """Re-render a few frames (two people, fresh plan) twice: identical; and equal to the committed video
    up to its mp4v compression."""
    mv = _video_module()
    people = {p["id"]: p for p in truth["people"]}
    picks = [2, 8]  # photo sources: quick to load
    plan = mv.build_plan(truth["seed"], only=set(picks))
    assert plan.frames == truth["frames"]
    frames = [people[i]["first_in_view"] + 3 for i in picks] + [people[picks[0]]["last_in_view"] - 1]
    _, decoded, _, _ = _read_frames(SAMPLES / truth["video"], set(frames))
    for i in frames:
        a, b = mv.render_frame(plan, i), mv.render_frame(plan, i)
        assert np.array_equal(a, b)
        # mp4v codes 8x8 DCT blocks: it drops much of the frame's rendered sensor noise (full-frame PSNR
        # 29.6-36 dB, and it moved by 0.5 dB between two OpenCV releases' decoders), but keeps each block's
        # mean (the DC coefficient, finely quantised): 38-40 dB on 8x8 block means, where a frame 5 frames
        # off (a person moved) gives 15-19 dB. Both margins are wide against a codec or decoder change.
        assert _psnr(a, decoded[i]) > 26, i
        assert _psnr(_block_means(a), _block_means(decoded[i])) > 33, i
    # the truth boxes are where the faces are drawn: MTCNN finds them in the re-rendered frames
    from engines.config import DetectorConfig
    from engines.faces import FaceDetector

    detector = FaceDetector(DetectorConfig())
    for i, pid in zip(frames, picks):
        box = next(b[1:] for b in people[pid]["face_boxes"] if b[0] == i)
        found = detector.detect(mv.render_frame(plan, i))
        assert any(mv._iou(f.box, box) > 0.5 for f in found), (pid, i)


def test_a_folder_of_bare_faces_without_labels_is_written_flat_for_import(tmp_path, capsys, shared):
    """Any folder of bare faces: every image an identity of unknown gender and age; no face or an unreadable
    file is skipped and counted; the flat labels.csv imports with the photo as the group."""
    from train.data.cache import Cache

    faces = tmp_path / "faces"
    faces.mkdir()
    shutil.copy(SAMPLES / "faces" / "astronaut.png", faces / "a.png")
    real = shared / "datasets" / "face-mask-real" / "without_mask"
    for p in sorted(real.glob("*.jpg"))[:2]:
        shutil.copy(p, faces / p.name)
    cv2.imwrite(str(faces / "wall.png"), np.full((200, 200, 3), 128, np.uint8))
    (faces / "broken.jpg").write_bytes(b"not a jpeg")
    code, err = _synth(capsys, "--faces", str(faces), "--out", str(tmp_path / "o"))
    err = " ".join(err.split())  # rich wraps the summary line
    assert code == 0 and "2 photos without a face skipped" in err and "flat layout" in err
    rows = (tmp_path / "o" / "labels.csv").read_text().splitlines()
    assert rows[0] == "file,mask,gender,age,group,split,placement,mask_source"
    people = {line.split(",")[4] for line in rows[1:]}
    assert len(rows) - 1 == 7 * len(people) and 1 <= len(people) <= 3
    assert {line.split(",")[1] for line in rows[1:]} == {"wear", "incorrect", "not_wear"}
    assert all(",,," in line for line in rows[1:])  # gender and age unknown
    code, err = _synth(capsys, "--faces", str(faces), "--out", str(tmp_path / "o"))  # a rerun keeps it
    assert code == 0 and "already there" in err
    from train.cli import _main

    with one_torch_thread():
        assert (
            _main(["import", "--data", str(tmp_path / "o"), "--out", str(tmp_path / "c"), "--name", "s"]) == 0
        )
    samples = Cache(tmp_path / "c").samples()
    incorrect = [s for s in samples if s.mask == 1]
    assert len(incorrect) == len(people) and all(s.gender == -1 for s in samples)
    assert len({s.person for s in samples}) <= len(people)  # a person's 7 images stay in one group
