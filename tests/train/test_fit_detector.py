"""mask-train fit-detector: MTCNN's three nets taught imported faces; the labels of its samples, the
loss, the file it writes and the detector that loads it (engines.faces, [detector] weights)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engines.config import DetectorConfig
from engines.errors import UserError
from engines.faces import FaceDetector, create_detector, iou, load_detector_weights
from tests.conftest import FACES, SHARED, one_torch_thread
from train.cli import _main
from train.config import Config
from train.detector.data import (
    Samples,
    frame_samples,
    iou_matrix,
    label_boxes,
    paste_face,
    shrink,
)
from train.detector.fit import close_up_box, split_groups, stage_loss
from train.evaluation.frames import list_rows

REAL = SHARED / "datasets" / "face-mask-real"
ORIGINAL = DetectorConfig(weights="")  # facenet-pytorch's own nets


def test_candidates_are_labelled_by_their_overlap_and_never_negative_over_another_face():
    face = (100.0, 100.0, 200.0, 200.0)
    other = (300.0, 100.0, 400.0, 200.0)
    cands = np.array(
        [
            [100, 100, 200, 200],  # the face: positive
            [110, 110, 210, 210],  # IoU 0.68: positive
            [130, 130, 230, 230],  # IoU 0.32: dropped (between negative and part)
            [120, 100, 220, 200],  # IoU 0.67: positive
            [140, 100, 240, 200],  # IoU 0.43: part
            [0, 0, 50, 50],  # nothing: negative
            [300, 100, 400, 200],  # another face: dropped, not negative
        ],
        float,
    )
    assert label_boxes(cands, face, [other]).tolist() == [1, 1, -2, 1, -1, 0, -2]
    assert iou_matrix(cands[:2], np.array([face]))[:, 0] == pytest.approx([1.0, 8100 / 11900])


def test_a_face_in_profile_is_matched_by_its_square_so_candidates_over_it_are_positives():
    from train.detector.data import jittered, squared

    profile = (130.0, 100.0, 180.0, 200.0)  # half as wide as tall: a face turned aside
    square = (105.0, 100.0, 205.0, 200.0)  # the candidate MTCNN would draw over it
    assert squared([profile]).tolist() == [list(square)]
    assert iou_matrix(np.array([square]), np.array([profile]))[0, 0] == pytest.approx(0.5)  # never 0.65
    cands = np.array([square, [110, 105, 210, 205], [400, 100, 500, 200], [60, 100, 160, 200]], float)
    assert label_boxes(cands, profile).tolist() == [1, 1, 0, -2]  # IoU 1, 0.82, 0, 0.38 with the square
    near = np.array([[205, 100, 305, 200], [150, 100, 250, 200]], float)  # beside it; 0.25 over its box
    assert label_boxes(near, [], [profile]).tolist() == [0, -2]  # but 0.38 over its square: never negative
    rng = np.random.default_rng(0)
    assert (label_boxes(jittered(profile, 40, rng), profile) == 1).sum() >= 10  # jitter teaches it too


def test_a_pasted_face_gives_positives_parts_and_negatives_with_the_nets_inputs(shared):
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    img = cv2.imread(str(FACES / "obama.jpg"))
    face = FaceDetector(ORIGINAL).detect(img)[0].box
    rng = np.random.default_rng(1)
    frame, box, others = paste_face(img, face, (), 120.0, rng)
    assert box[3] - box[1] == pytest.approx(120.0)
    small, (sbox,) = shrink(frame, [box], 320)
    assert small.shape[:2] == (240, 320) and sbox[3] - sbox[1] == pytest.approx(60.0)
    nets = tuple(n().eval() for n in (PNet, RNet, ONet))
    with one_torch_thread():
        r = frame_samples(cv2.cvtColor(small, cv2.COLOR_BGR2RGB), sbox, [], nets, "rnet", rng)
        o = frame_samples(cv2.cvtColor(small, cv2.COLOR_BGR2RGB), sbox, [], nets, "onet", rng)
    assert r.inputs.shape[1:] == (3, 24, 24) and o.inputs.shape[1:] == (3, 48, 48)
    for s in (r, o):
        assert {0, 1} <= set(s.labels.tolist()) and len(s.regs) == len(s.labels)
        assert -1.01 <= s.inputs.min() and s.inputs.max() <= 1.01  # normalised as MTCNN feeds them
    assert r.marks is None and o.marks.shape == (len(o), 10)
    # box and landmark targets are the original nets' own outputs on the same crops (boxes stay facenet's)
    with torch.inference_mode():
        reg, marks, _ = nets[2](torch.from_numpy(o.inputs).float())
    assert o.regs == pytest.approx(reg.numpy(), abs=2e-3)
    assert o.marks == pytest.approx(marks.numpy(), abs=2e-3)
    # the original O-Net scores its positives as faces: the crops are the faces, not somewhere else
    with torch.inference_mode():
        probs = nets[2](torch.from_numpy(o.inputs[o.labels == 1]).float())[-1][:, 1]
    assert float(probs.median()) > 0.9


def test_scene_box_targets_take_each_face_candidate_to_its_face_and_leave_the_rest_the_nets(shared):
    """--scene-boxes: the box a positive or part is taught to regress to is its face's own box (here moved
    off the original nets' box, as a face turned aside is), by MTCNN's own box arithmetic; negatives keep
    the original nets' targets (their boxes are never used)."""
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
    from facenet_pytorch.models.utils.detect_face import bbreg

    from train.detector.data import face_offsets

    img = cv2.imread(str(FACES / "obama.jpg"))
    face = FaceDetector(ORIGINAL).detect(img)[0].box
    frame, box, _ = paste_face(img, face, (), 120.0, np.random.default_rng(1))
    small, (sbox,) = shrink(frame, [box], 320)
    w = sbox[2] - sbox[0]
    turned = (sbox[0] + 0.15 * w, sbox[1], sbox[2] + 0.1 * w, sbox[3])  # not where the original net puts it
    nets = tuple(n().eval() for n in (PNet, RNet, ONet))
    rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
    for stage in ("pnet", "rnet", "onet"):
        with one_torch_thread():
            own = frame_samples(rgb, turned, [], nets, stage, np.random.default_rng(5))
            taught = frame_samples(rgb, turned, [], nets, stage, np.random.default_rng(5), box_targets=True)
        assert np.array_equal(own.labels, taught.labels) and np.array_equal(own.inputs, taught.inputs)
        boxy, neg = taught.labels != 0, taught.labels == 0
        assert boxy.any() and neg.any()
        assert np.array_equal(own.regs[neg], taught.regs[neg])
        assert not np.allclose(own.regs[boxy], taught.regs[boxy], atol=0.02)
    # the offsets bring a box onto the face it overlaps most, as the detector applies them
    boxes = np.array([[10.0, 20.0, 50.0, 60.0], [100.0, 100.0, 130.0, 130.0]])
    faces = np.array([[98.0, 105.0, 128.0, 140.0], [12.0, 25.0, 45.0, 70.0]])
    moved = bbreg(torch.tensor(boxes), torch.tensor(face_offsets(boxes, faces, "onet"), dtype=torch.float64))
    assert moved.numpy() == pytest.approx(faces[::-1], abs=1e-3)
    regw = (boxes[:, 2] - boxes[:, 0])[:, None]  # P-Net's windows are regressed by their size (propose)
    assert boxes + face_offsets(boxes, faces, "pnet") * regw == pytest.approx(faces[::-1], abs=1e-3)


def test_a_scene_with_a_face_the_finder_misses_is_hard_and_cut_into_more_frames(shared, tmp_path):
    from dataclasses import replace

    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    from engines.faces import FIRST_DEMO_DETECTOR
    from train.detector.data import DetScene
    from train.detector.fit import FitDetectorOptions, make_samples, mark_hard

    img = cv2.imread(str(FACES / "obama.jpg"))
    face = FaceDetector(ORIGINAL).detect(img)[0].box
    frame, box, _ = paste_face(img, face, (), 120.0, np.random.default_rng(1))
    cv2.imwrite(str(tmp_path / "scene.png"), frame)
    wall = (0.0, 0.0, 90.0, 100.0) if box[0] > 200 else (540.0, 0.0, 630.0, 100.0)  # no face there
    easy = DetScene(str(tmp_path / "scene.png"), (box,), (box,))
    missed = DetScene(str(tmp_path / "scene.png"), (box,), (box, wall))
    small = DetScene(str(tmp_path / "scene.png"), (box,), (box, (wall[0], 0.0, wall[0] + 30, 35.0)))
    finder = FaceDetector(replace(FIRST_DEMO_DETECTOR, min_face_size=20))
    opts = FitDetectorOptions(frames_per_photo=1, scene_repeat=1, hard_repeat=3)
    with one_torch_thread():
        marked = mark_hard([(easy, "a"), (missed, "b"), (small, "c")], finder, opts, False)
    assert [(sc.hard, g) for sc, g in marked] == [(False, "a"), (True, "b"), (False, "c")]  # under 40 px: no
    nets = tuple(n().eval() for n in (PNet, RNet, ONet))
    with one_torch_thread():
        once = make_samples([marked[0][0]], nets, "onet", opts, 0, False)
        thrice = make_samples([marked[1][0]], nets, "onet", opts, 0, False)
        plain = make_samples([marked[1][0]], nets, "onet", replace(opts, hard_repeat=1), 0, False)
    assert len(plain) == len(once) and len(thrice) > 2 * len(once)  # the first frame alike, then two more


def test_p_net_samples_are_12_px_windows_with_its_hardest_and_random_negatives(shared):
    """P-Net scores every window of a frame: its samples are 12x12 crops, faces (jittered) and non-faces
    (its own highest-scored windows and random squares), box targets the original P-Net's own."""
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    img = cv2.imread(str(FACES / "obama.jpg"))
    face = FaceDetector(ORIGINAL).detect(img)[0].box
    rng = np.random.default_rng(2)
    frame, box, _ = paste_face(img, face, (), 100.0, rng)
    small, (sbox,) = shrink(frame, [box], 320)
    nets = tuple(n().eval() for n in (PNet, RNet, ONet))
    with one_torch_thread():
        p = frame_samples(
            cv2.cvtColor(small, cv2.COLOR_BGR2RGB), sbox, [], nets, "pnet", rng, max_negatives=16
        )
    assert p.inputs.shape[1:] == (3, 12, 12) and p.marks is None and p.regs.shape == (len(p), 4)
    assert (p.labels == 0).sum() == 16 and (p.labels == 1).any()
    with torch.inference_mode():
        reg, probs = nets[0](torch.from_numpy(p.inputs).float())
    assert p.regs == pytest.approx(reg.reshape(-1, 4).numpy(), abs=2e-3)
    faces, others = probs[:, 1, 0, 0][p.labels == 1], probs[:, 1, 0, 0][p.labels == 0]
    assert float(faces.median()) > float(others.median())  # the windows are where they say


def test_p_net_loss_weighs_faces_and_non_faces_alike():
    from facenet_pytorch.models.mtcnn import PNet

    net = PNet().eval()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(-1, 1, (6, 3, 12, 12)).astype(np.float32))
    labels = torch.tensor([1, 0, 0, 0, 0, -1])
    regs = torch.zeros(6, 4)
    with torch.no_grad():
        loss = float(stage_loss(net, "pnet", x, labels, regs, None))
        reg, probs = net(x)
        reg, probs = reg.reshape(6, 4), probs.reshape(6, 2)
        ce = -torch.log(probs[torch.arange(6), labels.clamp_min(0)])
        # one face: its own term; four non-faces: the hardest 70% (2) of theirs; the two halves averaged
        manual = (ce[0] + ce[1:5].topk(2).values.mean()) / 2 + 0.5 * (reg[[0, 5]] ** 2).sum(1).mean()
    assert loss == pytest.approx(float(manual), rel=1e-5)


def test_the_loss_ignores_parts_for_faceness_and_negatives_for_boxes():
    from facenet_pytorch.models.mtcnn import RNet

    net = RNet().eval()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(-1, 1, (4, 3, 24, 24)).astype(np.float32))
    labels = torch.tensor([1, 0, -1, 0])
    regs = torch.zeros(4, 4)

    def loss(r):
        with torch.no_grad():
            return float(stage_loss(net, "rnet", x, labels, r, None))

    base = loss(regs)
    regs2 = regs.clone()
    regs2[1] = 5.0  # a negative's box target: no part of the loss
    assert loss(regs2) == pytest.approx(base)
    regs3 = regs.clone()
    regs3[2] = 5.0  # a part's box target counts
    assert loss(regs3) > base + 1
    # by hand: the hardest 70% (2 of 3) of the faceness terms, plus half the mean squared box error
    with torch.no_grad():
        reg, probs = net(x)
        ce = -torch.log(probs[[0, 1, 3], labels[[0, 1, 3]]])
        manual = ce.topk(2).values.mean() + 0.5 * (reg[[0, 2]] ** 2).sum(1).mean()
    assert base == pytest.approx(float(manual), rel=1e-5)


def test_a_close_up_takes_its_width_as_the_face_and_a_blank_photo_nothing(shared):
    img = cv2.imread(str(FACES / "obama.jpg"))
    face = FaceDetector(ORIGINAL).detect(img)[0].box
    x1, y1, x2, y2 = (int(v) for v in face)
    close = img[y1 + (y2 - y1) // 5 : y2, x1:x2]  # from the eyes down, as the masked close-ups are cut
    detector = FaceDetector(ORIGINAL)
    box = close_up_box(close, detector)
    h, w = close.shape[:2]
    assert (
        box is not None and box[0] == 0 and box[2] == w and box[3] - box[1] == pytest.approx(min(h, 1.2 * w))
    )
    assert close_up_box(np.full((200, 160, 3), 90, np.uint8), detector) is None


def test_validation_groups_are_whole():
    groups = [f"g{i // 3}" for i in range(60)]
    val = split_groups(groups, 0.2, 0)
    for g in set(groups):
        assert len({bool(v) for v, gg in zip(val, groups) if gg == g}) == 1
    assert 0.1 < val.mean() < 0.3


def test_samples_concat_keeps_landmarks_only_when_all_have_them():
    a = Samples(np.zeros((2, 3, 4, 4), np.float16), np.array([1, 0]), np.zeros((2, 4), np.float32))
    b = Samples(np.ones((1, 3, 4, 4), np.float16), np.array([-1]), np.ones((1, 4), np.float32))
    c = Samples.concat([a, b])
    assert len(c) == 3 and c.labels.tolist() == [1, 0, -1] and c.marks is None


@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is missing")
def test_fit_detector_writes_nets_the_detector_loads(tmp_path, shared, capsys):
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    data = tmp_path / "set"
    for kind in ("with_mask", "without_mask"):
        (data / kind).mkdir(parents=True)
        for p in sorted((REAL / kind).glob("*.jpg"))[:5]:
            shutil.copy(p, data / kind / p.name)
    cache, out = tmp_path / "cache", tmp_path / "nets" / "mtcnn.pt"
    with one_torch_thread():
        assert _main(["import", "--data", str(data), "--out", str(cache), "--name", "real"]) == 0
        code = _main(
            [
                "fit-detector",
                "--cache",
                str(cache),
                "--import",
                "real",
                "--out",
                str(out),
                "--frames",
                "1",
                "--epochs",
                "1",
                "0",
                "1",
                "--val-list",
                str(tmp_path / "val.csv"),
            ]
        )
    assert code == 0 and out.is_file() and not list(out.parent.glob(".*"))  # written whole, no temp left
    printed = capsys.readouterr().out
    assert "pnet on validation samples" in printed and "onet on validation samples" in printed
    assert "rnet on validation samples" not in printed
    pnet, rnet, onet = load_detector_weights(out)
    assert any(not torch.equal(v, PNet().state_dict()[k]) for k, v in pnet.items())  # P-Net taught
    assert all(torch.equal(v, RNet().state_dict()[k]) for k, v in rnet.items())  # 0 epochs: R-Net kept
    assert any(not torch.equal(v, ONet().state_dict()[k]) for k, v in onet.items())  # O-Net taught
    cfg = Config(detector=DetectorConfig(weights="nets/mtcnn.pt"), base_dir=str(tmp_path))
    faces = create_detector(cfg).detect(cv2.imread(str(FACES / "obama.jpg")))
    assert faces and faces[0].score > 0.5
    # the validation photos as an evaluate-frames list: as many as the file says, each a photo of the set
    rows = list_rows(tmp_path / "val.csv", "/")
    meta = torch.load(out, weights_only=True)["meta"]
    assert len(rows) == meta["val_photos"] >= 1
    assert all(path.parent.parent == data.resolve() and path.is_file() for path, _, _, _ in rows)
    assert all(m == {"with_mask": 0, "without_mask": 2}[path.parent.name] for path, _, m, _ in rows)


def test_a_detector_file_that_is_missing_or_foreign_is_one_error_naming_it(tmp_path):
    with pytest.raises(UserError, match="nope.pt does not exist"):
        FaceDetector(DetectorConfig(weights=str(tmp_path / "nope.pt"))).detect(
            np.zeros((64, 64, 3), np.uint8)
        )
    torch.save({"state_dict": {}}, tmp_path / "model.pt")
    with pytest.raises(UserError, match="model.pt is not a `mask-train fit-detector` file"):
        load_detector_weights(tmp_path / "model.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="junk.pt is not a detector file"):
        load_detector_weights(tmp_path / "junk.pt")


def test_the_config_runs_the_bundled_masked_face_detector_with_its_provenance():
    from tests.conftest import REPO
    from train.config import load_config

    cfg = load_config()
    path = cfg.resolve(cfg.detector.weights)
    assert path == REPO / "samples" / "detector_masked.pt"
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    for net, original in zip(load_detector_weights(path), (PNet, RNet, ONet)):  # all three taught
        assert any(not torch.equal(v, original().state_dict()[k]) for k, v in net.items())
    meta = torch.load(path, map_location="cpu", weights_only=True)["meta"]
    assert meta["sources"] == ["real", "scenes"] and meta["train_photos"] > 2000 and meta["backgrounds"] == 40
    assert meta["scenes"] > 250 and meta["init"] == "detector_round3.pt"  # the fourth round: the scenes
    assert meta["options"]["scene_look"] is True  # ... each frame as another camera took it
    assert meta["options"]["scene_boxes"] is True and meta["options"]["hard_repeat"] == 3  # turned faces


def test_a_config_elsewhere_that_leaves_weights_alone_runs_the_bundled_detector(tmp_path):
    from tests.conftest import REPO
    from train.config import load_config

    (tmp_path / "config.toml").write_text('[engine]\npath = "model.onnx"\n')
    d = create_detector(load_config(tmp_path / "config.toml"))
    assert d.cfg.weights == str(REPO / "samples" / "detector_masked.pt")
    (tmp_path / "config.toml").write_text('[detector]\nweights = "mine.pt"\n')
    d = create_detector(load_config(tmp_path / "config.toml"))  # a file of its own: named where it is
    assert d.cfg.weights == str(tmp_path / "mine.pt")


@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is missing")
def test_a_voc_import_gives_each_annotated_box_with_its_image(tmp_path):
    from tests.train.test_import import _voc
    from train.detector.fit import import_photos

    root = tmp_path / "voc"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    scene = np.full((300, 400, 3), 90, np.uint8)
    for x, kind in ((20, "with_mask"), (240, "without_mask")):
        photo = sorted((REAL / kind).glob("*.jpg"))[30]
        scene[50:200, x : x + 120] = cv2.resize(cv2.imread(str(photo)), (120, 150))
    cv2.imwrite(str(root / "images" / "s0.png"), scene)
    boxes = [("with_mask", (30, 70, 130, 190)), ("without_mask", (250, 80, 350, 200))]
    (root / "annotations" / "s0.xml").write_text(_voc("s0", "s0.png", boxes))
    with one_torch_thread():
        assert _main(["import", "--data", str(root), "--out", str(tmp_path / "cache"), "--name", "voc"]) == 0
    rows = sorted(import_photos(tmp_path / "cache", "voc"), key=lambda r: r[3])
    assert [(Path(p).name, mask) for p, _, _, mask, _ in rows] == [("s0.png", 0), ("s0.png", 2)]
    # each face's box is where the monitor's detector found it (or the annotated box, mapped)
    for (_, box, how, _, _), annotated in zip(rows, [b for _, b in boxes]):
        assert how in ("voc_detected", "voc_mapped") and iou(box, annotated) > 0.5


def test_the_validation_list_names_each_image_once_with_a_known_state(tmp_path):
    from train.detector.data import DetPhoto
    from train.detector.fit import write_val_list

    box = (0.0, 0.0, 10.0, 10.0)
    scene, bare, unknown = tmp_path / "s0.png", tmp_path / "b.jpg", tmp_path / "u.jpg"
    photos = [  # a VOC image's two faces, a bare face, a face of no known state
        (DetPhoto(str(scene), box, mask=2), "s0"),
        (DetPhoto(str(scene), box, mask=0), "s0"),
        (DetPhoto(str(bare), box, mask=2), "b"),
        (DetPhoto(str(unknown), box, mask=-1), "u"),
    ]
    write_val_list(tmp_path / "v.csv", photos)
    rows = list_rows(tmp_path / "v.csv", "/elsewhere")  # absolute paths: the root does not matter
    assert [(path, m, g) for path, _, m, g in rows] == [(scene, 2, "s0"), (bare, 2, "b")]


def test_a_bad_finder_or_no_epochs_is_one_error_naming_the_flag(tmp_path):
    (tmp_path / "notes.pt").write_text("not a torch file")
    for name, says in (("nope.pt", "does not exist"), ("notes.pt", "is not a detector file")):
        args = ["fit-detector", "--import", "real", "--out", str(tmp_path / "d.pt"), "--finder"]
        with pytest.raises(UserError) as info:
            _main([*args, str(tmp_path / name)])
        assert str(info.value).startswith(f"--finder: {tmp_path / name} {says}")
    with pytest.raises(UserError, match="--epochs 0 0 0 teaches no net"):
        _main(["fit-detector", "--import", "real", "--out", str(tmp_path / "d.pt"), "--epochs", *"000"])
    assert not (tmp_path / "d.pt").exists()
    # an output under a file is refused before any work (it failed with a traceback after the training)
    blocked = str(tmp_path / "notes.pt" / "x")
    for extra, flag in (
        (["--out", blocked], "--out"),
        (["--out", str(tmp_path / "d.pt"), "--val-list", blocked], "--val-list"),
    ):
        with pytest.raises(UserError) as info:
            _main(["fit-detector", "--cache", str(tmp_path / "no-cache"), "--import", "real", *extra])
        assert str(info.value).startswith(f"{flag} {blocked}")


def test_a_candidate_over_any_of_a_scenes_faces_is_a_face_and_small_ones_are_never_negatives():
    faces = [(100.0, 100.0, 200.0, 200.0), (300.0, 100.0, 400.0, 200.0)]
    tiny = (500.0, 100.0, 510.0, 110.0)  # too small to teach: only kept from the negatives
    cands = np.array(
        [[100, 100, 200, 200], [300, 100, 400, 200], [310, 100, 410, 200], [500, 100, 510, 110]]
        + [[0, 0, 50, 50]],
        float,
    )
    assert label_boxes(cands, faces, [tiny]).tolist() == [1, 1, 1, -2, 0]
    assert label_boxes(cands, faces[0], [tiny]).tolist() == [1, 0, 0, -2, 0]  # one box as before
    assert label_boxes(cands, [], [tiny]).tolist() == [0, 0, 0, -2, 0]  # a frame of no face to teach


def test_a_scene_frame_keeps_its_faces_where_they_are_and_cut_ones_out_of_the_negatives():
    from train.detector.data import FRAME_H, FRAME_W, DetScene, scene_frame

    img = np.zeros((600, 800, 3), np.uint8)
    faces = ((100.0, 100.0, 160.0, 170.0), (700.0, 500.0, 790.0, 595.0))
    for x1, y1, x2, y2 in faces:
        img[int(y1) : int(y2), int(x1) : int(x2)] = 255
    annotated = (*faces, (400.0, 300.0, 408.0, 308.0))
    scene = DetScene("s.png", faces, annotated)
    seen_cut = False
    for seed in range(20):
        frame, taught, others = scene_frame(img, scene, np.random.default_rng(seed))
        assert frame.shape[0] <= FRAME_H and 0.8 * FRAME_W - 1 <= frame.shape[1] <= FRAME_W
        for x1, y1, x2, y2 in taught:  # each taught face is the white patch, wholly in the frame
            assert 0 <= x1 < x2 <= frame.shape[1] and 0 <= y1 < y2 <= frame.shape[0]
            inner = frame[int(y1) + 2 : int(y2) - 2, int(x1) + 2 : int(x2) - 2]
            assert inner.size and inner.min() > 200
        assert set(taught) <= set(others)  # every face (and the tiny annotated one) is kept from negatives
        seen_cut |= len(taught) < 2 and len(others) >= 2
    assert seen_cut  # at 0.8-2x the width some windows cut a face: it is not taught, only not a negative


def test_a_scene_frame_looks_as_another_camera_took_it_with_its_boxes_moved_along():
    from train.detector.data import camera_look

    frame = np.full((480, 640, 3), 60, np.uint8)
    face, other = (100.0, 120.0, 180.0, 220.0), (500.0, 40.0, 530.0, 80.0)
    frame[120:220, 100:180] = 230  # the face: a bright patch left of the centre
    mirrored = changed = 0
    for seed in range(40):
        out, faces, others = camera_look(frame, [face], [face, other], np.random.default_rng(seed))
        assert out.shape == frame.shape and out.dtype == np.uint8
        (x1, y1, x2, y2), moved_other = faces[0], others[1]
        assert (y1, y2) == (face[1], face[3]) and x2 - x1 == face[2] - face[0]
        assert others[0] == faces[0]  # a face and its never-negative copy move together
        flipped = x1 != face[0]
        mirrored += flipped
        if flipped:
            assert (x1, x2) == (640 - face[2], 640 - face[0])
            assert moved_other[:2] == (640 - other[2], other[1])
        inner = out[int(y1) + 15 : int(y2) - 15, int(x1) + 15 : int(x2) - 15].mean()
        beside = out[int(y1) + 15 : int(y2) - 15, int(x2) + 20 : int(x2) + 60].mean()
        assert inner > beside + 40  # the face is still where its box says, whatever else changed
        changed += not np.array_equal(out[:, ::-1] if flipped else out, frame)
    assert 10 <= mirrored <= 30 and changed >= 30  # about half mirrored, nearly all looking otherwise
    again = camera_look(frame, [face], [], np.random.default_rng(3))[0]
    assert np.array_equal(again, camera_look(frame, [face], [], np.random.default_rng(3))[0])


@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is missing")
def test_a_voc_import_is_taught_as_whole_scenes_and_its_held_out_scenes_never(tmp_path):
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    from tests.train.test_import import _voc
    from train.detector.data import DetScene
    from train.detector.fit import FitDetectorOptions, import_scenes, make_samples

    root = tmp_path / "voc"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    boxes = [("with_mask", (30, 70, 130, 190)), ("without_mask", (250, 80, 350, 200))]
    rng = np.random.default_rng(0)
    for i in range(8):  # eight different scenes (other people, other streets): a share of them held out
        scene = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8).repeat(10, 0).repeat(10, 1)
        for x, kind in ((20, "with_mask"), (240, "without_mask")):
            photo = sorted((REAL / kind).glob("*.jpg"))[30 + i]
            scene[50:200, x : x + 120] = cv2.resize(cv2.imread(str(photo)), (120, 150))
        cv2.imwrite(str(root / "images" / f"s{i}.png"), scene)
        (root / "annotations" / f"s{i}.xml").write_text(_voc(f"s{i}", f"s{i}.png", boxes))
    args = ["import", "--data", str(root), "--out", str(tmp_path / "cache"), "--name", "voc"]
    args += ["--holdout", "0.5"]
    with one_torch_thread():
        assert _main(args) == 0
    found = import_scenes(tmp_path / "cache", "voc")
    held = {r["file"] for r in csv.DictReader((tmp_path / "cache/imports/voc/holdout.csv").open())}
    assert found and held
    assert not {Path(sc.path).name for sc, _ in found} & {Path(f).name for f in held}
    for sc, group in found:
        assert isinstance(sc, DetScene) and group.startswith("voc:")
        assert len(sc.others) == 2 and 1 <= len(sc.faces) <= 2  # the annotations; the faces the import kept
    assert import_scenes(tmp_path / "cache", "voc")[0][0].close_up is False
    # the validation scenes as an evaluate-scenes list: every annotated face with its state
    from train.detector.fit import write_val_scenes
    from train.evaluation.scenes import read_scenes

    write_val_scenes(tmp_path / "val.csv", [sc for sc, _ in found[:2]])
    (tmp_path / "any").mkdir()
    listed = read_scenes(tmp_path / "any", tmp_path / "val.csv")  # absolute paths: any --data
    assert [Path(sc.path).name for sc in listed] == [Path(sc.path).name for sc, _ in found[:2]]
    for sc in listed:
        assert [(f.mask, f.box) for f in sc.faces] == [(0, (30, 70, 130, 190)), (2, (250, 80, 350, 200))]
    nets = tuple(n().eval() for n in (PNet, RNet, ONet))
    opts = FitDetectorOptions(frames_per_photo=1, scene_repeat=2)
    with one_torch_thread():
        s = make_samples([sc for sc, _ in found[:2]], nets, "onet", opts, 0, False)
    assert (s.labels == 1).sum() >= 2 and (s.labels == 0).any()


@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is missing")
def test_validation_scenes_need_a_voc_import(tmp_path):
    data = tmp_path / "photos"
    for kind in ("with_mask", "without_mask"):
        (data / kind).mkdir(parents=True)
        for photo in sorted((REAL / kind).glob("*.jpg"))[:2]:
            shutil.copy(photo, data / kind / photo.name)
    cache = str(tmp_path / "cache")
    with one_torch_thread():
        assert _main(["import", "--data", str(data), "--out", cache, "--name", "mine"]) == 0
    args = ["fit-detector", "--cache", cache, "--import", "mine", "--out", str(tmp_path / "d.pt")]
    with pytest.raises(UserError, match=r"--val-scenes: none of the imports \['mine'\] is a PASCAL VOC"):
        _main([*args, "--val-scenes", str(tmp_path / "v.csv")])
    assert not (tmp_path / "d.pt").exists() and not (tmp_path / "v.csv").exists()
