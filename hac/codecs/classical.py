"""Classical codecs through Pillow: real bitstreams, real bits per pixel.

Images are quantised to 8 bits (as any JPEG/WebP encoder sees them), encoded
to bytes, decoded, and ``bpp = 8 * len(bytes) / (H * W)``. A batch is encoded
on a small thread pool: Pillow releases the GIL while it codes.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .base import Codec, CodecOutput, check_image_batch, pad_to_multiple, quantize_to_uint8
from .factory import register_codec
from .info import CodecInfo

__all__ = ["PillowCodec", "JpegCodec", "WebpCodec", "encode_image", "JPEG", "WEBP"]

JPEG = CodecInfo(
    description="JPEG (ITU-T T.81) through libjpeg via Pillow",
    qualities=range(1, 96),  # 95: Pillow's recommended maximum
    default_quality=75,
    start_quality=25,
    sweep=(5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 90),
    rate_attack=True,
)
WEBP = CodecInfo(
    description="lossy WebP (VP8 intra coding) through libwebp via Pillow",
    qualities=range(1, 101),
    default_quality=75,
    start_quality=80,
    sweep=(5, 10, 20, 30, 40, 50, 60, 70, 80, 90),
)


def _check_range(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def encode_image(array: np.ndarray, format: str, **options) -> tuple[bytes, np.ndarray]:
    """Encode one (H, W, 3) uint8 array with Pillow; returns (bitstream, decoded array)."""
    buffer = io.BytesIO()
    Image.fromarray(array, "RGB").save(buffer, format=format, **options)
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as decoded:
        return data, np.asarray(decoded.convert("RGB"))


class PillowCodec(Codec):
    """Shared machinery for codecs that Pillow encodes one image at a time."""

    format: str = ""
    max_threads: int = max(1, os.cpu_count() or 1)

    def pillow_options(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, array: np.ndarray) -> tuple[bytes, np.ndarray]:
        return encode_image(array, self.format, **self.pillow_options())

    def forward(self, x: Tensor) -> CodecOutput:
        check_image_batch(x)
        arrays = quantize_to_uint8(x).numpy()
        workers = min(len(arrays), self.max_threads)
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(self.encode, arrays))
        else:
            results = [self.encode(array) for array in arrays]
        decoded = np.stack([array for _, array in results])
        x_hat = torch.from_numpy(decoded).to(x.device).permute(0, 3, 1, 2).to(x.dtype) / 255
        pixels = x.shape[-2] * x.shape[-1]
        bpp = torch.tensor([8 * len(data) / pixels for data, _ in results], dtype=torch.float32, device=x.device)
        return CodecOutput(x_hat.contiguous(), bpp)


@register_codec("jpeg", info=JPEG)
class JpegCodec(PillowCodec):
    """JPEG (ITU-T T.81) through libjpeg via Pillow.

    Args:
        q: quality, one of :data:`JPEG`'s qualities (1, smallest, to Pillow's recommended maximum).
        subsampling: chroma subsampling, 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0 (Pillow's default).
    """

    format = "JPEG"

    def __init__(self, q: int = JPEG.default_quality, subsampling: int = 2) -> None:
        super().__init__()
        self.quality = JPEG.check_quality(q, "jpeg")
        self.subsampling = _check_range("jpeg subsampling", subsampling, 0, 2)
        self.params = {"q": self.quality} if subsampling == 2 else {"q": self.quality, "subsampling": self.subsampling}

    def pillow_options(self) -> dict:
        return {"quality": self.quality, "subsampling": self.subsampling}

    def surrogate(self, x: Tensor) -> Tensor:
        """Differentiable JPEG (Reich et al. 2024, via ``kornia.enhance.jpeg_codec_differentiable``).

        Kornia's model fixes 4:2:0 subsampling and works on multiples of 16, so the
        batch is replicate-padded and cropped back.
        """
        from kornia.enhance import jpeg_codec_differentiable

        padded, (height, width) = pad_to_multiple(x, 16)
        quality = torch.full((x.shape[0],), float(self.quality), device=x.device, dtype=x.dtype)
        return jpeg_codec_differentiable(padded, quality)[..., :height, :width].clamp(0, 1)


@register_codec("webp", info=WEBP)
class WebpCodec(PillowCodec):
    """Lossy WebP (VP8 intra coding) through libwebp via Pillow.

    Args:
        q: quality, one of :data:`WEBP`'s qualities (1 to 100).
        method: encoder effort, 0 (fast) to 6 (slow, smaller files).
    """

    format = "WEBP"

    def __init__(self, q: int = WEBP.default_quality, method: int = 4) -> None:
        super().__init__()
        self.quality = WEBP.check_quality(q, "webp")
        self.method = _check_range("webp method", method, 0, 6)
        self.params = {"q": self.quality} if method == 4 else {"q": self.quality, "method": self.method}

    def pillow_options(self) -> dict:
        return {"quality": self.quality, "method": self.method}
