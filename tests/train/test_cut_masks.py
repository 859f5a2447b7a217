"""Masks cut from real photos (train.synth.mask_bank, `mask-train cut-masks`), warped onto real bare faces
by placement (train.synth.cut_render), and the leave-one-out split `mask-train import --exclude` makes of a
synth set. The photos are read from ../shared (never copied into the repo)."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from tests.conftest import REPO, one_torch_thread

REAL = "datasets/face-mask-real"
MASKED = ("0001.jpg", "0003.jpg", "0007.jpg")  # a red cloth mask, a teal surgical mask, a black one


@pytest.fixture(scope="module")
def detector():
    """MTCNN as samples/demo_data.toml's cut-masks and synth steps pin it ([mtcnn.photos]: facenet-pytorch's
    nets), so that the masks are cut and placed by the landmarks the recipe's are."""
    from engines.faces import FIRST_DEMO_DETECTOR, FaceDetector

    return FaceDetector(FIRST_DEMO_DETECTOR)


def _face(detector, img):
    from train.synth.build import find_face

    with one_torch_thread():
        face = find_face(detector, img)
    assert face is not None
    return face


@pytest.fixture(scope="module")
def bank(shared, detector):
    """Masks cut from three real masked photos, as cut-masks keeps them."""
    from train.synth.mask_bank import BankMask, Rejection, cut_mask

    masks = []
    for name in MASKED:
        img = cv2.imread(str(shared / REAL / "with_mask" / name))
        face = _face(detector, img)
        cut = cut_mask(img, face.landmarks, face.box)
        assert not isinstance(cut, Rejection), (name, cut)
        masks.append(BankMask(cut.rgba, {"file": name, **cut.meta}))
    return masks


def test_a_cut_of_a_real_masked_photo_is_a_plausible_rgba(bank):
    from train.synth.mask_bank import CANON_D, CANON_EYES

    cx, cy = CANON_EYES
    for m in bank:
        rgba, meta = m.rgba, m.meta
        assert rgba.ndim == 3 and rgba.shape[2] == 4 and rgba.dtype == np.uint8
        alpha = rgba[..., 3]
        x0, y0 = meta["offset"]
        # the mouth (in the canonical frame) is under the mask; the eyes' line is not
        assert alpha[int(cy + 1.1 * CANON_D) - y0, int(cx) - x0] == 255
        assert y0 > cy - 0.2 * CANON_D
        # soft edges: a band of partial alpha, and the top edge between the eyes and the mouth
        assert ((alpha > 10) & (alpha < 245)).sum() > 0.02 * (alpha > 0).sum()
        assert 0.05 <= meta["top"] <= 1.05 and meta["bottom"] > 1.5
        assert 0.4 <= meta["cover"] <= 0.97 and meta["solidity"] >= 0.8
        curve = meta["sharpness"]
        assert all(a >= b for a, b in zip(curve, curve[1:]))  # sharpness falls with blur


def test_a_bare_face_is_refused(shared, detector):
    from train.synth.mask_bank import Rejection, cut_mask

    for path in (REPO / "samples" / "faces" / "astronaut.png", shared / REAL / "without_mask" / "0000.jpg"):
        img = cv2.imread(str(path))
        face = _face(detector, img)
        cut = cut_mask(img, face.landmarks, face.box)
        assert isinstance(cut, Rejection), path


@pytest.fixture(scope="module")
def targets(shared, detector):
    """Real bare faces: the bundled astronaut and two photos of the real set."""
    out = []
    for path in (
        REPO / "samples" / "faces" / "astronaut.png",
        shared / REAL / "without_mask" / "0100.jpg",
        shared / REAL / "without_mask" / "0102.jpg",
    ):
        img = cv2.imread(str(path))
        out.append((img, _face(detector, img)))
    return out


def _at(alpha: np.ndarray, p) -> float:
    return float(alpha[int(round(p[1])), int(round(p[0]))])


def _down(lm: np.ndarray) -> np.ndarray:
    """The face's downward axis (unit vector): square to the eye line, as the placements are made in the face
    frame; on a tilted face (its eyes 20 degrees off level) an image column through the nose is not it."""
    across = (lm[1] - lm[0]) / np.linalg.norm(lm[1] - lm[0])
    return np.array([-across[1], across[0]])


def _top_from(alpha: np.ndarray, p, lm: np.ndarray) -> float:
    """Where the mask's top edge (alpha > 0.5) crosses the face's vertical line through p, in eye distances
    from p (negative: above p)."""
    d = float(np.linalg.norm(lm[1] - lm[0]))
    h, w = alpha.shape
    for t in np.arange(-1.5, 3.0, 0.01):
        x, y = np.asarray(p) + t * d * _down(lm)
        if 0 <= round(y) < h and 0 <= round(x) < w and alpha[int(round(y)), int(round(x))] > 0.5:
            return float(t)
    raise AssertionError("no mask on the face's vertical line through the point")


@pytest.mark.parametrize("placement", ["over_nose", "under_nose", "chin", "ear"])
def test_placements_on_real_faces_by_their_landmarks(bank, targets, placement):
    """Worn: the nose tip covered. Under the nose: the nose tip above the mask's top edge, the mouth
    covered. Chin: both mouth corners above the top edge. Ear: nose and mouth free, the mask off to a side."""
    from train.synth.build import room_for_mask
    from train.synth.cut_render import cut_layer

    for img, face in targets:
        img, face = room_for_mask(img, face)  # the room synth gives a mask around a tight photo's face
        lm = face.landmarks
        d = float(np.linalg.norm(lm[1] - lm[0]))
        nose, mouth = lm[2], lm[3:].mean(axis=0)
        for k, m in enumerate(bank):
            for seed in range(3):
                _, alpha = cut_layer(img, lm, face.box, m, placement, np.random.default_rng(seed))
                why = (placement, k, seed)
                if placement == "over_nose":
                    assert _at(alpha, nose) > 0.5 and _at(alpha, mouth) > 0.5, why
                    assert _top_from(alpha, nose, lm) < -0.1, why  # its top edge well above the nose tip
                elif placement == "under_nose":
                    assert _at(alpha, nose) < 0.5 and _at(alpha, mouth) > 0.5, why
                    assert _top_from(alpha, nose, lm) > 0, why
                elif placement == "chin":
                    for corner in lm[3:]:
                        assert _at(alpha, corner) < 0.5, why
                    assert _top_from(alpha, mouth, lm) > 0, why
                else:
                    assert _at(alpha, nose) < 0.5, why
                    ys, xs = np.nonzero(alpha > 0.5)
                    assert len(xs) > 0.3 * d * d, why
                    pts = np.stack([xs, ys], axis=1) - nose  # in the face frame: across the eyes, and down
                    across, down = pts @ ((lm[1] - lm[0]) / d), pts @ _down(lm)
                    top = int(np.argmin(down))  # the corner held at the ear, not the middle over the nose
                    assert abs(float(across[top])) > 0.4 * d, why


def test_drawn_masks_hang_from_an_ear_too(targets):
    from train.synth.cut_render import drawn_layer

    img, face = targets[0]
    lm = face.landmarks
    d = float(np.linalg.norm(lm[1] - lm[0]))
    sides = set()
    for seed in range(16):  # the ear is drawn at random: sixteen draws take both (one side: 1 in 32,768)
        _, alpha = drawn_layer(img, lm, face.box, "ear", np.random.default_rng(seed))
        ys, xs = np.nonzero(alpha > 0.5)
        assert _at(alpha, lm[2]) < 0.5 and len(xs) > 0.3 * d * d
        sides.add(bool(xs.mean() > lm[2][0]))
    assert sides == {True, False}  # either ear


def test_the_mask_takes_the_targets_light(bank, targets):
    """The same mask on a face made darker comes out darker (its light is the target's lower face's)."""
    from train.synth.cut_render import cut_layer

    img, face = targets[0]
    dark = (img.astype(np.float32) * 0.5).astype(np.uint8)
    bright, _ = cut_layer(img, face.landmarks, face.box, bank[1], "over_nose", np.random.default_rng(0))
    dim, alpha = cut_layer(dark, face.landmarks, face.box, bank[1], "over_nose", np.random.default_rng(0))
    inside = alpha > 0.9
    assert dim[inside].mean() < 0.7 * bright[inside].mean()


# --- the command, synth --mask-bank, import --exclude ------------------------------------------------------


def _run(args: list[str]) -> int:
    from train.cli import _main

    with one_torch_thread():
        return _main(args)


def test_cut_masks_synth_and_a_leave_one_out_split(tmp_path, shared, capsys):
    from train.data.cache import Cache

    photos = tmp_path / "photos"
    (photos / "with_mask").mkdir(parents=True)
    for name in MASKED:
        shutil.copy(shared / REAL / "with_mask" / name, photos / "with_mask" / name)
    shutil.copy(REPO / "samples" / "faces" / "astronaut.png", photos / "with_mask" / "bare.png")
    bank = tmp_path / "bank"
    assert _run(["cut-masks", "--data", str(photos), "--out", str(bank)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "3 masks from 4 photos" in err and "refused" in err
    assert len(list((bank / "masks").glob("*.png"))) == 3
    from engines.errors import UserError

    with pytest.raises(UserError, match="already holds a mask bank"):
        _run(["cut-masks", "--data", str(photos), "--out", str(bank)])
    # --only: photos a labels list does not name (held out for evaluation) never lend their masks
    only = tmp_path / "kept.csv"
    only.write_text(f"file,mask\nwith_mask/{MASKED[0]},wear\nwith_mask/bare.png,wear\n")
    assert _run(["cut-masks", "--data", str(photos), "--out", str(tmp_path / "b2"), "--only", str(only)]) == 0
    sources = {m["source"] for m in json.loads((tmp_path / "b2" / "bank.json").read_text())["masks"]}
    assert sources == {f"with_mask/{MASKED[0]}"}
    (tmp_path / "bad.csv").write_text("path\nx.jpg\n")
    with pytest.raises(UserError, match="a labels list with a `file` column"):
        _run(
            [
                "cut-masks",
                "--data",
                str(photos),
                "--out",
                str(tmp_path / "b3"),
                "--only",
                str(tmp_path / "bad.csv"),
            ]
        )

    faces = tmp_path / "faces"
    faces.mkdir()
    for name in ("0100.jpg", "0102.jpg"):
        shutil.copy(shared / REAL / "without_mask" / name, faces / name)
    out = tmp_path / "synth"
    args = ["synth", "--faces", str(faces), "--out", str(out), "--variants", "6", "--seed", "1"]
    assert _run([*args, "--mask-bank", str(bank)]) == 0
    rows = [line.split(",") for line in (out / "labels.csv").read_text().splitlines()]
    assert rows[0][-2:] == ["placement", "mask_source"]
    placements = {(r[1], r[6]) for r in rows[1:]}
    assert {("wear", "over_nose"), ("not_wear", "")} <= placements
    assert {p for m, p in placements if m == "incorrect"} == {"under_nose", "chin", "ear"}
    assert {r[7] for r in rows[1:] if r[1] != "not_wear"} == {"cut", "drawn"}

    cache = tmp_path / "cache"
    assert (
        _run(
            ["import", "--data", str(out), "--out", str(cache), "--name", "s", "--exclude", "placement=chin"]
        )
        == 0
    )
    manifest = Cache.read_rows(cache / "imports" / "s" / "manifest.csv")
    n_chin = sum(r[6] == "chin" for r in rows[1:])
    assert n_chin and len(manifest) == len(rows) - 1 - n_chin
    assert "chin" not in {r["placement"] for r in manifest.values()}
    assert {r["placement"] for r in manifest.values()} == {"over_nose", "under_nose", "ear", ""}
    assert {r["mask_source"] for r in manifest.values()} == {"cut", "drawn", ""}

    with pytest.raises(UserError, match="no column 'colour'"):
        _run(["import", "--data", str(out), "--out", str(cache), "--name", "t", "--exclude", "colour=red"])
    with pytest.raises(UserError, match="COLUMN=VALUE"):
        _run(["import", "--data", str(out), "--out", str(cache), "--name", "t", "--exclude", "chin"])
    with pytest.raises(UserError, match="needs a labels CSV"):
        _run(
            [
                "import",
                "--data",
                str(photos),
                "--out",
                str(cache),
                "--name",
                "t",
                "--exclude",
                "placement=chin",
            ]
        )
