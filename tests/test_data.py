"""Data sources for evaluation: ImageNet/CIFAR-10 folders, the Hub, subsets, streaming, bad input."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from hac.models.classifiers import CIFAR10_CLASSES, imagenet_index_of_synset
from hac.evaluation.datasets import (
    ClassSubset,
    DatasetUnavailableError,
    FolderDataset,
    HubDataset,
    iter_batches,
    load_batch,
    open_dataset,
    read_ids_file,
    select_ids,
)

SYNSETS = ("n01440764", "n02123045", "n07920052")  # tench, tabby cat, espresso


def _write(path, size=(40, 30), seed=0, format=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=format)
    return path


@pytest.fixture
def imagenet_folder(tmp_path):
    root = tmp_path / "val"
    for k, synset in enumerate(SYNSETS):
        for j in range(2):
            _write(root / synset / f"img{j}.{'JPEG' if j else 'png'}", seed=10 * k + j, format="JPEG" if j else "PNG")
    (root / SYNSETS[0] / "notes.txt").write_text("not an image")
    return root


def test_imagenet_folder_ids_and_labels(imagenet_folder):
    dataset = FolderDataset(imagenet_folder)
    assert dataset.layout == "imagenet" and len(dataset) == 6
    assert dataset.ids[0] == "n01440764/img0.png" and "n01440764/notes.txt" not in dataset.ids
    assert dataset.label("n02123045/img1.JPEG") == imagenet_index_of_synset("n02123045") == 281
    assert dataset.class_indices == [0, 281, 967]


def test_cifar10_folder_is_detected(tmp_path):
    for name in ("cat", "truck"):
        _write(tmp_path / name / "0001.jpg", size=(32, 32))
    dataset = open_dataset(tmp_path)
    assert dataset.label_space == "cifar10"
    assert [dataset.label(i) for i in dataset.ids] == [CIFAR10_CLASSES.index("cat"), CIFAR10_CLASSES.index("truck")]


def test_subset_is_seeded_fixed_and_sorted():
    ids = [f"n0/{i:03d}.png" for i in range(50)]
    first, again, other = select_ids(ids, 10, seed=0), select_ids(list(reversed(ids)), 10, seed=0), select_ids(ids, 10, seed=1)
    assert first == again == sorted(first) and len(set(first)) == 10
    assert other != first
    assert select_ids(ids, None) == select_ids(ids, 500) == ids
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        select_ids(ids, 0)


def test_ids_file_round_trip(imagenet_folder, tmp_path):
    dataset = FolderDataset(imagenet_folder)
    listing = tmp_path / "ids.txt"
    listing.write_text("# chosen\nn07920052/img0.png\nn01440764/img1.JPEG  # a comment\n\n")
    assert read_ids_file(listing, dataset) == ["n07920052/img0.png", "n01440764/img1.JPEG"]
    listing.write_text("n07920052/nope.png\n")
    with pytest.raises(ValueError, match="not in imagenet folder"):
        read_ids_file(listing, dataset)


def test_batches_are_streamed_fitted_and_on_the_8bit_grid(imagenet_folder, classifier, monkeypatch):
    dataset = FolderDataset(imagenet_folder)
    loads = []
    original = dataset.load
    monkeypatch.setattr(dataset, "load", lambda image_id: loads.append(image_id) or original(image_id))
    batches = iter_batches(dataset, dataset.ids, 4, classifier.fit)
    first = next(batches)
    assert len(loads) == 4  # only the first batch has been read
    assert first.x.shape == (4, 3, 224, 224) and first.labels.tolist() == [0, 0, 281, 281]
    assert torch.equal(first.x, torch.round(first.x * 255) / 255)
    assert [len(b.ids) for b in batches] == [2]


def test_corrupt_images_are_skipped_and_reported(imagenet_folder, classifier):
    (imagenet_folder / SYNSETS[1] / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (imagenet_folder / SYNSETS[1] / "empty.png").write_bytes(b"")
    dataset = FolderDataset(imagenet_folder)
    batch = load_batch(dataset, [i for i in dataset.ids if i.startswith(SYNSETS[1])], classifier.fit)
    assert batch.ids == ["n02123045/img0.png", "n02123045/img1.JPEG"]
    assert set(batch.skipped) == {"n02123045/broken.jpg", "n02123045/empty.png"}
    assert "corrupt or truncated" in batch.skipped["n02123045/broken.jpg"] and "empty" in batch.skipped["n02123045/empty.png"]
    everything_bad = load_batch(dataset, ["n02123045/broken.jpg"], classifier.fit)
    assert everything_bad.x.shape[0] == 0 and everything_bad.labels.shape == (0,)


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "n01440764").mkdir()
    with pytest.raises(ValueError, match="no images found in"):
        FolderDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        FolderDataset(tmp_path / "missing")


def test_unknown_synsets_are_named(tmp_path):
    _write(tmp_path / "n99999999" / "a.png")
    _write(tmp_path / "holiday_photos" / "b.png")
    _write(tmp_path / "n01440764" / "c.png")
    with pytest.raises(ValueError, match=r"holiday_photos, n99999999 are not ImageNet-1k synsets"):
        FolderDataset(tmp_path)


def test_loose_images_and_wrong_cifar_names_are_refused(tmp_path):
    _write(tmp_path / "flat.png")
    with pytest.raises(ValueError, match="holds images directly"):
        FolderDataset(tmp_path)
    (tmp_path / "flat.png").unlink()
    _write(tmp_path / "cat" / "1.png")
    _write(tmp_path / "n01440764" / "1.png")
    with pytest.raises(ValueError, match="are not CIFAR-10 classes"):
        FolderDataset(tmp_path, layout="cifar10")


def test_class_subset_restricts_logits(classifier):
    subset = ClassSubset(classifier, [967, 0, 281])
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        logits = subset(x)
        full = classifier(x)
    assert logits.shape == (2, 3)
    assert torch.allclose(logits, full[:, [0, 281, 967]])
    assert subset.map_labels(torch.tensor([281, 967, 0])).tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="not among the kept classes"):
        subset.map_labels(torch.tensor([5]))


# ---------------------------------------------------------------- Hub datasets


class _FakeLabels:
    def __init__(self, names):
        self.names = names


class _FakeTable:
    """Just what HubDataset uses of a ``datasets.Dataset``."""

    def __init__(self, names, labels, images):
        self.features = {"label": _FakeLabels(names)}
        self._labels, self._images = labels, images

    def __getitem__(self, key):
        if key == "label":
            return self._labels
        return {"image": self._images[key], "label": self._labels[key]}


def _fake_datasets(monkeypatch, load_dataset):
    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", module)


def test_hub_dataset_without_the_package_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DatasetUnavailableError, match=r"needs the `datasets` package \(pip install datasets\)"):
        open_dataset(layout="hub")


def test_hub_dataset_offline_is_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'frgfm/imagenette' on the Hub (LocalEntryNotFoundError)")

    _fake_datasets(monkeypatch, offline)
    with pytest.raises(DatasetUnavailableError, match="could not load the Hub dataset 'frgfm/imagenette'.*needs internet"):
        HubDataset()


def test_hub_dataset_maps_synsets_and_loads_rows(monkeypatch):
    images = [Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (0, 128, 255)]
    calls = {}

    def load_dataset(repo, config, split, cache_dir):
        calls.update(repo=repo, config=config, split=split, cache_dir=cache_dir)
        return _FakeTable(["n01440764", "n07920052"], [1, 0, 1], images)

    _fake_datasets(monkeypatch, load_dataset)
    dataset = open_dataset(layout="hub", cache_dir="/tmp/hub-cache")
    assert calls == {"repo": "frgfm/imagenette", "config": "320px", "split": "validation", "cache_dir": "/tmp/hub-cache"}
    assert dataset.ids == ["validation/000000", "validation/000001", "validation/000002"]
    assert [dataset.label(i) for i in dataset.ids] == [967, 0, 967] and dataset.class_indices == [0, 967]
    assert dataset.load("validation/000001").shape == (3, 20, 30)


@pytest.mark.network
def test_imagenette_from_the_hub(tmp_path, classifier):
    pytest.importorskip("datasets")
    dataset = HubDataset("frgfm/imagenette", "160px", "validation", cache_dir=tmp_path)
    assert len(dataset.class_indices) == 10 and len(dataset) > 3000
    batch = load_batch(dataset, dataset.ids[:2], classifier.fit)
    assert batch.x.shape[0] == 2
