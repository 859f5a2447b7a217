"""mask-train evaluate-frames: held-out photos pasted into 640x480 frames, through the monitor's detection
(engines.faces.detect_shrunk), the model file's crop and the classifier; the numbers are printed."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import SHARED, one_torch_thread
from train.cli import _main
from train.evaluation.frames import FRAME_H, FRAME_W, Photo, Tally, match, paste, scores

REAL = SHARED / "datasets" / "face-mask-real"


def test_paste_puts_the_face_in_the_frame_at_the_asked_height():
    rng = np.random.default_rng(0)
    img = np.full((300, 200, 3), 200, np.uint8)
    for height in (60.0, 130.0, 200.0):
        p = paste(img, (50.0, 60.0, 150.0, 180.0), height, rng)
        x1, y1, x2, y2 = p.box
        assert p.frame.shape == (FRAME_H, FRAME_W, 3)
        assert y2 - y1 == pytest.approx(height, rel=1e-6)
        assert 0 <= x1 < x2 <= FRAME_W and 0 <= y1 < y2 <= FRAME_H
        assert (
            p.frame[int(y1) + 2 : int(y2) - 2, int(x1) + 2 : int(x2) - 2].min() >= 195
        )  # the photo is there


def test_scores_count_a_missed_face_as_not_flagged():
    t = Tally()
    t.faces[:] = [4, 2, 4]
    t.found[:] = [3, 2, 4]
    t.found_second[:] = [4, 2, 4]
    t.confident[:] = [2, 2, 4]
    t.faces_box_known[:] = [2, 2, 4]  # two masked photos pasted whole (no face found in them), both missed
    t.found_box_known[:] = [2, 2, 4]
    t.predicted[0] = [3, 0, 1, 0]  # masked: 3 worn, 1 read as no mask
    t.predicted[1] = [0, 2, 0, 0]
    t.predicted[2] = [1, 0, 2, 1]  # bare: 2 flagged, one read as worn, one never found
    t.frames, t.detect_seconds = 10, 0.5
    s = scores(t)
    assert s["masked_found"] == 0.75 and s["masked_found_second_look"] == 1.0
    assert s["masked_found_confident"] == 0.5 and s["masked_found_box_known"] == 1.0
    assert s["masked_not_flagged"] == 0.75 and s["bare_flagged"] == 0.5 and s["incorrect_recall"] == 1.0
    assert s["flag_right"] == pytest.approx((3 + 2) / 8) and s["detect_fps"] == 20.0


def test_a_photo_without_a_face_found_is_pasted_whole_and_marked(tmp_path, shared):
    import cv2

    from engines.faces import FaceDetector
    from tests.conftest import FACES
    from train.evaluation.frames import REFERENCE_DETECTOR, prepare_frames

    face, blank = tmp_path / "face.png", tmp_path / "blank.png"
    cv2.imwrite(str(face), cv2.imread(str(FACES / "astronaut.png")))
    cv2.imwrite(str(blank), np.full((256, 200, 3), 90, np.uint8))
    frames = prepare_frames(
        [Photo(face, 2), Photo(blank, 0)], FaceDetector(REFERENCE_DETECTOR), seed=0, show=False
    )
    (_, with_face), (_, whole) = frames
    assert with_face.box_known and not whole.box_known


def test_match_takes_the_detection_of_the_pasted_face():
    class F:
        def __init__(self, box):
            self.box = box
            self.center = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)

    far, near = F((0, 0, 20, 20)), F((105, 105, 190, 200))
    assert match([far, near], (100, 100, 200, 200)) is near
    assert match([far], (100, 100, 200, 200)) is None
    # the reference's box can be one eye of a close-up: the whole face's detection holds its centre
    eye, face = (100, 160, 160, 230), F((90, 100, 330, 420))
    assert match([far, face], eye) is face
    beside = F((170, 100, 330, 420))  # neither centre in the other box: another face
    assert match([beside], eye) is None


@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is missing")
def test_the_command_compares_models_on_the_same_frames(tmp_path, capsys, tiny_checkpoint):
    rows = ["file,mask,gender,age,group,box"]
    for kind, mask in (("with_mask", "wear"), ("without_mask", "not_wear")):
        rows += [f"{kind}/{p.name},{mask},,,," for p in sorted((REAL / kind).glob("*.jpg"))[60:63]]
    (tmp_path / "holdout.csv").write_text("\n".join(rows) + "\n")
    with one_torch_thread():
        code = _main(
            [
                "evaluate-frames",
                "--checkpoint",
                str(tiny_checkpoint),
                str(tiny_checkpoint),
                "--list",
                str(tmp_path / "holdout.csv"),
                "--root",
                str(REAL),
                "--threads",
                "1",
                "--baseline-detection",
            ]
        )
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0 and out.count("tiny.pt: faces pasted into 640x480 frames") == 2
    assert out.count("masked faces found (first look)") == 2 and "flag-or-not right" in out
    assert "photos whose face MTCNN found (" in out  # found among the photos pasted at their face height
    assert "frames/s (first look)" in out
    # the first demo's detection path on the same frames, its yield and cost beside this one's
    assert "baseline detection (MTCNN [0.5, 0.6, 0.6], min face 40 px" in out and "x the baseline" in out
    first, second = out.split("flag-or-not right")[1:3]
    assert first.split()[1] == second.split()[1]  # the same model on the same frames: the same numbers
    assert Photo(REAL, 0).mask == 0


def test_a_scene_whose_face_is_small_is_pasted_at_a_face_height(tmp_path, shared):
    """The import's MTCNN settings find no face under 40 px: such a scene's face is found down to 12 px, so
    that it lands in the frame 60-200 px tall like every other face, not as a few pixels of a whole photo."""
    import cv2

    from engines.faces import FaceDetector
    from tests.conftest import FACES
    from train.data.importer import find_box
    from train.evaluation.frames import REFERENCE_DETECTOR, prepare_frames

    img = cv2.imread(str(FACES / "obama.jpg"))
    reference = FaceDetector(REFERENCE_DETECTOR)
    x1, y1, x2, y2 = reference.detect(img)[0].box
    s = 16 / (y2 - y1)  # the face 16 px tall in a 256 x 256 scene
    scene = np.full((256, 256, 3), 170, np.uint8)
    small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)[:200, :200]
    scene[20 : 20 + small.shape[0], 30 : 30 + small.shape[1]] = small
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), scene)
    assert find_box(scene, reference)[2] == "whole_image"
    ((_, pasted),) = prepare_frames([Photo(path, 0)], reference, seed=0, show=False)
    assert pasted.box_known and 60 <= pasted.box[3] - pasted.box[1] <= 200


def test_a_thumbnail_scene_is_looked_at_enlarged_and_its_face_given_in_its_own_pixels(shared):
    """100x100 scenes (common in downloaded sets) hold faces of a few pixels, under MTCNN's 12: the scene
    is looked at again enlarged, and the face's box comes back in the thumbnail's coordinates."""
    import cv2

    from engines.faces import FaceDetector, iou
    from tests.conftest import FACES
    from train.data.importer import find_small_face
    from train.evaluation.frames import REFERENCE_DETECTOR

    img = cv2.imread(str(FACES / "obama.jpg"))
    reference = FaceDetector(REFERENCE_DETECTOR)
    x1, y1, x2, y2 = reference.detect(img)[0].box
    s = 7 / (y2 - y1)  # the face 7 px tall in a 100 x 100 scene
    small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)[:80, :80]
    scene = np.full((100, 100, 3), 170, np.uint8)
    scene[10 : 10 + small.shape[0], 15 : 15 + small.shape[1]] = small
    assert not [f for f in reference.detect(scene, min_face_size=12) if f.score >= 0.9]  # too small as it is
    box = find_small_face(scene, reference)
    truth = (x1 * s + 15, y1 * s + 10, x2 * s + 15, y2 * s + 10)
    assert box is not None and iou(box, truth) > 0.4
    assert find_small_face(np.full((100, 100, 3), 170, np.uint8), reference) is None


def test_a_list_of_which_no_photo_can_be_read_is_one_error_naming_it(tmp_path, tiny_checkpoint):
    from engines.errors import UserError

    (tmp_path / "x.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "bad.jpg").write_bytes(b"")
    (tmp_path / "l.csv").write_text("file,mask\nbad.jpg,not_wear\nx.jpg,wear\n")
    args = ["evaluate-frames", "--checkpoint", str(tiny_checkpoint), "--list", str(tmp_path / "l.csv")]
    with pytest.raises(UserError, match=r"x\.jpg: not an image \(no photo of the list could be read\)"):
        _main([*args, "--root", str(tmp_path), "--threads", "1"])
