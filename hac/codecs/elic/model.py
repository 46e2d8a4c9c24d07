"""The ELIC network, in the parameter layout of the published re-implementation's checkpoints.

D. He, Z. Yang, W. Peng, R. Ma, H. Qin, Y. Wang: "ELIC: Efficient Learned Image
Compression with Unevenly Grouped Space-Channel Contextual Adaptive Coding", CVPR 2022
(arXiv:2203.10886). The weights hac loads are those of the unofficial PyTorch
re-implementation github.com/VincentChandelier/ELiC-ReImplemetation (``Network.py``,
class ``TestModel``, built on CompressAI 1.1.5), so this module reproduces *that*
model, parameter name for parameter name:

* ``g_a`` / ``g_s``: four 5x5 stride-2 (de)convolutions with three residual bottleneck
  blocks after each but the last and attention blocks after the 2nd and 4th (``g_a``)
  or at the input and after the 2nd (``g_s``); N = 192, M = 320.
* ``h_a`` / ``h_s``: the mean-scale hyperprior (``h_s`` ends in 2M channels: means, then scales).
* the latent is split into five uneven channel groups (16, 16, 32, 64, 192). Group
  ``i > 0`` gets a *channel context* from ``cc_transforms[i-1]``, which sees the first
  decoded group and the previous one (not all previous groups: the re-implementation's
  simplification of the paper);
* inside each group a *checkerboard* spatial context: the anchors (``(row + col)`` even)
  are coded first from the hyperprior and channel context alone; the non-anchors then
  also see ``context_prediction[i]``, a 5x5 convolution masked to the anchor positions;
* ``ParamAggregation[i]`` (three 1x1 convolutions) maps ``[spatial context, channel
  context, hyperprior]`` to the Gaussian means and scales (in that order) of group ``i``;
* ``entropy_bottleneck`` (192 channels) and ``gaussian_conditional``: CompressAI's.

Quantisation is ``round(y - mu) + mu`` everywhere (the re-implementation's ``ste``
inference mode), for the hyper-latent ``round(z - median) + median``. The same
arithmetic is used by :meth:`ELIC.quantize_latents` (no entropy coder) and by
:meth:`ELIC.compress` / :meth:`ELIC.decompress` (rANS bitstreams, one per group, phase
and image, as in the reference), so both give identical reconstructions.
"""

from __future__ import annotations

from typing import Callable

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import AttentionBlock
from compressai.models import CompressionModel
from compressai.models.utils import conv, deconv
from torch import Tensor, nn

from ...core.metrics import likelihood_bits

__all__ = [
    "GROUPS",
    "CODER_TABLES",
    "ResidualBottleneckBlock",
    "CheckerboardMaskedConv2d",
    "ELIC",
    "anchor_mask",
]

GROUPS = (16, 16, 32, 64, 192)  # uneven channel groups of the published models (sum = M = 320)
CHANNEL_CONTEXT_WIDTHS = (224, 128)  # hidden widths of cc_transforms (from tfc's ms2020 model)
AGGREGATION_HIDDEN = 512  # second hidden width of ParamAggregation (the first is 2M)
# Buffers of the entropy coder's tables, whose sizes depend on the trained model.
CODER_TABLES = ("._quantized_cdf", "._offset", "._cdf_length", ".scale_table")


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1)


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


def anchor_mask(height: int, width: int, device: torch.device | None = None) -> Tensor:
    """Boolean (height, width) map of the checkerboard anchors: ``(row + col)`` even."""
    rows = torch.arange(height, device=device).view(-1, 1)
    cols = torch.arange(width, device=device).view(1, -1)
    return (rows + cols) % 2 == 0


class ResidualBottleneckBlock(nn.Module):
    """``x + conv1x1(relu(conv3x3(relu(conv1x1(x)))))`` with a N/2-channel bottleneck."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv1x1(channels, channels // 2)
        self.relu = nn.ReLU()
        self.conv2 = _conv3x3(channels // 2, channels // 2)
        self.relu2 = nn.ReLU()
        self.conv3 = _conv1x1(channels // 2, channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv3(self.relu2(self.conv2(self.relu(self.conv1(x)))))


class CheckerboardMaskedConv2d(nn.Conv2d):
    """A convolution that only sees checkerboard anchors (kernel taps with odd ``row + col``).

    The mask is a persistent buffer (``mask``), as in the published checkpoints. Unlike
    the reference, which multiplies ``weight.data`` in place on every call, the mask is
    applied functionally, so the stored weights are never modified; the output is the same.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        mask = torch.zeros_like(self.weight)
        mask[:, :, 0::2, 1::2] = 1
        mask[:, :, 1::2, 0::2] = 1
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


# A "coder" decides the quantised value of one phase (anchors or non-anchors) of one
# channel group: coder(group, anchors, means, scales, mask) -> values at the masked
# positions, zero elsewhere (N, C, h, w). The slice loop below is shared by the
# estimate, the encoder and the decoder, so they cannot drift apart.
PhaseCoder = Callable[[int, bool, Tensor, Tensor, Tensor], Tensor]


class ELIC(CompressionModel):
    """ELIC as re-implemented by ELiC-ReImplemetation (see the module docstring).

    Args:
        N: channels of the transforms and of the hyper-latent (192 in the published models).
        M: latent channels (320); must equal ``sum(groups)``.
        groups: the uneven channel groups (16, 16, 32, 64, 192).

    Shape:
        ``g_a``: (B, 3, H, W) -> (B, M, H/16, W/16); ``h_a``: -> (B, N, H/64, W/64).
        H and W must be multiples of :attr:`downsampling_factor` (64).
    """

    def __init__(self, N: int = 192, M: int = 320, groups: tuple[int, ...] = GROUPS) -> None:
        super().__init__()
        if sum(groups) != M:
            raise ValueError(f"the channel groups {groups} must add up to M={M}")
        self.N, self.M, self.groups = int(N), int(M), tuple(int(g) for g in groups)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)

        def blocks(channels: int) -> list[nn.Module]:
            return [ResidualBottleneckBlock(channels) for _ in range(3)]

        self.g_a = nn.Sequential(
            conv(3, N), *blocks(N),
            conv(N, N), *blocks(N), AttentionBlock(N),
            conv(N, N), *blocks(N),
            conv(N, M), AttentionBlock(M),
        )  # fmt: skip
        self.g_s = nn.Sequential(
            AttentionBlock(M), deconv(M, N), *blocks(N),
            deconv(N, N), AttentionBlock(N), *blocks(N),
            deconv(N, N), *blocks(N),
            deconv(N, 3),
        )  # fmt: skip
        self.h_a = nn.Sequential(_conv3x3(M, N), nn.ReLU(), conv(N, N), nn.ReLU(), conv(N, N))
        self.h_s = nn.Sequential(
            deconv(N, N), nn.ReLU(), deconv(N, N * 3 // 2), nn.ReLU(), _conv3x3(N * 3 // 2, 2 * M)
        )
        wide, narrow = CHANNEL_CONTEXT_WIDTHS
        # Group i >= 1 sees the first group and (for i >= 2) group i - 1.
        self.cc_transforms = nn.ModuleList(
            nn.Sequential(
                conv(groups[0] + (i > 1) * groups[i - 1], wide, stride=1, kernel_size=5), nn.ReLU(),
                conv(wide, narrow, stride=1, kernel_size=5), nn.ReLU(),
                conv(narrow, 2 * groups[i], stride=1, kernel_size=5),
            )  # fmt: skip
            for i in range(1, len(groups))
        )
        self.context_prediction = nn.ModuleList(
            CheckerboardMaskedConv2d(g, 2 * g, kernel_size=5, padding=2, stride=1) for g in groups
        )
        # Input: spatial context (2g), channel context (2g, groups i >= 1), hyperprior (2M).
        self.ParamAggregation = nn.ModuleList(
            nn.Sequential(
                _conv1x1(2 * g + (i > 0) * 2 * g + 2 * M, 2 * M), nn.ReLU(),
                _conv1x1(2 * M, AGGREGATION_HIDDEN), nn.ReLU(),
                _conv1x1(AGGREGATION_HIDDEN, 2 * g),
            )  # fmt: skip
            for i, g in enumerate(groups)
        )

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (4 + 2)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, Tensor]) -> "ELIC":
        """Build the model with the sizes read from ``state_dict`` and load it (strict).

        Entropy-coder tables missing from ``state_dict`` are left empty (``update()`` builds them).
        """
        N = state_dict["g_a.0.weight"].size(0)
        M = state_dict["g_a.13.weight"].size(0)
        groups = tuple(state_dict[f"context_prediction.{i}.weight"].size(1) for i in range(len(GROUPS)))
        model = cls(N, M, groups)
        state = dict(state_dict)
        for key, value in model.state_dict().items():
            if key.endswith(CODER_TABLES):
                state.setdefault(key, value)
        model.load_state_dict(state)
        return model

    # ------------------------------------------------------------------ hyperprior

    def hyper_decode(self, z_hat: Tensor) -> Tensor:
        """``h_s(z_hat)``: (B, 2M, h, w), latent means then scales."""
        return self.h_s(z_hat)

    def _support(self, group: int, decoded: list[Tensor], hyper: Tensor) -> Tensor:
        """Channel context (for groups >= 1) and hyperprior parameters of ``group``."""
        if group == 0:
            return hyper
        seen = decoded[0] if group == 1 else torch.cat([decoded[0], decoded[group - 1]], dim=1)
        return torch.cat([self.cc_transforms[group - 1](seen), hyper], dim=1)

    def _gaussian(self, group: int, context: Tensor, support: Tensor) -> tuple[Tensor, Tensor]:
        means, scales = self.ParamAggregation[group](torch.cat([context, support], dim=1)).chunk(2, 1)
        return means, scales

    def decode_groups(self, hyper: Tensor, coder: PhaseCoder) -> tuple[Tensor, Tensor, Tensor]:
        """Run the group / checkerboard loop, asking ``coder`` for each phase's values.

        Args:
            hyper: ``h_s(z_hat)`` (B, 2M, h, w).
            coder: see :data:`PhaseCoder`.

        Returns:
            ``y_hat``, and the means and scales of every latent (each (B, M, h, w)).
        """
        batch, _, height, width = hyper.shape
        anchors = anchor_mask(height, width, hyper.device)
        decoded, all_means, all_scales = [], [], []
        for group, channels in enumerate(self.groups):
            support = self._support(group, decoded, hyper)
            no_context = hyper.new_zeros(batch, 2 * channels, height, width)
            means_a, scales_a = self._gaussian(group, no_context, support)
            y_anchor = coder(group, True, means_a, scales_a, anchors)
            means_n, scales_n = self._gaussian(group, self.context_prediction[group](y_anchor), support)
            y_non_anchor = coder(group, False, means_n, scales_n, ~anchors)
            decoded.append(y_anchor + y_non_anchor)
            all_means.append(torch.where(anchors, means_a, means_n))
            all_scales.append(torch.where(anchors, scales_a, scales_n))
        return torch.cat(decoded, dim=1), torch.cat(all_means, dim=1), torch.cat(all_scales, dim=1)

    def _split(self, y: Tensor) -> tuple[Tensor, ...]:
        return torch.split(y, list(self.groups), dim=1)

    # ------------------------------------------------------------------ no entropy coder

    @torch.no_grad()
    def quantize_latents(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Quantise ``y`` exactly as :meth:`compress` does, and estimate the bits.

        Args:
            y: latents ``g_a(x)`` (B, M, h, w).

        Returns:
            ``y_hat`` (B, M, h, w), and the estimated bits of ``y`` and ``z`` per image,
            ``-sum(log2 p)`` (each (B,)).
        """
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z, training=False)
        slices = self._split(y)

        def quantize(group: int, anchors: bool, means: Tensor, scales: Tensor, mask: Tensor) -> Tensor:
            values = self.gaussian_conditional.quantize(slices[group], "dequantize", means)
            return torch.where(mask, values, torch.zeros_like(values))

        y_hat, means, scales = self.decode_groups(self.hyper_decode(z_hat), quantize)
        _, y_likelihoods = self.gaussian_conditional(y, scales, means, training=False)
        return y_hat, likelihood_bits(y_likelihoods), likelihood_bits(z_likelihoods)

    # ------------------------------------------------------------------ bitstreams

    @torch.no_grad()
    def compress(self, x: Tensor) -> dict:
        """Encode ``x`` (B, 3, H, W) to rANS bitstreams.

        Returns:
            ``{"strings": [y_strings, z_strings], "shape": (h, w)}``: ``z_strings`` has one
            string per image; ``y_strings[k]`` (k = 2 * group + phase, anchors first) too.
        """
        y = self.g_a(x)
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        slices = self._split(y)
        conditional = self.gaussian_conditional
        y_strings: list[list[bytes]] = []

        def encode(group: int, anchors: bool, means: Tensor, scales: Tensor, mask: Tensor) -> Tensor:
            values, means_at = slices[group][..., mask], means[..., mask]
            indexes = conditional.build_indexes(scales[..., mask])
            y_strings.append(conditional.compress(values, indexes, means_at))
            out = torch.zeros_like(means)
            out[..., mask] = conditional.quantize(values, "dequantize", means_at)
            return out

        self.decode_groups(self.hyper_decode(z_hat), encode)
        return {"strings": [y_strings, z_strings], "shape": tuple(z.shape[-2:])}

    @torch.no_grad()
    def decompress(self, strings: list, shape: tuple[int, int]) -> dict:
        """Decode the output of :meth:`compress`; returns ``{"x_hat": ..., "y_hat": ...}`` (unclamped)."""
        y_strings, z_strings = strings
        z_hat = self.entropy_bottleneck.decompress(z_strings, shape)
        conditional = self.gaussian_conditional
        position = iter(y_strings)

        def decode(group: int, anchors: bool, means: Tensor, scales: Tensor, mask: Tensor) -> Tensor:
            means_at = means[..., mask]
            indexes = conditional.build_indexes(scales[..., mask])
            out = torch.zeros_like(means)
            out[..., mask] = conditional.decompress(next(position), indexes, means.dtype, means_at)
            return out

        y_hat, _, _ = self.decode_groups(self.hyper_decode(z_hat), decode)
        return {"x_hat": self.g_s(y_hat), "y_hat": y_hat}

    def forward(self, x: Tensor) -> dict:
        """Quantised forward pass (no training mode): ``{"x_hat", "bits"}`` with bits (B,)."""
        y = self.g_a(x)
        y_hat, y_bits, z_bits = self.quantize_latents(y)
        return {"x_hat": self.g_s(y_hat), "bits": y_bits + z_bits}
