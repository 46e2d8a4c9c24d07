"""The one interface every codec implements.

A codec maps a batch of images to reconstructions and the bits it spent:

    x: (N, 3, H, W) float in [0, 1]  ->  CodecOutput(x_hat (N, 3, H, W) in [0, 1], bpp (N,))

Any H x W is accepted: codecs that need a multiple of some stride pad inside
and crop back. ``forward`` runs the real codec (real bitstream where there is
one); ``surrogate`` is an optional differentiable stand-in for ``forward``'s
reconstruction, used by the straight-through threat model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.specs import ComponentSpec, format_spec

__all__ = ["Codec", "CodecOutput", "pad_to_multiple", "check_image_batch", "quantize_to_uint8", "straight_through_clamp"]


@dataclass
class CodecOutput:
    """Reconstruction ``x_hat`` (N, 3, H, W) in [0, 1] and bits per pixel ``bpp`` (N,)."""

    x_hat: Tensor
    bpp: Tensor


def check_image_batch(x: Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` is a float (N, 3, H, W) batch."""
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected an image batch of shape (N, 3, H, W), got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"expected a float image batch in [0, 1], got dtype {x.dtype}")


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Replicate-pad the bottom/right of ``x`` to a multiple of ``multiple``.

    Returns the padded batch and the original (H, W) to crop back to.
    """
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x, (height, width)


def straight_through_clamp(x: Tensor) -> Tensor:
    """``x.clamp(0, 1)`` in the forward pass, the identity in the backward pass."""
    return x + (x.clamp(0, 1) - x).detach()


class Codec(nn.Module):
    """Base class: subclasses implement :meth:`forward` (and optionally :meth:`surrogate`).

    Attributes:
        codec_name: the registry name, set by :func:`hac.codecs.create_codec`.
        params: the parameters the codec was created with, for reports.
    """

    codec_name: str = ""
    stochastic: bool = False
    pass_cost: float = 1.0
    """Cost of one pass on a 224x224 image in classifier steps (an efficientnet-lite0 forward and backward,
    0.07 s on one CPU thread), at least 1; what :mod:`hac.defence.budget` weighs a codec pass by."""

    def __init__(self) -> None:
        super().__init__()
        self.params: dict = {}

    def forward(self, x: Tensor) -> CodecOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def train(self, mode: bool = True) -> "Codec":
        """Codecs are inference modules: their networks stay in eval mode (quantisation, never noise)."""
        super().train(mode)
        for module in self.children():
            module.eval()
        return self

    def surrogate(self, x: Tensor) -> Tensor:
        """Differentiable approximation of ``forward(x).x_hat``.

        Raises:
            NotImplementedError: the codec has none (use BPDA instead).
        """
        raise NotImplementedError(f"codec {self.describe()!r} has no differentiable surrogate; use the bpda threat model")

    @classmethod
    def has_surrogate(cls) -> bool:
        """Whether this codec class overrides :meth:`surrogate` (callable on the class or an instance)."""
        return cls.surrogate is not Codec.surrogate

    def weights_fingerprint(self) -> str | None:
        """sha256 (16 hex digits) of the codec's tensors (weights and buffers), ``None`` if it has none.

        Two codecs with the same spec but different weight files have different fingerprints,
        so a results store can tell that its cells came from other weights.
        """
        state = self.state_dict()
        if not state:
            return None
        digest = hashlib.sha256()
        for key, tensor in sorted(state.items()):
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:16]

    def describe(self) -> str:
        """The spec string that recreates this codec, e.g. ``jpeg:q=25``."""
        return format_spec(ComponentSpec(self.codec_name, self.params))

    def extra_repr(self) -> str:
        return self.describe()


def quantize_to_uint8(x: Tensor) -> Tensor:
    """[0, 1] float -> uint8 (N, H, W, 3) on the CPU, as an 8-bit codec sees it."""
    return (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().contiguous()
