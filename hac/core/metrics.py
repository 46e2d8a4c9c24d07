"""Per-image quality metrics on [0, 1] batches."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["psnr", "ms_ssim", "linf", "l2"]


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
