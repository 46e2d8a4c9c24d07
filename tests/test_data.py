"""Data sources for evaluation: ImageNet/CIFAR-10 folders, the Hub, subsets, streaming, bad input."""

from __future__ import annotations

import sys

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
    HubSource,
    _gated_or_offline,
    iter_batches,
    load_batch,
    open_dataset,
    read_ids_file,
    select_ids,
)

from hub_layout import IMAGENET_1K, NAMES, write_hub_dataset
from hub_layout import SYNSETS as HUB_SYNSETS

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


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory):
    """Seven rows in the Hub's parquet layout, synset class names."""
    pytest.importorskip("datasets")
    return write_hub_dataset(tmp_path_factory.mktemp("hub-synsets"), HUB_SYNSETS, [0, 1, 2, 1, 0, 2, 2])


@pytest.fixture(autouse=True)
def _datasets_offline(request, monkeypatch):
    if request.node.get_closest_marker("network") is None:
        monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def test_hub_dataset_without_the_package_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DatasetUnavailableError, match=r"needs the `datasets` package \(pip install datasets\)"):
        open_dataset(layout="hub")


def test_hub_urls_are_parsed_and_bad_ones_named():
    source = HubSource.parse("hf://datasets/frgfm/imagenette/320px?split=validation&pool=500")
    assert source == HubSource("frgfm/imagenette", "320px", "validation", 500)
    assert HubSource.parse(source.url) == source
    assert HubSource.parse("hf://datasets/ILSVRC/imagenet-1k") == HubSource("ILSVRC/imagenet-1k", None, "validation")
    with pytest.raises(ValueError, match=r"hf://datasets/<owner>/<name>\[/<config>\].*got 'hf://datasets/imagenette'"):
        HubSource.parse("hf://datasets/imagenette")
    with pytest.raises(ValueError, match="unknown parameter.*shuffle.*valid: split, pool"):
        HubSource.parse("hf://datasets/a/b?split=validation&shuffle=1")


def test_hub_layout_folder_streams_the_first_rows_with_synset_labels(hub_folder):
    dataset = open_dataset(hub_folder, limit=4)
    assert dataset.ids == [f"validation/{row:06d}" for row in range(4)]
    assert [dataset.label(i) for i in dataset.ids] == [0, 217, 967, 217]  # tench, English springer, espresso
    image = dataset.load("validation/000003")
    assert image.shape == (3, 40, 48) and abs(float(image[1].mean()) - 30 / 255) < 1e-6  # row 3's grey level


def test_hub_seeded_sample_is_reproducible_and_reloads_from_its_ids(hub_folder):
    url_rows = HubSource(str(hub_folder), pool=7).rows(3, seed=1)
    again = HubSource(str(hub_folder), pool=7).rows(3, seed=1)
    assert url_rows == again and len(url_rows) == 3 and url_rows != HubSource(str(hub_folder), pool=7).rows(3, seed=2)
    sample = HubDataset(HubSource(str(hub_folder), pool=7), url_rows)
    reloaded = open_dataset(hub_folder, ids=sample.ids)
    assert reloaded.ids == sample.ids == [f"validation/{row:06d}" for row in url_rows]
    assert all(torch.equal(reloaded.load(i), sample.load(i)) for i in sample.ids)
    with pytest.raises(ValueError, match="row.*do not exist; use a smaller pool"):
        HubDataset(HubSource(str(hub_folder), pool=50), [3, 40])
    with pytest.raises(ValueError, match="not a row of split 'validation'"):
        open_dataset(hub_folder, ids=["test/000001"])


@pytest.mark.parametrize("names, labels, expected", [
    (IMAGENET_1K, [0, 999, 967], [0, 999, 967]),  # ImageNet-1k: integer labels are the class indices
    (NAMES, [2, 0, 1], [967, 0, 217]),  # Imagenette-style class names
    (list(CIFAR10_CLASSES), [9, 0, 3], [9, 0, 3]),
])
def test_hub_integer_labels_and_class_names(tmp_path, names, labels, expected):
    pytest.importorskip("datasets")
    dataset = open_dataset(write_hub_dataset(tmp_path, names, labels))
    assert [dataset.label(i) for i in dataset.ids] == expected
    assert dataset.label_space == ("cifar10" if names[0] == "airplane" else "imagenet")


def test_hub_labels_that_are_no_known_classes_are_refused(tmp_path):
    pytest.importorskip("datasets")
    with pytest.raises(ValueError, match="neither ImageNet synsets.*no single class named cat-ish"):
        open_dataset(write_hub_dataset(tmp_path, ["cat-ish", "tench"], [0, 1]))


def test_hub_unknown_split_lists_the_splits(hub_folder):
    with pytest.raises(ValueError, match=r"Bad split: test. Available splits: \['validation'\]"):
        HubDataset(HubSource(str(hub_folder), split="test"))


def test_hub_offline_and_gated_errors_say_what_to_do():
    datasets = pytest.importorskip("datasets")
    with pytest.raises(DatasetUnavailableError, match="'ILSVRC/imagenet-1k' cannot be streamed offline.*go online"):
        open_dataset("hf://datasets/ILSVRC/imagenet-1k?split=validation", limit=5)
    gated = datasets.exceptions.DatasetNotFoundError(
        "Dataset 'ILSVRC/imagenet-1k' is a gated dataset on the Hub. You must be authenticated to access it.")
    message = _gated_or_offline(HubSource("ILSVRC/imagenet-1k"), gated)
    assert "accept its terms on https://huggingface.co/datasets/ILSVRC/imagenet-1k" in message
    assert "`hf auth login`" in message and "HF_TOKEN" in message


def test_a_hub_subset_runs_through_the_evaluation(hub_folder, classifier, tmp_path):
    from hac.evaluation.runner import evaluate

    config = {"name": "hub", "batch_size": 2, "codecs": ["jpeg:q=50"], "attacks": ["fgsm:eps=2/255"], "ms_ssim": False}
    results = evaluate(config, tmp_path, data=f"{hub_folder}", limit=3, models={"efficientnet-lite0": classifier})
    assert results.image_ids == [f"validation/{row:06d}" for row in range(3)]
    assert (tmp_path / "rows.jsonl").exists() and results.dataset["split"] == "validation"
    assert {row["images"] for row in results.summary_rows()} == {3}


@pytest.mark.network
def test_imagenette_from_the_hub(tmp_path, classifier):
    pytest.importorskip("datasets")
    dataset = open_dataset("hf://datasets/frgfm/imagenette/160px?split=validation", limit=20, cache_dir=tmp_path)
    assert len(dataset) == 20 and set(dataset.class_indices) <= {0, 217, 482, 491, 497, 566, 569, 571, 574, 701}
    batch = load_batch(dataset, dataset.ids[:2], classifier.fit)
    assert batch.x.shape[0] == 2
