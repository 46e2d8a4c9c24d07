"""Tiny defences for the audit tests (also imported by the kill-and-resume subprocess)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hac.audit import AuditImages
from hac.codecs.base import Codec, CodecOutput

SIZE = 32
CLASSES = 10


class TinyClassifier(nn.Module):
    """(N, 3, 32, 32) in [0, 1] -> 10 logits: a random conv layer, pooled, then linear (seeded)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 16, 5, padding=2)
        self.head = nn.Linear(16 * 4 * 4, CLASSES)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=generator) * (0.3 if p.dim() > 1 else 0.05)
        self.name = "tiny"

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.conv(x - 0.5))
        return self.head(nn.functional.adaptive_avg_pool2d(h, 4).flatten(1)) * 4


class ShatteredClassifier(nn.Module):
    """A masked defence built into the model: the input is quantised to 8 levels by rounding (zero gradient)."""

    def __init__(self, seed: int = 0, levels: int = 8) -> None:
        super().__init__()
        self.net = TinyClassifier(seed)
        self.levels = levels
        self.name = "tiny-shattered"

    def forward(self, x: Tensor) -> Tensor:
        return self.net(torch.round(x * (self.levels - 1)) / (self.levels - 1))


class ZeroBackwardQuantiser(Codec):
    """A purifier whose claimed differentiable surrogate has a zero gradient: hard quantisation to ``levels``."""

    def __init__(self, levels: int = 8) -> None:
        super().__init__()
        self.levels = levels

    def _quantise(self, x: Tensor) -> Tensor:
        return torch.round(x * (self.levels - 1)) / (self.levels - 1)

    def forward(self, x: Tensor) -> CodecOutput:
        return CodecOutput(self._quantise(x), torch.full((x.shape[0],), 3.0, device=x.device))

    def surrogate(self, x: Tensor) -> Tensor:
        return self._quantise(x)

    def describe(self) -> str:
        return f"zero-backward-quantiser:levels={self.levels}"


def tiny_images(classifier: nn.Module, n: int = 12, seed: int = 0, wrong: int = 1, purifier: nn.Module | None = None) -> AuditImages:
    """``n`` smooth random 8-bit images labelled with the defence's own clean predictions; the first ``wrong`` mislabelled."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((n, 3, 8, 8), generator=generator)
    x = torch.round(nn.functional.interpolate(coarse, size=SIZE, mode="bilinear", align_corners=False) * 255) / 255
    with torch.no_grad():
        y = classifier(x if purifier is None else purifier(x)).argmax(1)
    y[:wrong] = (y[:wrong] + 1) % CLASSES
    return AuditImages.from_tensors([f"img{k:02d}" for k in range(n)], x, y)
