"""Labelled image sets for evaluation, streamed in batches.

Three sources, one interface (:class:`Dataset`: a fixed list of image ids, a
label per id, and a loader that reads one image):

- ImageNet-layout folders, ``<synset>/<image>`` (a full ImageNet val folder,
  Imagenette, ``imagenet-val-1300``): the synset folder name is the label,
  mapped to the ImageNet-1k index in the usual sorted-synset order;
- CIFAR-10 class folders, ``<class_name>/NNNN.jpg``, labelled in the usual
  CIFAR-10 order (:data:`hac.models.classifiers.CIFAR10_CLASSES`);
- a Hugging Face Hub image-classification dataset, streamed through the
  optional ``datasets`` package (``hf://datasets/<repo>[/<config>]?split=...``,
  or a local folder in the Hub's parquet layout): only the chosen rows are read.

Only the list of ids lives in memory; :func:`iter_batches` reads, fits and
rounds one batch at a time. A corrupt image is skipped and reported in
:attr:`Batch.skipped`, never fatal. :func:`select_ids` picks a seeded, fixed
subset of ids, to be recorded with the results so a run repeats exactly.
"""

from __future__ import annotations

import logging
import os
import random
import re
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..models.classifiers import CIFAR10_CLASSES, imagenet_class_names, imagenet_index_of_synset
from ..core.images import IMAGE_SUFFIXES, ImageError, load_image, to_8bit

__all__ = [
    "LAYOUTS",
    "Batch",
    "Dataset",
    "FolderDataset",
    "HubDataset",
    "HubSource",
    "HUB_PREFIX",
    "is_hub_folder",
    "hub_offline",
    "DatasetUnavailableError",
    "ClassSubset",
    "open_dataset",
    "select_ids",
    "read_id_lines",
    "read_ids_file",
    "load_batch",
    "iter_batches",
]

logger = logging.getLogger(__name__)

LAYOUTS = ("auto", "imagenet", "cifar10", "hub")
_SYNSET = re.compile(r"^n\d{8}$")


class DatasetUnavailableError(FileNotFoundError):
    """A Hub dataset cannot be loaded here (``datasets`` missing, or offline with nothing cached)."""


@dataclass
class Batch:
    """One batch of readable images.

    Attributes:
        ids: image ids of the images in ``x``, in order.
        x: (N, 3, H, W) float in [0, 1] on the 8-bit grid, fitted to the classifier.
        labels: (N,) int64 class indices (ImageNet-1k or CIFAR-10).
        skipped: id -> reason, for the images of this batch that could not be read.
    """

    ids: list[str]
    x: Tensor
    labels: Tensor
    skipped: dict[str, str] = field(default_factory=dict)


class Dataset(ABC):
    """A labelled image set: ids in a fixed order, a label per id, one image at a time.

    Attributes:
        name: for reports.
        label_space: ``"imagenet"`` (1000 classes) or ``"cifar10"``.
    """

    name: str = ""
    label_space: str = "imagenet"
    _labels: dict[str, int]  # every image id -> its class index, filled by the subclass
    _ids: list[str]  # sorted(_labels)

    @property
    def ids(self) -> list[str]:
        """Every image id, sorted."""
        return self._ids

    def label(self, image_id: str) -> int:
        """The class index of one image."""
        return self._labels[image_id]

    @abstractmethod
    def load(self, image_id: str) -> Tensor:
        """One image, (3, H, W) in [0, 1]. Raises :class:`~hac.core.images.ImageError` if unreadable."""

    @property
    def class_indices(self) -> list[int]:
        """The sorted class indices present in the whole set (e.g. Imagenette's 10)."""
        return sorted({self.label(image_id) for image_id in self.ids})

    def describe(self) -> dict:
        return {"name": self.name, "labels": self.label_space, "images": len(self.ids), "classes": len(self.class_indices)}

    def __len__(self) -> int:
        return len(self.ids)


class FolderDataset(Dataset):
    """``<class folder>/<image>`` on disk, ImageNet or CIFAR-10 labelling.

    Args:
        root: the folder holding one subfolder per class.
        layout: ``"imagenet"`` (folders are WordNet synsets such as ``n01440764``),
            ``"cifar10"`` (folders are CIFAR-10 class names) or ``"auto"``
            (CIFAR-10 if every folder is a CIFAR-10 class name, else ImageNet).

    Image ids are the paths relative to ``root`` with ``/`` separators,
    e.g. ``n01440764/ILSVRC2012_val_00000293.JPEG``. Files with other
    extensions and hidden entries are ignored.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no images, images outside class folders, or folder names
            that are not classes of the layout (the message lists them).
    """

    def __init__(self, root: str | Path, layout: str = "auto") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"data folder not found: {self.root}")
        if layout not in ("auto", "imagenet", "cifar10"):
            raise ValueError(f"folder layout must be one of auto, imagenet, cifar10, got {layout!r}")
        folders = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        loose = sorted(p.name for p in self.root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if loose:
            raise ValueError(
                f"{self.root} holds images directly ({', '.join(loose[:3])}{', ...' if len(loose) > 3 else ''}); "
                "expected one subfolder per class: <synset>/<image> (ImageNet) or <class_name>/<image> (CIFAR-10)"
            )
        if layout == "auto":
            layout = "cifar10" if folders and all(p.name in CIFAR10_CLASSES for p in folders) else "imagenet"
        self.layout = self.label_space = layout
        self.name = f"{layout} folder {self.root}"
        class_of = self._class_indices([p.name for p in folders])
        self._labels: dict[str, int] = {}
        for folder in folders:
            for path in sorted(folder.iterdir()):
                if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES:
                    self._labels[f"{folder.name}/{path.name}"] = class_of[folder.name]
        if not self._labels:
            raise ValueError(
                f"no images found in {self.root} (extensions: {', '.join(sorted(IMAGE_SUFFIXES))}); "
                "expected <synset>/<image> (ImageNet) or <class_name>/<image> (CIFAR-10)"
            )
        self._ids = sorted(self._labels)
        logger.info("%s: %d images in %d classes", self.name, len(self._ids), len(set(self._labels.values())))

    def _class_indices(self, names: list[str]) -> dict[str, int]:
        if self.layout == "cifar10":
            unknown = [name for name in names if name not in CIFAR10_CLASSES]
            if unknown:
                raise ValueError(
                    f"{self.root}: folder(s) {', '.join(unknown[:5])} are not CIFAR-10 classes; "
                    f"expected {', '.join(CIFAR10_CLASSES)}"
                )
            return {name: CIFAR10_CLASSES.index(name) for name in names}
        unknown = [name for name in names if not _SYNSET.match(name)]
        indices = {}
        for name in names:
            if name in unknown:
                continue
            try:
                indices[name] = imagenet_index_of_synset(name)
            except ValueError:
                unknown.append(name)
        if unknown:
            raise ValueError(
                f"{self.root}: folder(s) {', '.join(sorted(unknown)[:5])}{' ...' if len(unknown) > 5 else ''} "
                "are not ImageNet-1k synsets; an ImageNet-layout folder holds one folder per class named by its "
                "WordNet id (e.g. n01440764/), a CIFAR-10 folder one per class name (airplane/, ...)"
            )
        return indices

    def load(self, image_id: str) -> Tensor:
        return load_image(self.root / image_id)

    def describe(self) -> dict:
        return {**super().describe(), "root": str(self.root), "layout": self.layout}


HUB_PREFIX = "hf://datasets/"
"""``--data hf://datasets/<repo>[/<config>][?split=validation][&pool=N]``: a Hub dataset, streamed."""


@dataclass(frozen=True)
class HubSource:
    """Where a Hub image-classification dataset lives and which rows may be drawn from it.

    Attributes:
        repo: a Hub dataset repository (``"frgfm/imagenette"``, ``"ILSVRC/imagenet-1k"``) or a local
            folder in the Hub's layout (parquet files, as ``datasets`` writes and reads them).
        config: the dataset configuration (``"320px"``), or None.
        split: e.g. ``"validation"``.
        pool: draw a seeded sample of ``limit`` rows from the first ``pool`` rows; None: the first ``limit`` rows.
    """

    repo: str
    config: str | None = None
    split: str = "validation"
    pool: int | None = None

    @classmethod
    def parse(cls, url: str) -> "HubSource":
        """Read ``hf://datasets/<owner>/<name>[/<config>][?split=...][&pool=N]``.

        Raises:
            ValueError: not of that form, or an unknown or bad query parameter.
        """
        form = "hf://datasets/<owner>/<name>[/<config>]?split=validation[&pool=N]"
        if not url.startswith(HUB_PREFIX):
            raise ValueError(f"a Hub dataset is written {form}, got {url!r}")
        path, _, query = url[len(HUB_PREFIX):].partition("?")
        parts = [part for part in path.split("/") if part]
        if len(parts) not in (2, 3):
            raise ValueError(f"a Hub dataset is written {form}, got {url!r}")
        params = dict(item.partition("=")[::2] for item in query.split("&") if item)
        unknown = sorted(set(params) - {"split", "pool"})
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)} in {url!r}; valid: split, pool")
        pool = params.get("pool")
        if pool is not None and (not pool.isdigit() or int(pool) < 1):
            raise ValueError(f"pool must be a positive number of rows, got {pool!r} in {url!r}")
        return cls("/".join(parts[:2]), parts[2] if len(parts) == 3 else None, params.get("split") or "validation",
                   None if pool is None else int(pool))

    @property
    def url(self) -> str:
        query = f"split={self.split}" + ("" if self.pool is None else f"&pool={self.pool}")
        return f"{HUB_PREFIX}{self.repo}{'' if self.config is None else '/' + self.config}?{query}"

    def rows(self, limit: int | None, seed: int) -> range | list[int] | None:
        """The rows a subset of ``limit`` takes: the first ``limit``, or a seeded sample of the first ``pool``."""
        if self.pool is not None:
            return [int(i) for i in select_ids([f"{row:09d}" for row in range(self.pool)], limit, seed)]
        return None if limit is None else range(limit)


def hub_offline() -> bool:
    """Whether Hub access is switched off here (``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE``)."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _gated_or_offline(source: HubSource, error: Exception) -> str:
    """Why a Hub dataset could not be opened, and the fix."""
    text = str(error)
    if "gated" in text.lower() or "authenticat" in text.lower():
        return (f"the Hub dataset {source.repo!r} is gated: accept its terms on https://huggingface.co/datasets/"
                f"{source.repo}, then log in with `hf auth login` (or set HF_TOKEN to a read token) and retry")
    if hub_offline():
        return (f"the Hub dataset {source.repo!r} cannot be streamed offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE "
                "is set); go online, or use an ImageNet-layout folder or a Hub-layout folder on disk")
    return (f"could not stream the Hub dataset {source.repo!r} (config {source.config!r}, split {source.split!r}): "
            f"{text.splitlines()[0] if text else type(error).__name__}. Streaming needs internet access to the Hub")


def _label_mapping(source: HubSource, names: Sequence[str]) -> tuple[str, list[int]]:
    """(label space, dataset label -> class index) from a ClassLabel's names.

    Synsets (``n01440764``) and CIFAR-10 names map by name; 1000 classes are ImageNet-1k's
    integer labels (in index order, whatever their names); ImageNet class names
    (Imagenette's ``tench``, ``English springer``, ...) map to the class of that name.
    """
    if names and all(_SYNSET.match(name) for name in names):
        return "imagenet", [imagenet_index_of_synset(name) for name in names]
    if names and all(name in CIFAR10_CLASSES for name in names):
        return "cifar10", [CIFAR10_CLASSES.index(name) for name in names]
    if len(names) == 1000:
        return "imagenet", list(range(1000))
    by_name: dict[str, list[int]] = defaultdict(list)
    for index, name in enumerate(imagenet_class_names()):
        by_name[name.lower()].append(index)
    unknown = [name for name in names if len(by_name.get(name.lower(), [])) != 1]
    if names and not unknown:
        return "imagenet", [by_name[name.lower()][0] for name in names]
    raise ValueError(
        f"the labels of {source.repo!r} ({', '.join(list(names)[:5])}{', ...' if len(names) > 5 else ''}) are neither "
        "ImageNet synsets, CIFAR-10 classes, ImageNet-1k's 1000 integer classes nor unambiguous ImageNet class names"
        + (f" (no single class named {', '.join(unknown[:3])})" if unknown and names else "")
    )


class HubDataset(Dataset):
    """A Hub image-classification dataset, streamed with ``datasets``: only the chosen rows are read.

    Image ids are ``<split>/<row>`` (row number in the split's order, six digits), so an
    ``image_ids.txt`` reloads the same images. The chosen rows' encoded images stay in memory.

    Args:
        source: the repository (or a local Hub-layout folder), config, split and sampling pool.
        rows: which rows to read (sorted row numbers); None: every row of the split.
        cache_dir: where ``datasets`` keeps its files (default: its own cache).

    Raises:
        DatasetUnavailableError: ``datasets`` is missing; or the dataset is gated (the message says
            how to log in), offline, or otherwise cannot be streamed.
        ValueError: unknown split, labels that are not ImageNet or CIFAR-10 classes, or rows that do not exist.
    """

    def __init__(self, source: HubSource, rows: Sequence[int] | None = None, cache_dir: str | Path | None = None) -> None:
        try:
            import datasets
        except ImportError:
            raise DatasetUnavailableError(
                f"the Hub dataset {source.repo!r} needs the `datasets` package (pip install datasets); "
                "or point --data at an ImageNet-layout folder such as an extracted Imagenette"
            ) from None
        self.source = source
        self.name = f"hub dataset {source.repo} ({source.config or 'default'}, {source.split})"
        try:
            stream = datasets.load_dataset(source.repo, source.config, split=source.split, streaming=True,
                                           cache_dir=None if cache_dir is None else str(cache_dir))
        except (datasets.exceptions.DatasetNotFoundError, OSError) as error:  # ConnectionError is an OSError
            raise DatasetUnavailableError(_gated_or_offline(source, error)) from None
        label_key = "label" if "label" in stream.features else "labels"
        if label_key not in stream.features or not hasattr(stream.features[label_key], "names"):
            raise ValueError(f"{source.repo!r} has no class-label column 'label' (columns: {', '.join(stream.features)})")
        self.label_space, mapping = _label_mapping(source, stream.features[label_key].names)
        stream = stream.cast_column("image", datasets.Image(decode=False))
        wanted = None if rows is None else set(rows)
        last = None if rows is None else max(rows, default=-1)
        self._images: dict[str, bytes] = {}
        self._labels: dict[str, int] = {}
        try:
            for row, example in enumerate(stream):
                if last is not None and row > last:
                    break
                if wanted is None or row in wanted:
                    image_id = f"{source.split}/{row:06d}"
                    self._images[image_id] = example["image"]["bytes"]
                    self._labels[image_id] = mapping[int(example[label_key])]
        except OSError as error:
            raise DatasetUnavailableError(_gated_or_offline(source, error)) from None
        missing = sorted(wanted - {int(i.rsplit("/", 1)[1]) for i in self._labels}) if wanted else []
        if missing and not isinstance(rows, range):  # the first N of a shorter split is the whole split
            raise ValueError(f"{source.url} has {len(self._labels) if rows is None else 'fewer'} rows than asked: "
                             f"row(s) {missing[:3]} do not exist; use a smaller pool, limit or id list")
        if not self._labels:
            raise ValueError(f"{source.url} holds no rows")
        self._ids = sorted(self._labels)
        logger.info("%s: %d images read", self.name, len(self._ids))

    def load(self, image_id: str) -> Tensor:
        return load_image(self._images[image_id])

    def describe(self) -> dict:
        source = self.source
        return {**super().describe(), "repo": source.repo, "config": source.config, "split": source.split, "pool": source.pool}


def is_hub_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder in the Hub's dataset layout (parquet files at most two levels down)."""
    root = Path(path)
    return root.is_dir() and any(any(root.glob(pattern)) for pattern in ("*.parquet", "*/*.parquet", "*/*/*.parquet"))


def open_dataset(
    path: str | Path | None = None, layout: str = "auto", *, repo: str = "frgfm/imagenette", config: str | None = "320px",
    split: str = "validation", cache_dir: str | Path | None = None, limit: int | None = None, seed: int = 0,
    ids: Sequence[str] | None = None,
) -> Dataset:
    """Open a data source: a folder, a Hub-layout folder, an ``hf://datasets/...`` URL, or ``layout="hub"``.

    Folders hold all their images' ids; a Hub dataset reads only the rows it needs: ``ids``
    (``<split>/<row>``, e.g. from an ``image_ids.txt``), else the subset of ``limit`` rows that
    :meth:`HubSource.rows` picks with ``seed``, else the whole split.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"data layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout == "hub":
        source = HubSource(repo, config, split)
    elif path is not None and str(path).startswith(HUB_PREFIX):
        source = HubSource.parse(str(path))
    elif path is not None and layout == "auto" and is_hub_folder(path):
        source = HubSource(str(path), None, split)
    elif path is None:
        raise ValueError("no data folder given: pass --data DIR (an ImageNet-layout or CIFAR-10 folder) "
                         f"or --data {HUB_PREFIX}<owner>/<name>[/<config>]?split=validation")
    else:
        return FolderDataset(path, layout)
    if ids is not None:
        rows = sorted({_hub_row(image_id, source) for image_id in ids})
    else:
        rows = source.rows(limit, seed)
    return HubDataset(source, rows, cache_dir)


def _hub_row(image_id: str, source: HubSource) -> int:
    split, _, row = image_id.rpartition("/")
    if split != source.split or not row.isdigit():
        raise ValueError(f"image id {image_id!r} is not a row of split {source.split!r} (expected {source.split}/000123)")
    return int(row)


def select_ids(ids: Sequence[str], limit: int | None = None, seed: int = 0) -> list[str]:
    """A fixed subset of ``limit`` ids drawn with ``random.Random(seed)``, sorted; all ids if ``limit`` is None.

    The same ids, limit and seed always give the same subset; record it with the results.
    """
    ordered = sorted(ids)
    if limit is None or limit >= len(ordered):
        return ordered
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    return sorted(random.Random(seed).sample(ordered, limit))


def read_id_lines(path: str | Path) -> list[str]:
    """The ids listed one per line in ``path``, in order: ``#`` comments and blank lines skipped, repeats dropped.

    Raises:
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image id list not found: {path}")
    wanted = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return list(dict.fromkeys(w for w in wanted if w))


def read_ids_file(path: str | Path, dataset: Dataset) -> list[str]:
    """Image ids listed one per line in ``path`` (:func:`read_id_lines`), checked against ``dataset``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: empty, or it names ids the dataset does not hold.
    """
    wanted = read_id_lines(path)
    if not wanted:
        raise ValueError(f"image id list {path} is empty")
    known = set(dataset.ids)
    missing = [w for w in wanted if w not in known]
    if missing:
        raise ValueError(f"{len(missing)} id(s) of {path} are not in {dataset.name}, e.g. {missing[:3]}")
    return wanted


def load_batch(
    dataset: Dataset, ids: Sequence[str], fit: Callable[[Tensor], Tensor] | None = None, device: str | torch.device = "cpu",
) -> Batch:
    """Read ``ids``, fit each image with ``fit`` (e.g. ``classifier.fit``), round to 8 bits and stack.

    Unreadable images (:class:`~hac.core.images.ImageError`, or a file that vanished)
    are left out and reported in :attr:`Batch.skipped`. With no ``fit`` every
    image must already have the same size.
    """
    images, kept, skipped = [], [], {}
    for image_id in ids:
        try:
            image = dataset.load(image_id)[None]
        except (ImageError, FileNotFoundError) as error:
            logger.warning("skipping %s: %s", image_id, error)
            skipped[image_id] = str(error)
            continue
        image = image.to(device)
        images.append(to_8bit(fit(image) if fit is not None else image))
        kept.append(image_id)
    if images:
        x = torch.cat(images)
    else:
        x = torch.zeros(0, 3, 1, 1, device=device)
    labels = torch.tensor([dataset.label(i) for i in kept], dtype=torch.long, device=device)
    return Batch(kept, x, labels, skipped)


def iter_batches(
    dataset: Dataset, ids: Sequence[str], batch_size: int, fit: Callable[[Tensor], Tensor] | None = None,
    device: str | torch.device = "cpu",
) -> Iterator[Batch]:
    """Stream ``ids`` in consecutive chunks of ``batch_size`` (a chunk's readable images form one :class:`Batch`)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    for start in range(0, len(ids), batch_size):
        yield load_batch(dataset, ids[start : start + batch_size], fit, device)


class ClassSubset(nn.Module):
    """A classifier whose logits are restricted to ``indices`` (e.g. Imagenette's 10 ImageNet classes).

    Input (N, 3, H, W) in [0, 1]; output (N, len(indices)) logits. Labels must
    be mapped with :meth:`map_labels` to positions in ``indices``. Attacks on
    this module only ever see the kept classes, as in the HAC paper.
    """

    def __init__(self, classifier: nn.Module, indices: Sequence[int]) -> None:
        super().__init__()
        if not indices:
            raise ValueError("ClassSubset needs at least one class index")
        self.classifier = classifier
        self.register_buffer("indices", torch.tensor(sorted(indices), dtype=torch.long), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(x)[:, self.indices]

    def map_labels(self, labels: Tensor) -> Tensor:
        """Class indices -> positions in ``indices`` (each label must be one of them)."""
        positions = torch.searchsorted(self.indices, labels)
        if (positions >= len(self.indices)).any() or (self.indices[positions.clamp(max=len(self.indices) - 1)] != labels).any():
            raise ValueError("a label is not among the kept classes of the ClassSubset")
        return positions
