import cv2
import numpy as np
import pytest
import torch
from torch.nn.functional import interpolate

from engines.config import DetectorConfig
from engines.faces import FaceDetector
from engines.mtcnn import _area, _windows, box_crops, detect_faces, pyramid_scales
from tests.conftest import FACES


@pytest.fixture(scope="module")
def nets():
    return FaceDetector(DetectorConfig())._load()


def _torch_area(img: np.ndarray, y0: int, y1: int, x0: int, x1: int, size: tuple[int, int]) -> np.ndarray:
    """facenet-pytorch's resize of a region: torch 'area' interpolation."""
    t = torch.from_numpy(img[y0:y1, x0:x1].astype(np.float32)).permute(2, 0, 1)[None]
    return interpolate(t, size=size, mode="area")[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize(
    "region,size",
    [
        ((0, 240, 0, 320), (145, 193)),  # a pyramid level (shrink by 0.6)
        ((10, 107, 33, 130), (24, 24)),  # a box shrunk to R-Net's input
        ((50, 66, 70, 86), (48, 48)),  # a 16-px box enlarged to O-Net's input
        ((0, 30, 300, 320), (24, 24)),  # a box clipped at the edge: not square
    ],
)
def test_window_means_equal_torch_area_interpolation(region, size):
    img = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    integral = cv2.integral(img, sdepth=cv2.CV_64F)[None]
    y0, y1, x0, x1 = region
    rows = _windows(np.array([y0]), np.array([y1 - y0]), size[0])
    cols = _windows(np.array([x0]), np.array([x1 - x0]), size[1])
    ours = _area(integral, np.array([0]), rows, cols)[0]
    assert ours.shape == (*size, 3)
    assert np.abs(ours - _torch_area(img, y0, y1, x0, x1, size)).max() < 1e-3


def _canvas(shared):
    a = cv2.resize(cv2.imread(str(FACES / "astronaut.png")), (200, 200))
    b = cv2.resize(cv2.imread(str(FACES / "obama2.jpg")), (160, 306))[40:240]
    canvas = np.full((240, 420, 3), 120, np.uint8)
    canvas[20:220, 10:210] = a
    canvas[20:220, 240:400] = b
    return canvas


def test_same_faces_as_facenet_pytorch(shared, nets):
    """The same boxes, scores and landmarks as facenet-pytorch's detect_face, on a batch of two frames."""
    from facenet_pytorch.models.utils.detect_face import detect_face

    (pnet, rnet, onet), device = nets
    canvas = cv2.cvtColor(_canvas(shared), cv2.COLOR_BGR2RGB)
    batch = np.stack([canvas, canvas[:, ::-1].copy()])
    th = [0.4, 0.6, 0.4]
    with torch.inference_mode():
        want_b, want_p = detect_face(batch, 20, pnet, rnet, onet, th, 0.709, device)
        got_b, got_p = detect_faces(batch, 20, (pnet, rnet, onet), th, 0.709, device)
        # the GPU's way (pyramid levels shrunk by torch on the device), tried here on the CPU
        dev_b, dev_p = detect_faces(batch, 20, (pnet, rnet, onet), th, 0.709, device, torch_pyramid=True)
    assert [len(b) for b in got_b] == [2, 2]
    for gb, db, gp, dp in zip(got_b, dev_b, got_p, dev_p):
        assert np.allclose(gb, db, atol=1e-2) and np.allclose(gp, dp, atol=1e-2)
    for gb, gp, wb, wp in zip(got_b, got_p, want_b, want_p):
        wb, wp = np.asarray(wb, np.float32), np.asarray(wp, np.float32)  # facenet-pytorch: object arrays
        order_g, order_w = np.argsort(gb[:, 0]), np.argsort(wb[:, 0])
        assert np.allclose(gb[order_g], wb[order_w], atol=1e-2)
        assert np.allclose(gp[order_g], wp[order_w], atol=1e-2)


def test_no_scale_fits_and_boxes_outside_the_image(nets):
    (pnet, rnet, onet), device = nets
    tiny = np.zeros((1, 15, 15, 3), np.uint8)
    assert pyramid_scales(15, 15, 20, 0.709) == []
    boxes, points = detect_faces(tiny, 20, (pnet, rnet, onet), [0.4, 0.6, 0.4], 0.709, device)
    assert boxes[0].shape == (0, 5) and points[0].shape == (0, 5, 2)
    # a candidate wholly right of the image is dropped instead of failing, the other one is kept
    integral = cv2.integral(np.zeros((40, 40, 3), np.uint8), sdepth=cv2.CV_64F)[None]
    cands = torch.tensor([[5.0, 5.0, 25.0, 25.0, 0.9], [60.0, 5.0, 80.0, 25.0, 0.9]])
    kept, inds, crops, inside = box_crops(integral, torch.zeros(2, dtype=torch.long), cands, 24, device)
    assert kept[:, :4].tolist() == [[5.0, 5.0, 25.0, 25.0]] and crops.shape == (1, 3, 24, 24)
    assert inside.tolist() == [True, False]
