"""Per-image metrics: quality of [0, 1] batches, norms of perturbations, and estimated bits from likelihoods."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

__all__ = ["psnr", "ms_ssim", "linf", "l2", "likelihood_bits", "bits_per_pixel"]


def psnr(x: Tensor, reference: Tensor, max_psnr: float = 100.0) -> Tensor:
    """PSNR in dB per image, (N,), for (N, C, H, W) batches in [0, 1]; identical images give ``max_psnr``."""
    mse = (x.detach().float() - reference.detach().float()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse.clamp_min(10 ** (-max_psnr / 10)))).clamp(max=max_psnr)


def ms_ssim(x: Tensor, reference: Tensor) -> Tensor:
    """MS-SSIM per image, (N,) (Wang et al. 2003, via ``pytorch_msssim``).

    Images smaller than 161 px on a side (the five-scale minimum) fall back to
    single-scale SSIM.
    """
    from pytorch_msssim import ms_ssim as _ms_ssim, ssim as _ssim

    x, reference = x.detach().float(), reference.detach().float()
    if min(x.shape[-2:]) > 160:
        return _ms_ssim(x, reference, data_range=1.0, size_average=False)
    return _ssim(x, reference, data_range=1.0, size_average=False, win_size=min(11, min(x.shape[-2:]) // 2 * 2 - 1 or 1))


def linf(delta: Tensor) -> Tensor:
    """L-infinity norm per image, (N,)."""
    return delta.detach().flatten(1).abs().amax(1)


def l2(delta: Tensor) -> Tensor:
    """L2 norm per image, (N,)."""
    return delta.detach().flatten(1).norm(dim=1)


def likelihood_bits(likelihoods: Tensor, offset: float = 0.0) -> Tensor:
    """Estimated bits of each image, ``-sum(log2(p + offset))``, from a (N, ...) likelihood tensor -> (N,).

    ``offset`` guards against ``log2(0)`` where a model's likelihoods are not floored (HiFiC's port adds 1e-9).
    """
    return -torch.log2(likelihoods if offset == 0 else likelihoods + offset).flatten(1).sum(1)


def bits_per_pixel(likelihoods: Mapping[str, Tensor], pixels: int) -> Tensor:
    """Estimated bits per pixel of each image (N,) from a CompressAI output's ``likelihoods`` (``y``, ``z``, ...)."""
    return sum(likelihood_bits(lik) for lik in likelihoods.values()) / pixels
