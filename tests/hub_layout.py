"""Tiny image-classification datasets in the Hub's parquet layout, written to a folder for offline tests.

``<root>/data/<split>-00000-of-00001.parquet`` with an ``image`` column (encoded PNG) and a
``label`` ClassLabel column, as the Hub's dataset viewer converts datasets; ``datasets.load_dataset``
reads such a folder exactly as it reads the repository.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

# class names of each labelling, in label order
SYNSETS = ["n01440764", "n02102040", "n07920052"]  # tench, English springer, espresso
NAMES = ["tench", "English springer", "espresso"]  # Imagenette-style ImageNet class names
IMAGENET_1K = [f"class {i}" for i in range(1000)]  # ImageNet-1k: 1000 integer labels, descriptive names


def write_hub_dataset(root: Path, names: list[str], labels: list[int], split: str = "validation",
                      size: tuple[int, int] = (48, 40)) -> Path:
    """Write ``len(labels)`` small PNGs (row r is filled with grey level 10 * r) with ``labels``; returns ``root``."""
    import datasets

    def png(row: int) -> bytes:
        buffer = io.BytesIO()
        pixels = np.full((size[1], size[0], 3), (10 * row) % 256, np.uint8)
        pixels[: size[1] // 2, :, 0] = 255 - (10 * row) % 256
        Image.fromarray(pixels).save(buffer, format="PNG")
        return buffer.getvalue()

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    table = datasets.Dataset.from_dict(
        {"image": [{"bytes": png(row), "path": f"{row}.png"} for row in range(len(labels))], "label": labels},
        features=features,
    )
    (root / "data").mkdir(parents=True, exist_ok=True)
    table.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root
