"""A differentiable proxy of the bits JPEG spends, to guide rate attacks on JPEG (:mod:`hac.attacks.codec_attacks`).

It follows JPEG's own transform (JFIF YCbCr, chroma subsampling, 8x8 DCT, libjpeg's
quality-scaled tables) but is not a bit count: the rates an attack reaches are always
measured with the real encoder.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import check_image_batch, pad_to_multiple

__all__ = ["jpeg_quantization_tables", "jpeg_rate_proxy"]

# libjpeg's base quantisation tables (ITU-T T.81 Annex K.1 luminance, K.2 chrominance), row-major.
_JPEG_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_JPEG_CHROMA = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32),
)  # fmt: skip
# JFIF RGB -> YCbCr rows (the +128 chroma offset cancels against JPEG's level shift).
_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
# Pillow's `subsampling` -> chroma (vertical, horizontal) factors: 4:4:4, 4:2:2, 4:2:0.
_CHROMA_FACTORS = {0: (1, 1), 1: (1, 2), 2: (2, 2)}


def jpeg_quantization_tables(quality: int) -> Tensor:
    """libjpeg's quality-scaled quantisation tables (luma, chroma) as a float (2, 8, 8) tensor.

    ``jpeg_quality_scaling``: ``scale = 5000 / q`` below 50, else ``200 - 2q``; each
    entry ``(base * scale + 50) // 100`` clamped to [1, 255] (baseline JPEG), as
    Pillow writes them.
    """
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"jpeg quality must be an integer in [1, 100], got {quality!r}")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    base = torch.tensor((_JPEG_LUMA, _JPEG_CHROMA), dtype=torch.int64)
    return ((base * scale + 50) // 100).clamp(1, 255).float().view(2, 8, 8)


def _dct_matrix(dtype: torch.dtype, device: torch.device) -> Tensor:
    """The orthonormal 8-point DCT-II matrix ``D``; ``D @ block @ D.T`` is JPEG's 2-D FDCT."""
    k = torch.arange(8, dtype=torch.float64)
    matrix = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / 16) * math.sqrt(2 / 8)
    matrix[0] /= math.sqrt(2)
    return matrix.to(dtype=dtype, device=device)


def _block_log_magnitudes(planes: Tensor, table: Tensor, dct: Tensor) -> Tensor:
    """Sum over 8x8 blocks of ``log2(1 + |DCT(block) / table|)`` per image: (N, C, H, W) -> (N,)."""
    batch, channels, height, width = planes.shape
    blocks = planes.reshape(batch, channels, height // 8, 8, width // 8, 8).transpose(3, 4)
    coefficients = dct @ blocks @ dct.T
    return torch.log2(1 + (coefficients / table).abs()).flatten(1).sum(1)


def jpeg_rate_proxy(x: Tensor, quality: int, subsampling: int = 2) -> Tensor:
    """A differentiable *proxy* of the bits JPEG spends: its gradient guides the rate attack.

    The image goes through JPEG's own transform: JFIF YCbCr, level shift, chroma
    averaged over 2x2 (4:2:0, Pillow's default) or 1x2 (4:2:2) pixels, replicate
    padding to whole blocks, the 8x8 DCT (as a matrix product) and division by
    libjpeg's quality-scaled tables (:func:`jpeg_quantization_tables`). The proxy is
    ``sum log2(1 + |coefficient / q|)`` over all coefficients: unrounded, and with
    no Huffman or run-length model, so it is **not** a bit count. It grows with the
    size of the quantised coefficients, which is what JPEG's entropy coder pays
    for; the rate an attack reaches is always measured with the real encoder.

    Shape:
        x (N, 3, H, W) in [0, 1] -> (N,), differentiable in ``x``.
    """
    check_image_batch(x)
    if subsampling not in _CHROMA_FACTORS:
        raise ValueError(f"jpeg subsampling must be 0 (4:4:4), 1 (4:2:2) or 2 (4:2:0), got {subsampling!r}")
    tables = jpeg_quantization_tables(int(quality)).to(dtype=x.dtype, device=x.device)
    dct = _dct_matrix(x.dtype, x.device)
    rows, cols = _CHROMA_FACTORS[subsampling]
    padded, _ = pad_to_multiple(x, 8 * max(rows, cols))
    ycbcr = torch.einsum("rc,nchw->nrhw", torch.tensor(_YCBCR, dtype=x.dtype, device=x.device), padded * 255)
    luma = ycbcr[:, :1] - 128
    chroma = ycbcr[:, 1:]
    if rows * cols > 1:
        chroma = F.avg_pool2d(chroma, (rows, cols))
    return _block_log_magnitudes(luma, tables[0], dct) + _block_log_magnitudes(chroma, tables[1], dct)
