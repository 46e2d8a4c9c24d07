"""Reading untrusted image files into [0, 1] tensors, and writing exact PNGs.

:func:`load_image` accepts what people actually upload (greyscale, palette,
RGBA, CMYK, 16-bit, EXIF-rotated, animated) and refuses what it must (corrupt,
truncated, empty, non-image, decompression bombs) with an :class:`ImageError`
that says what was wrong.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

__all__ = [
    "ImageError",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "list_images",
    "load_image",
    "to_8bit",
    "to_pil",
    "save_png",
    "png_bytes",
    "perturbation_image",
    "resize",
    "resize_and_center_crop",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 40_000_000
"""Largest accepted image (width x height); larger files are refused before decoding."""

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm"})
"""File name endings (lower case) that count as images when a folder is searched."""

ImageSource = Union[str, Path, bytes, Image.Image]


class ImageError(ValueError):
    """The input is not an image hac can use; the message says why."""


def list_images(folder: str | Path) -> list[Path]:
    """The image files under ``folder``, searched recursively, sorted by path.

    Raises:
        FileNotFoundError: no such folder, or no images in it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    return files


def _open(source: ImageSource) -> tuple[Image.Image, str]:
    if isinstance(source, Image.Image):
        return source, "image"
    if isinstance(source, (bytes, bytearray)):
        data, label = bytes(source), "uploaded data"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}")
        data, label = path.read_bytes(), str(path)
    if not data:
        raise ImageError(f"{label} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data)), label
    except UnidentifiedImageError:
        raise ImageError(f"{label} is not an image file Pillow can read (supported: PNG, JPEG, WebP, GIF, BMP, TIFF, ...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"{label} is too large: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{label} is corrupt or truncated: {error}") from None


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] for any Pillow mode."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        scale = 65535.0 if array.max(initial=0) > 255 or image.mode.startswith("I;16") else 255.0
        array = np.clip(array / scale, 0, 1)
        return np.repeat(array[..., None], 3, axis=2).astype(np.float32)
    if image.mode == "F":
        array = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
        return np.repeat(array[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> Tensor:
    """Read an image as a (3, H, W) float32 tensor in [0, 1].

    EXIF orientation is applied; transparency is composited over white;
    greyscale, palette, CMYK and 16-bit images are converted to RGB; of an
    animated image the first frame is used.

    Args:
        source: a path, the file's bytes, or a Pillow image.
        max_pixels: refuse images with more than this many pixels (checked
            from the header, before decoding).

    Raises:
        FileNotFoundError: the path does not exist.
        ImageError: empty, corrupt, truncated, non-image, or too large.
    """
    image, label = _open(source)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"{label} is {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,}; "
            "downscale it first"
        )
    if width < 1 or height < 1:
        raise ImageError(f"{label} has no pixels ({width}x{height})")
    if getattr(image, "n_frames", 1) > 1:
        logger.info("%s has %d frames; using the first", label, image.n_frames)
        image.seek(0)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        array = _to_rgb_array(image)
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{label} is corrupt or truncated: {error}") from None
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


def to_8bit(x: Tensor) -> Tensor:
    """Round a [0, 1] batch to the 8-bit grid (what a PNG of it holds), keeping its dtype and device."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def to_pil(x: Tensor) -> Image.Image:
    """(3, H, W) tensor in [0, 1] -> 8-bit RGB Pillow image (rounded, not truncated)."""
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected one image of shape (3, H, W), got {tuple(x.shape)}")
    array = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


def save_png(x: Tensor, path: str | Path) -> Path:
    """Write a (3, H, W) image as a lossless 8-bit PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(x).save(path, format="PNG")
    return path


def png_bytes(x: Tensor) -> bytes:
    """The PNG encoding of a (3, H, W) image."""
    buffer = io.BytesIO()
    to_pil(x).save(buffer, format="PNG")
    return buffer.getvalue()


def perturbation_image(delta: Tensor, eps: float | None = None) -> Tensor:
    """Map a perturbation to [0, 1] for viewing: grey is zero, full contrast at +-``eps``.

    Args:
        delta: ``x_adv - x``, any shape, values in [-1, 1].
        eps: the attack budget; ``None`` or 0 scales by ``delta``'s own largest magnitude.

    Returns:
        Same shape as ``delta``, in [0, 1]; 0.5 where ``delta`` is zero.
    """
    scale = eps if eps else float(delta.abs().max().clamp_min(1e-12))
    return (0.5 + 0.5 * delta / scale).clamp(0, 1)


def resize(x: Tensor, size: tuple[int, int], interpolation: str = "bicubic") -> Tensor:
    """Resize (N, 3, H, W) to ``size`` (height, width); antialiased where it shrinks, differentiable, not clamped.

    Args:
        interpolation: ``bicubic``, ``bilinear`` or ``nearest``.
    """
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    antialias = interpolation in ("bilinear", "bicubic") and shrinking
    align = False if interpolation != "nearest" else None
    return F.interpolate(x, size=size, mode=interpolation, align_corners=align, antialias=antialias)


def resize_and_center_crop(
    x: Tensor, size: int | tuple[int, int], crop_pct: float = 0.875, interpolation: str = "bicubic"
) -> Tensor:
    """Resize the shorter side to ``size / crop_pct`` then centre-crop ``size`` (timm's eval policy).

    Differentiable, so it can sit inside a classifier that is attacked.

    Args:
        x: (N, 3, H, W) in [0, 1].
        size: output side, or (height, width).
        crop_pct: fraction of the resized image kept by the crop.
        interpolation: ``bicubic``, ``bilinear`` or ``nearest``.

    Returns:
        (N, 3, size, size) in [0, 1]; ``x`` itself if it already has that size.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    height, width = x.shape[-2:]
    if (height, width) == (out_h, out_w):
        return x
    scale_size = int(round(min(out_h, out_w) / crop_pct))
    if height <= width:
        new_h, new_w = scale_size, max(scale_size, int(round(width * scale_size / height)))
    else:
        new_h, new_w = max(scale_size, int(round(height * scale_size / width))), scale_size
    x = resize(x, (new_h, new_w), interpolation)
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    return x[..., top : top + out_h, left : left + out_w].clamp(0, 1)
