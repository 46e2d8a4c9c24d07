"""Any codec coding a smaller image: downscale, code, upscale back.

``create_codec("hac-hyperprior:q=1,scale=0.75")`` codes each image at 3/4 of its
width and height: an antialiased bicubic downscale, the codec, and a bicubic
upscale of its reconstruction to the original size. Coding at a reduced
resolution is an ordinary rate-control tool (JPEG's 4:2:0 chroma subsampling
does it for colour, AV1's super-resolution mode for the whole picture); as a
purifier it removes what the downscale filters out, so its numbers are always
worth reading next to the same codec at full resolution, and next to JPEG
with the same ``scale``.

Bits per pixel are the codec's bits over the *original* pixels, so a resampled
codec is compared with others at the rate it really spends on the image.
"""

from __future__ import annotations

from torch import Tensor

from ..core.images import resize
from .base import Codec, CodecOutput, check_image_batch, straight_through_clamp

__all__ = ["ResampledCodec", "check_scale", "coded_size", "MIN_SCALE"]

MIN_SCALE = 0.25


def check_scale(scale: object) -> float:
    """Return ``scale`` as a float if it lies in [MIN_SCALE, 1], else raise ``ValueError``."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not MIN_SCALE <= scale <= 1:
        raise ValueError(f"codec scale must be a number in [{MIN_SCALE}, 1] (the fraction of width and height coded), got {scale!r}")
    return float(scale)


def coded_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The (height, width) a ``height`` x ``width`` image is coded at: rounded, at least 1 pixel."""
    return max(1, round(height * scale)), max(1, round(width * scale))


class ResampledCodec(Codec):
    """``inner`` applied to a ``scale``-times smaller image, its reconstruction upscaled back.

    Args:
        inner: the codec that codes the small image.
        scale: fraction of the width and height coded, in [0.25, 1].

    Shape:
        (N, 3, H, W) in [0, 1] -> x_hat (N, 3, H, W) in [0, 1], bpp (N,) over the H x W pixels.
    """

    def __init__(self, inner: Codec, scale: float) -> None:
        super().__init__()
        self.inner = inner
        self.scale = check_scale(scale)
        self.stochastic = inner.stochastic
        self.codec_name = inner.codec_name
        self.params = {**inner.params, "scale": self.scale}

    def _down(self, x: Tensor) -> Tensor:
        return resize(x, coded_size(*x.shape[-2:], self.scale)).clamp(0, 1)

    def forward(self, x: Tensor) -> CodecOutput:
        """Downscale, code with ``inner``, upscale; bpp is ``inner``'s bits over H x W."""
        check_image_batch(x)
        small = self._down(x)
        out = self.inner(small)
        x_hat = resize(out.x_hat, tuple(x.shape[-2:])).clamp(0, 1)
        return CodecOutput(x_hat.contiguous(), out.bpp * small[0, 0].numel() / x[0, 0].numel())

    def has_surrogate(self) -> bool:  # an instance's answer: the inner codec decides
        return self.inner.has_surrogate()

    def surrogate(self, x: Tensor) -> Tensor:
        """Differentiable ``forward(x).x_hat``: the resizes as they are, ``inner``'s surrogate between them.

        Raises:
            NotImplementedError: ``inner`` has no surrogate (use BPDA).
        """
        check_image_batch(x)
        return straight_through_clamp(resize(self.inner.surrogate(self._down(x)), tuple(x.shape[-2:])))
