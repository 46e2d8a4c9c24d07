"""Files the app reads and writes: example photos, the bundled sample dataset, per-run outputs.

The examples are public-domain photographs that ship inside scikit-image
(``skimage/data``); nothing is copied into the repository. The sample dataset
is an ImageNet-layout folder (``<synset>/<file>``) made from the same photos at
run time, so the batch tab works offline.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
import weakref
from pathlib import Path

__all__ = [
    "EXAMPLE_PHOTOS",
    "example_dir",
    "example_paths",
    "RunFiles",
    "DATA_ROOT_ENV",
    "data_root",
    "data_folders",
    "resolve_data_folder",
    "HUB_SUBSETS",
    "GATED_SUBSETS",
    "hub_subsets",
    "exit_on_signals",
]

EXAMPLE_PHOTOS = {
    # file in skimage/data -> (ImageNet synset, class name) of what it shows
    "chelsea.png": ("n02123159", "tiger cat"),
    "coffee.png": ("n07920052", "espresso"),
    "rocket.jpg": ("n03773504", "missile"),
    "camera.png": ("n04485082", "tripod"),
    "motorcycle_left.png": ("n03785016", "moped"),
}

DATA_ROOT_ENV = "HAC_DATA_ROOT"
"""Environment variable naming the one folder whose ImageNet-layout subfolders the batch tab may read."""


HUB_SUBSETS = {
    # dropdown label -> the Hub dataset it streams (hac.evaluation.datasets.HubSource)
    "Imagenette validation (Hub, 3,925 images)": "hf://datasets/frgfm/imagenette/320px?split=validation",
    "ImageNet-1k validation (Hub, 50,000 images, gated)": "hf://datasets/ILSVRC/imagenet-1k?split=validation",
}
GATED_SUBSETS = ("ImageNet-1k validation (Hub, 50,000 images, gated)",)
"""Offered only where a Hub token is set (``hf auth login`` or ``HF_TOKEN``); access still needs the terms accepted."""


def hub_subsets() -> list[str]:
    """The Hub subsets the batch tab offers: Imagenette, and ImageNet-1k where a token is set."""
    from huggingface_hub import get_token

    has_token = get_token() is not None
    return [label for label in HUB_SUBSETS if has_token or label not in GATED_SUBSETS]


def example_dir() -> Path:
    """``skimage/data``, where the example photographs live."""
    import skimage.data

    return Path(skimage.data.__file__).resolve().parent


def example_paths() -> list[Path]:
    """The example photographs that exist in the installed scikit-image."""
    folder = example_dir()
    return [folder / name for name in EXAMPLE_PHOTOS if (folder / name).is_file()]


def data_root() -> Path | None:
    """``$HAC_DATA_ROOT`` resolved, or ``None`` when unset or not a folder."""
    value = os.environ.get(DATA_ROOT_ENV, "").strip()
    if not value:
        return None
    root = Path(value).expanduser().resolve()
    return root if root.is_dir() else None


def data_folders() -> list[str]:
    """Names of the subfolders of ``$HAC_DATA_ROOT`` (each should be an ImageNet-layout folder)."""
    root = data_root()
    if root is None:
        return []
    return sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))


def resolve_data_folder(name: str) -> Path:
    """The folder ``name`` under ``$HAC_DATA_ROOT``; never anything outside it.

    Raises:
        ValueError: no root is configured, or ``name`` leaves the root.
        FileNotFoundError: ``name`` is not a folder under the root.
    """
    root = data_root()
    if root is None:
        raise ValueError(f"no data folder is configured: set {DATA_ROOT_ENV} to a folder of ImageNet-layout datasets")
    folder = (root / name).resolve()
    if not folder.is_relative_to(root) or folder == root:
        raise ValueError(f"{name!r} is not a dataset folder under {DATA_ROOT_ENV}")
    if not folder.is_dir():
        raise FileNotFoundError(f"no dataset folder {name!r} under {DATA_ROOT_ENV} ({', '.join(data_folders()) or 'none found'})")
    escaping = _links_outside(folder, root)
    if escaping:
        raise ValueError(f"dataset folder {name!r} holds {len(escaping)} link(s) leading outside {DATA_ROOT_ENV} "
                         f"(e.g. {escaping[0]}); the app reads only files inside it: remove the link(s)")
    return folder


def _links_outside(folder: Path, root: Path) -> list[str]:
    """Paths (relative to ``folder``) of the symbolic links inside it that resolve outside ``root``."""
    found = []
    for parent, dirs, names in os.walk(folder):
        for name in [*dirs, *names]:
            path = Path(parent) / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                found.append(str(path.relative_to(folder)))
    return found


class RunFiles:
    """A private scratch folder for the files each request produces.

    Every run gets its own subfolder; only the ``keep`` most recent are kept (Gradio
    copies what a handler returns into its own cache, which ``delete_cache`` ages out).
    The whole folder is removed when this object is garbage-collected or at exit
    (and on SIGTERM/SIGINT once :func:`exit_on_signals` is installed).
    """

    def __init__(self, keep: int = 32) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.keep = keep
        self._lock = threading.Lock()
        self._root: Path | None = None
        self._runs: list[Path] = []

    @property
    def root(self) -> Path:
        with self._lock:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="hac-app-"))
                weakref.finalize(self, shutil.rmtree, self._root, True)
            return self._root

    def new_run(self, kind: str) -> Path:
        """A fresh empty folder ``<root>/<kind>-<id>``; the oldest runs beyond ``keep`` are deleted."""
        folder = self.root / f"{kind}-{uuid.uuid4().hex[:12]}"
        folder.mkdir()
        with self._lock:
            self._runs.append(folder)
            stale, self._runs = self._runs[: -self.keep], self._runs[-self.keep :]
        for old in stale:
            shutil.rmtree(old, ignore_errors=True)
        return folder

    def sample_dataset(self) -> Path:
        """The bundled sample as an ImageNet-layout folder (``<synset>/<photo>``), made once."""
        root = self.root
        target = root / "sample-imagenet"
        with self._lock:
            if not target.is_dir():
                staging = Path(tempfile.mkdtemp(dir=root, prefix=".sample-"))
                for path in example_paths():
                    synset, _ = EXAMPLE_PHOTOS[path.name]
                    (staging / synset).mkdir()
                    shutil.copyfile(path, staging / synset / path.name)
                staging.rename(target)
        return target


def exit_on_signals() -> None:
    """Turn SIGTERM (and SIGINT) into a normal interpreter exit, so that exit handlers run and every
    :class:`RunFiles` folder is removed; call from the main thread of the serving process."""
    import signal

    def leave(number, frame) -> None:
        raise SystemExit(128 + number)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)
