"""Learned-surrogate BPDA: a small U-Net trained to imitate a purifier, used as its backward pass.

Codecs without a differentiable surrogate (WebP, AVIF, a user's codec) can
only be attacked with an identity backward pass (BPDA), which ignores what the
codec does. Räber et al., "Keep It Real" (arXiv 2508.05489, 2025) train a small
U-Net to imitate the purifier on the images being attacked and use its gradient
instead. :func:`train_surrogate` does that on the fly: inputs are the images
plus uniform noise in a ball a few times the attack's budget, targets the real
purifier's outputs, L1 loss. The net is residual (output = input + U-Net(input))
and starts at zero, so before training it *is* BPDA, and training can only move
it towards the codec.

:class:`SurrogateCache` keeps trained nets on disk (safetensors) under a key
naming the purifier, so a second audit of the same codec reuses its net.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.cancel import StopCheck
from ..core.files import atomic_path
from ..defence.purify import Purifier

__all__ = ["SurrogateUNet", "LearnedSurrogatePurifier", "train_surrogate", "SurrogateCache", "surrogate_key"]

logger = logging.getLogger(__name__)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GELU(), nn.Conv2d(cout, cout, 3, padding=1), nn.GELU())


class SurrogateUNet(nn.Module):
    """Two-level residual U-Net: (N, 3, H, W) in [0, 1] -> (N, 3, H, W), identity at initialisation."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.width = width
        self.down = _block(3, width)
        self.mid = _block(width, 2 * width)
        self.up = _block(3 * width, width)
        self.out = nn.Conv2d(width, 3, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        padded = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
        skip = self.down(padded)
        mid = F.interpolate(self.mid(F.avg_pool2d(skip, 2)), size=skip.shape[-2:], mode="nearest")
        residual = self.out(self.up(torch.cat([skip, mid], 1)))[..., :h, :w]
        return x + residual


class LearnedSurrogatePurifier(nn.Module):
    """The real purifier forward; the gradient of ``net`` backward.

    Input and output (N, 3, H, W) in [0, 1].
    """

    def __init__(self, purifier: Purifier, net: SurrogateUNet) -> None:
        super().__init__()
        self.purifier = purifier
        self.net = net.eval().requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            real = self.purifier(x.detach())
        approx = self.net(x)
        return real + (approx - approx.detach())


def train_surrogate(purifier: Purifier, x: Tensor, radius: float, steps: int = 150, batch: int = 4,
                    lr: float = 2e-3, width: int = 16, seed: int = 0,
                    stop: StopCheck | None = None) -> tuple[SurrogateUNet, dict]:
    """Fit a :class:`SurrogateUNet` to ``purifier`` around the images ``x``.

    Args:
        purifier: the real defence (its codecs run forward only).
        x: (N, 3, H, W) in [0, 1], the images whose neighbourhood matters.
        radius: L-inf radius of the uniform noise added to the inputs (e.g. 4x the attack's eps).
        steps: optimiser steps; batch: images per step; lr: Adam's learning rate.
        seed: seeds the noise and the image draws.
        stop: optional check run before every step (see :mod:`hac.core.cancel`).

    Returns:
        The net (eval mode) and ``{"l1_identity", "l1_trained", "steps"}``: mean L1 error against the
        real purifier on fresh noisy inputs, of the identity (BPDA) and of the trained net.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"surrogate steps must be a positive integer, got {steps!r}")
    generator = torch.Generator().manual_seed(seed)
    net = SurrogateUNet(width).to(x.device)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)

    def draw(n: int) -> tuple[Tensor, Tensor]:
        index = torch.randint(0, x.shape[0], (n,), generator=generator)
        noise = (torch.rand((n, *x.shape[1:]), generator=generator) * 2 - 1).to(x.device) * radius
        inputs = torch.round((x[index] + noise).clamp(0, 1) * 255) / 255
        with torch.no_grad():
            return inputs, purifier(inputs)

    net.train()
    with torch.enable_grad():
        for _ in range(steps):
            if stop is not None:
                stop()
            inputs, target = draw(batch)
            loss = F.l1_loss(net(inputs), target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    net.eval()
    inputs, target = draw(batch)
    with torch.no_grad():
        stats = {"l1_identity": F.l1_loss(inputs, target).item(), "l1_trained": F.l1_loss(net(inputs), target).item(), "steps": steps}
    logger.info("learned surrogate of %s: L1 %.4f (identity) -> %.4f", purifier.describe(), stats["l1_identity"], stats["l1_trained"])
    return net, stats


def surrogate_key(purifier: Purifier, radius: float, steps: int, width: int = 16) -> str:
    """A file-name-safe key naming the purifier (its codecs, rounds, weights) and the training settings."""
    prints = "+".join(codec.weights_fingerprint() or "-" for codec in purifier.codecs)
    text = f"{purifier.describe()}|{prints}|r={radius:.6f}|s={steps}|w={width}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SurrogateCache:
    """Trained surrogate nets on disk, one safetensors file per :func:`surrogate_key` (``folder=None``: none kept)."""

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = None if folder is None else Path(folder)

    def load(self, key: str, width: int = 16) -> SurrogateUNet | None:
        if self.folder is None or not (self.folder / f"{key}.safetensors").exists():
            return None
        from safetensors.torch import load_file

        net = SurrogateUNet(width)
        net.load_state_dict(load_file(self.folder / f"{key}.safetensors"))
        return net.eval()

    def save(self, key: str, net: SurrogateUNet) -> Path | None:
        if self.folder is None:
            return None
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{key}.safetensors"
        with atomic_path(path) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp))
        return path
