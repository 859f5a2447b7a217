"""Shared fixtures. Real photos and videos come from ../shared/assets (never copied into the repo)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MASK_MONITOR_SHARED", REPO.parent / "shared")).resolve()
FACES = SHARED / "assets" / "faces"
MASKS = SHARED / "assets" / "masks"
VIDEOS = SHARED / "assets" / "video"

# Offline ImageNet weights (torchvision's own file) and no network calls from albumentations.
os.environ.setdefault("TORCH_HOME", str(SHARED / "weights" / "torch-hub"))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest  # noqa: E402

from tests.helpers import make_checkpoint  # noqa: E402


def pytest_report_header(config):
    return f"shared assets: {SHARED} ({'found' if FACES.is_dir() else 'MISSING'})"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not FACES.is_dir():
        pytest.fail(f"test assets not found at {SHARED}; set MASK_MONITOR_SHARED")
    return SHARED


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-weight mobilenet_v2 checkpoint with a small input, saved as training saves it."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", head="single")


@pytest.fixture(scope="session")
def tiny_multi_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_multi.pt", head="multi")


# --- training tests: one small competition-layout data set and its prepared cache per session ---------------


@pytest.fixture(scope="session")
def competition_data(tmp_path_factory, shared) -> Path:
    """A few people in the competition layout, with the faults prepare must survive (tests/datagen.py)."""
    from tests.datagen import make_dataset

    with one_torch_thread():
        return make_dataset(tmp_path_factory.mktemp("competition") / "data")


@pytest.fixture(scope="session")
def prepared(competition_data, tmp_path_factory):
    """(data folder, cache folder, report of the first `prepare`) with the default crop and detector."""
    from engines.config import Config
    from train.data.prepare import prepare

    cache = tmp_path_factory.mktemp("competition") / "cache"
    with one_torch_thread():
        report = prepare(competition_data, cache, Config(), show=False)
    return competition_data, cache, report


@contextlib.contextmanager
def one_torch_thread():
    """On a 2-core machine shared with other jobs, torch's thread pool spins against them: one thread is
    several times faster there (MTCNN, small training steps). Speed only; nothing asserts it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
