"""Sequential purification: a chain of codecs applied for N rounds.

One round applies every codec of the chain in order; ``rounds`` repeats that.
Repeated compression pushes an adversarial image further towards the codec's
"natural image" manifold (Räber et al., "Human Aligned Compression for Robust
Models", AdvML@CVPR 2025).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn

from ..codecs import Codec, create_codec
from ..codecs.base import check_image_batch
from ..core.metrics import psnr
from ..core.specs import ComponentSpec, parse_chain

__all__ = ["Purifier", "PurifyResult", "RoundStats", "purify", "build_chain", "MAX_ROUNDS"]

MAX_ROUNDS = 50
"""The library's limit on purification rounds (a CLI or batch config asking for more is refused); the public
app allows fewer per request (``hac.app.handlers.APP_MAX_ROUNDS``)."""


@dataclass
class RoundStats:
    """One round: bits per pixel spent by the whole chain, and PSNR vs the purifier's input (both (N,))."""

    bpp: Tensor
    psnr: Tensor


@dataclass
class PurifyResult:
    """The purified batch (N, 3, H, W) in [0, 1] and per-round statistics."""

    x: Tensor
    rounds: list[RoundStats] = field(default_factory=list)

    @property
    def total_bpp(self) -> Tensor:
        """Bits per pixel summed over rounds, (N,)."""
        return torch.stack([r.bpp for r in self.rounds]).sum(0)


def build_chain(chain: str | Codec | Sequence[str | ComponentSpec | Codec]) -> list[Codec]:
    """Codecs from a chain string (``"jpeg:q=50+webp:q=80"``), specs, or codecs."""
    if isinstance(chain, Codec):
        return [chain]
    items = parse_chain(chain) if isinstance(chain, str) else list(chain)
    if not items:
        raise ValueError("a codec chain needs at least one codec, e.g. 'jpeg:q=25'")
    return [item if isinstance(item, Codec) else create_codec(item) for item in items]


def _check_rounds(rounds: int) -> int:
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= MAX_ROUNDS:
        raise ValueError(f"rounds must be an integer in [1, {MAX_ROUNDS}], got {rounds!r}")
    return rounds


@torch.no_grad()
def purify(x: Tensor, chain, rounds: int = 1) -> PurifyResult:
    """Apply ``chain`` to ``x`` ``rounds`` times with the real codecs.

    Args:
        x: (N, 3, H, W) in [0, 1].
        chain: anything :func:`build_chain` accepts.
        rounds: 1 to ``MAX_ROUNDS``.

    Returns:
        The purified batch, and per round the chain's bpp and the PSNR against ``x``.
    """
    check_image_batch(x)
    codecs = build_chain(chain)
    rounds = _check_rounds(rounds)
    current, stats = x, []
    for _ in range(rounds):
        bpp = torch.zeros(x.shape[0], device=x.device)
        for codec in codecs:
            out = codec(current)
            current, bpp = out.x_hat, bpp + out.bpp
        stats.append(RoundStats(bpp=bpp, psnr=psnr(current, x)))
    return PurifyResult(current, stats)


class Purifier(nn.Module):
    """``nn.Module`` form of :func:`purify` (image in, purified image out), for composing
    ``nn.Sequential(purifier, classifier)``. Runs the real codecs; no gradient flows through them
    (wrap it with a threat model from :mod:`hac.attacks.classifier_attacks` to attack through it).
    """

    def __init__(self, chain, rounds: int = 1) -> None:
        super().__init__()
        self.codecs = nn.ModuleList(build_chain(chain))
        self.rounds = _check_rounds(rounds)

    def describe(self) -> str:
        chain = "+".join(codec.describe() for codec in self.codecs)
        return f"{chain} x{self.rounds}"

    def run(self, x: Tensor) -> PurifyResult:
        return purify(x, list(self.codecs), self.rounds)

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x).x
