"""Training images: a folder (searched recursively, see :func:`hac.core.images.list_images`) decoded once into uint8
tensors in memory; batches are seeded random crops with horizontal flips."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import torch
from torch import Tensor

from ..core.images import list_images

__all__ = ["read_image", "ImageBank"]

logger = logging.getLogger(__name__)


def read_image(path: Path) -> Tensor:
    """An image file as a uint8 (3, H, W) tensor."""
    from PIL import Image

    with Image.open(path) as image:
        data = image.convert("RGB").tobytes()
        width, height = image.size
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(height, width, 3).permute(2, 0, 1).contiguous()


class ImageBank:
    """A folder of images decoded once into memory, sampled as random crops.

    Images of equal size are stacked into one uint8 (K, 3, H, W) tensor; mixed sizes
    are kept as a list. Images smaller than the crop are skipped (logged).

    Args:
        folder: image folder (recursive).
        crop: side of the square crops.
        exclude: paths relative to ``folder`` (``n01443537/x.JPEG``) to leave out, e.g. the images an
            evaluation holds out; each must exist.

    Raises:
        ValueError: no usable image, or an excluded path that is not in the folder.
    """

    def __init__(self, folder: str | Path, crop: int, exclude: Iterable[str] = ()) -> None:
        files = list_images(folder)
        excluded = {Path(name).as_posix() for name in exclude}
        if excluded:
            relative = {path.relative_to(folder).as_posix(): path for path in files}
            missing = sorted(excluded - relative.keys())
            if missing:
                raise ValueError(f"{len(missing)} excluded image(s) are not under {folder}, e.g. {missing[0]!r}")
            files = [path for name, path in relative.items() if name not in excluded]
            logger.info("leaving out %d images of %s", len(excluded), folder)
        images = [read_image(path) for path in files]
        usable = [img for img in images if img.shape[1] >= crop and img.shape[2] >= crop]
        if len(usable) < len(images):
            logger.warning("skipping %d of %d images smaller than the %dpx crop", len(images) - len(usable), len(images), crop)
        if not usable:
            raise ValueError(f"no image under {folder} is at least {crop}x{crop}; use a smaller --crop")
        self.crop = crop
        self.images: Tensor | list[Tensor]
        if len({tuple(img.shape) for img in usable}) == 1:
            self.images = torch.stack(usable)
        else:
            self.images = usable
        self.count = len(usable)
        nbytes = sum(img.numel() for img in usable)
        logger.info("decoded %d images from %s (%.1f MB in memory)", self.count, folder, nbytes / 1e6)

    def sample(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """A float (batch_size, 3, crop, crop) batch in [0, 1]: random crops, random h-flips."""
        index = torch.randint(self.count, (batch_size,), generator=generator)
        draws = torch.rand(batch_size, 3, generator=generator)
        crops = []
        for i, (u, v, flip) in zip(index.tolist(), draws.tolist()):
            image = self.images[i]
            height, width = image.shape[-2:]
            top = int(u * (height - self.crop + 1))
            left = int(v * (width - self.crop + 1))
            patch = image[:, top : top + self.crop, left : left + self.crop]
            crops.append(patch.flip(-1) if flip < 0.5 else patch)
        return torch.stack(crops).float().div_(255.0)
