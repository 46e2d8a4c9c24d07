"""The HiFiC network, in the parameter layout of the PyTorch port's checkpoints.

F. Mentzer, G. Toderici, M. Tschannen, E. Agustsson: "High-Fidelity Generative Image
Compression", NeurIPS 2020 (arXiv:2006.09965). The weights hac loads are those of the
PyTorch port github.com/Justin-Tan/high-fidelity-generative-compression (``src/model.py``
and ``src/network``, ``src/hyperprior.py``, ``src/compression``); this module reproduces
the inference part of its ``Model`` -- ``Encoder``, ``Generator`` and ``Hyperprior`` --
with the port's parameter names (the discriminator and the LPIPS loss are training-only):

* ``Encoder``: 7x7 conv to 60 channels, four 3x3 stride-2 convs (120, 240, 480, 960)
  with asymmetric reflect padding, a 3x3 conv to C = 220 latent channels; ChannelNorm
  (normalisation over channels, eps 1e-3) and ReLU after each but the last.
* ``Generator``: ChannelNorm, 3x3 conv to 960, ChannelNorm, ``n`` residual blocks
  (9 in the published low/high models) with a skip over all of them, four 3x3
  stride-2 transposed convs (480, 240, 120, 60), a 7x7 conv to RGB.
* ``Hyperprior``: ``analysis_net`` (3x3 conv, two 5x5 stride-2 convs with reflect
  padding, 320 channels), ``synthesis_mu`` and ``synthesis_std`` (two 5x5 stride-2
  transposed convs and a 3x3 one back to C), and ``hyperlatent_likelihood``, the port's
  factorised density for the hyper-latent (Ballé et al. 2018, Sec. 6.1: four layers
  ``H_k``, ``a_k``, ``b_k``; unlike CompressAI's ``EntropyBottleneck`` the last layer
  also has a ``tanh`` factor ``a_3``, so it cannot be loaded into one).

Inference quantisation, as the port's ``compression_forward`` in evaluation mode:
``z_hat = floor(z + 0.5)`` (no median offset), ``mu = synthesis_mu(z_hat)``,
``sigma = max(synthesis_std(z_hat), 0.11)``, ``y_hat = floor(y - mu + 0.5) + mu``;
the latent likelihood is a Gaussian (``low``/``high``) or logistic (``med``) of scale
``sigma`` convolved with a unit box. The image is reflect-padded to a multiple of 16
and the latent to a multiple of 4 (the port's ``pad_factor``), the output cropped; the
latent is padded to at least 8 x 8 too, so that images of 64 pixels or less on a side,
which the port rejects, can be coded.

Entropy coding: the port ships its own vectorised rANS coder (Craystack-based) with
tables built from these densities. hac codes the same symbols with CompressAI's rANS
coder instead, using tables built here from the port's densities with the port's
parameters (tail mass 2^-8, the 64 scales from 0.11 to 256, 16-bit precision): the
reconstruction is the port's, the bitstream format is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from compressai.ans import RansDecoder, RansEncoder
from compressai.entropy_models.entropy_models import pmf_to_quantized_cdf
from torch import Tensor, nn

from ...core.metrics import likelihood_bits

__all__ = [
    "HiFiCConfig",
    "ChannelNorm2D",
    "Encoder",
    "ResidualBlock",
    "Generator",
    "HyperpriorAnalysis",
    "HyperpriorSynthesis",
    "HyperpriorDensity",
    "Hyperprior",
    "HiFiC",
    "IndexedCoder",
    "reflect_pad",
]

ENCODER_FILTERS = (60, 120, 240, 480, 960)
GENERATOR_FILTERS = (960, 480, 240, 120, 60)
MIN_SCALE = 0.11  # lower bound of the latent scales
MIN_LIKELIHOOD = 1e-9
TAIL_MASS = 2.0**-8  # of the port's entropy models
PRECISION = 16  # bits of the quantised CDFs
SCALE_TABLE = torch.exp(torch.linspace(math.log(0.11), math.log(256.0), 64))
LIKELIHOOD_TYPES = ("gaussian", "logistic")
MIN_LATENT_SIZE = 8  # the hyper-encoder's second stride-2 conv reflect-pads by 2: its input needs > 2 rows


@dataclass(frozen=True)
class HiFiCConfig:
    """The sizes and options of one HiFiC model (default sizes: the published models').

    Attributes:
        latent_channels: C of the latent ``y`` (220).
        hyperlatent_filters: channels of the hyper-latent ``z`` (320).
        n_residual_blocks: residual blocks of the generator (9).
        likelihood_type: ``"gaussian"`` or ``"logistic"`` latent density.
        normalize_input_image: the model works on [-1, 1] images and ends in ``tanh``.
    """

    latent_channels: int = 220
    hyperlatent_filters: int = 320
    n_residual_blocks: int = 9
    likelihood_type: str = "gaussian"
    normalize_input_image: bool = False

    def __post_init__(self) -> None:
        if self.likelihood_type not in LIKELIHOOD_TYPES:
            valid = ", ".join(LIKELIHOOD_TYPES)
            raise ValueError(f"likelihood_type must be one of {valid}, got {self.likelihood_type!r}")


def reflect_pad(x: Tensor, multiple: int, minimum: int = 0) -> Tensor:
    """Pad the bottom/right of ``x`` to a multiple of ``multiple`` (and at least ``minimum``) by reflection.

    This is the port's ``pad_factor``. Reflection needs the padding to be smaller than
    the side; where it is not (tiny inputs), replicate padding is used instead.
    """
    height, width = x.shape[-2:]
    target_h = max(height + (-height) % multiple, minimum + (-minimum) % multiple)
    target_w = max(width + (-width) % multiple, minimum + (-minimum) % multiple)
    pad_h, pad_w = target_h - height, target_w - width
    if not (pad_h or pad_w):
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


class ChannelNorm2D(nn.Module):
    """Normalise each pixel over the channels (unbiased variance), then scale and shift.

    Parameters ``gamma``, ``beta`` of shape (1, C, 1, 1).
    """

    def __init__(self, channels: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, keepdim=True)  # unbiased, as torch.var's default in the port
        return self.gamma * ((x - mean) * torch.rsqrt(var + self.eps)) + self.beta


class Encoder(nn.Module):
    """(B, 3, H, W) -> (B, C, H/16, W/16); H, W multiples of 16."""

    n_downsampling_layers = 4

    def __init__(self, latent_channels: int = 220) -> None:
        super().__init__()
        f = ENCODER_FILTERS
        down = lambda cin, cout: nn.Sequential(  # noqa: E731
            nn.ReflectionPad2d((0, 1, 1, 0)), nn.Conv2d(cin, cout, 3, stride=2), ChannelNorm2D(cout), nn.ReLU()
        )
        self.conv_block1 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, f[0], 7), ChannelNorm2D(f[0]), nn.ReLU())
        self.conv_block2 = down(f[0], f[1])
        self.conv_block3 = down(f[1], f[2])
        self.conv_block4 = down(f[2], f[3])
        self.conv_block5 = down(f[3], f[4])
        self.conv_block_out = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(f[4], latent_channels, 3))

    def forward(self, x: Tensor) -> Tensor:
        for block in (self.conv_block1, self.conv_block2, self.conv_block3, self.conv_block4, self.conv_block5):
            x = block(x)
        return self.conv_block_out(x)


class ResidualBlock(nn.Module):
    """``x + norm2(conv2(pad(relu(norm1(conv1(pad(x)))))))``, 3x3 convs with reflect padding."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(channels, channels, 3)
        self.conv2 = nn.Conv2d(channels, channels, 3)
        self.norm1 = ChannelNorm2D(channels)
        self.norm2 = ChannelNorm2D(channels)

    def forward(self, x: Tensor) -> Tensor:
        residual = F.relu(self.norm1(self.conv1(self.pad(x))))
        return x + self.norm2(self.conv2(self.pad(residual)))


class Generator(nn.Module):
    """(B, C, h, w) -> (B, 3, 16h, 16w), unbounded (``tanh``/clamping is the caller's)."""

    def __init__(self, latent_channels: int = 220, n_residual_blocks: int = 9) -> None:
        super().__init__()
        f = GENERATOR_FILTERS
        self.n_residual_blocks = n_residual_blocks
        self.conv_block_init = nn.Sequential(
            ChannelNorm2D(latent_channels),
            nn.ReflectionPad2d(1),
            nn.Conv2d(latent_channels, f[0], 3),
            ChannelNorm2D(f[0]),
        )
        for index in range(n_residual_blocks):
            self.add_module(f"resblock_{index}", ResidualBlock(f[0]))
        up = lambda cin, cout: nn.Sequential(  # noqa: E731
            nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1), ChannelNorm2D(cout), nn.ReLU()
        )
        self.upconv_block1 = up(f[0], f[1])
        self.upconv_block2 = up(f[1], f[2])
        self.upconv_block3 = up(f[2], f[3])
        self.upconv_block4 = up(f[3], f[4])
        self.conv_block_out = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(f[4], 3, 7))

    def forward(self, y_hat: Tensor) -> Tensor:
        head = self.conv_block_init(y_hat)
        x = head
        for index in range(self.n_residual_blocks):
            x = getattr(self, f"resblock_{index}")(x)
        x = x + head
        for block in (self.upconv_block1, self.upconv_block2, self.upconv_block3, self.upconv_block4):
            x = block(x)
        return self.conv_block_out(x)


class HyperpriorAnalysis(nn.Module):
    """``y`` (B, C, h, w) -> ``z`` (B, N, h/4, w/4)."""

    n_downsampling_layers = 2

    def __init__(self, C: int = 220, N: int = 320) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(C, N, 3, padding=1)
        self.conv2 = nn.Conv2d(N, N, 5, stride=2, padding=2, padding_mode="reflect")
        self.conv3 = nn.Conv2d(N, N, 5, stride=2, padding=2, padding_mode="reflect")

    def forward(self, y: Tensor) -> Tensor:
        return self.conv3(F.relu(self.conv2(F.relu(self.conv1(y)))))


class HyperpriorSynthesis(nn.Module):
    """``z_hat`` (B, N, h, w) -> (B, C, 4h, 4w): the latent means or scales."""

    def __init__(self, C: int = 220, N: int = 320) -> None:
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(N, N, 5, stride=2, padding=2, output_padding=1)
        self.conv2 = nn.ConvTranspose2d(N, N, 5, stride=2, padding=2, output_padding=1)
        self.conv3 = nn.ConvTranspose2d(N, C, 3, stride=1, padding=1)

    def forward(self, z_hat: Tensor) -> Tensor:
        return self.conv3(F.relu(self.conv2(F.relu(self.conv1(z_hat)))))


class HyperpriorDensity(nn.Module):
    """The port's non-parametric density of the hyper-latent, one per channel.

    ``logits_{k+1} = L + tanh(a_k) * tanh(L)`` with ``L = softplus(H_k) @ logits_k + b_k``
    for k = 0..3 (filters 1-3-3-3-1); the CDF is ``sigmoid(logits_4)``.
    """

    def __init__(self, n_channels: int = 320, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        self.n_channels = n_channels
        widths = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        for k in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / widths[k + 1]))
            self.register_parameter(f"H_{k}", nn.Parameter(torch.full((n_channels, widths[k + 1], widths[k]), init)))
            self.register_parameter(f"a_{k}", nn.Parameter(torch.zeros(n_channels, widths[k + 1], 1)))
            self.register_parameter(f"b_{k}", nn.Parameter(torch.rand(n_channels, widths[k + 1], 1) - 0.5))
        self.n_layers = len(filters) + 1

    def cdf_logits(self, x: Tensor) -> Tensor:
        """Logits of the CDF at ``x`` of shape (n_channels, 1, K)."""
        logits = x
        for k in range(self.n_layers):
            logits = torch.bmm(F.softplus(getattr(self, f"H_{k}")), logits) + getattr(self, f"b_{k}")
            logits = logits + torch.tanh(getattr(self, f"a_{k}")) * torch.tanh(logits)
        return logits

    def likelihood_collapsed(self, x: Tensor) -> Tensor:
        """Probability of the unit interval around ``x`` (n_channels, 1, K), bounded below by 1e-9."""
        upper, lower = self.cdf_logits(x + 0.5), self.cdf_logits(x - 0.5)
        sign = -torch.sign(upper + lower).detach()  # subtract in the tail where it is accurate
        likelihood = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return likelihood.clamp_min(MIN_LIKELIHOOD)

    def forward(self, z: Tensor) -> Tensor:
        """Likelihoods of ``z`` (B, n_channels, h, w), same shape."""
        batch, channels, height, width = z.shape
        collapsed = z.permute(1, 0, 2, 3).reshape(channels, 1, -1)
        likelihood = self.likelihood_collapsed(collapsed)
        return likelihood.reshape(channels, batch, height, width).permute(1, 0, 2, 3)

    @torch.no_grad()
    def solve(self, target: float, iterations: int = 100) -> Tensor:
        """Per channel, the ``x`` where ``cdf_logits(x) = target`` (bisection; the logits increase in x)."""
        lo = torch.full((self.n_channels, 1, 1), -1.0)
        hi = torch.full((self.n_channels, 1, 1), 1.0)
        for _ in range(64):  # widen the bracket until it holds the root (the logits grow about linearly)
            low_high, high_low = self.cdf_logits(lo) > target, self.cdf_logits(hi) < target
            if not bool(low_high.any() or high_low.any()):
                break
            lo, hi = torch.where(low_high, lo * 2, lo), torch.where(high_low, hi * 2, hi)
        else:
            raise ValueError(f"the hyper-latent density never reaches CDF logit {target}; the weights are broken")
        for _ in range(iterations):
            mid = (lo + hi) / 2
            below = self.cdf_logits(mid) < target
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return ((lo + hi) / 2).reshape(self.n_channels)


def _standardized_cdf(likelihood_type: str, value: Tensor) -> Tensor:
    if likelihood_type == "gaussian":
        return 0.5 * torch.erfc(value * (-1.0 / math.sqrt(2.0)))
    return torch.sigmoid(value)


def _standardized_quantile(likelihood_type: str, p: float) -> float:
    if likelihood_type == "gaussian":
        return float(torch.special.ndtri(torch.tensor(p, dtype=torch.float64)))
    return math.log(p / (1.0 - p))


class Hyperprior(nn.Module):
    """The port's mean-scale hyperprior (module names as in its checkpoints)."""

    def __init__(self, C: int = 220, N: int = 320, likelihood_type: str = "gaussian") -> None:
        super().__init__()
        self.likelihood_type = likelihood_type
        self.analysis_net = HyperpriorAnalysis(C, N)
        self.synthesis_mu = HyperpriorSynthesis(C, N)
        self.synthesis_std = HyperpriorSynthesis(C, N)
        self.hyperlatent_likelihood = HyperpriorDensity(N)

    def latent_parameters(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """Means and scales (bounded below by 0.11) of the latent, from the decoded hyper-latent."""
        return self.synthesis_mu(z_hat), self.synthesis_std(z_hat).clamp_min(MIN_SCALE)

    def latent_likelihood(self, y_hat: Tensor, means: Tensor, scales: Tensor) -> Tensor:
        """Probability of the quantisation bin of ``y_hat`` (bounded below by 1e-9)."""
        distance = torch.abs(y_hat - means)
        upper = _standardized_cdf(self.likelihood_type, (0.5 - distance) / scales)
        lower = _standardized_cdf(self.likelihood_type, -(0.5 + distance) / scales)
        return (upper - lower).clamp_min(MIN_LIKELIHOOD)


def _quantized_cdfs(pmfs: list[Tensor]) -> tuple[list[list[int]], list[int]]:
    """Each pmf (with its overflow/tail mass last) -> a 16-bit CDF for CompressAI's rANS coder."""
    cdfs = [pmf_to_quantized_cdf(pmf.float().clamp_min(0), PRECISION).tolist() for pmf in pmfs]
    return cdfs, [len(cdf) for cdf in cdfs]


class IndexedCoder:
    """CompressAI's rANS coder with fixed tables: symbol ``s`` with table ``i`` codes ``s - offsets[i]``.

    Values outside a table's range are escaped by the coder (bypass coding), so any
    integer symbol round-trips.
    """

    def __init__(self, cdfs: list[list[int]], lengths: list[int], offsets: list[int]) -> None:
        self.cdfs, self.lengths, self.offsets = cdfs, lengths, offsets

    def encode(self, symbols: Tensor, indexes: Tensor) -> list[bytes]:
        """One string per batch item of the int tensors ``symbols`` / ``indexes`` (same shape)."""
        encoder = RansEncoder()
        return [
            encoder.encode_with_indexes(
                s.reshape(-1).tolist(), i.reshape(-1).tolist(), self.cdfs, self.lengths, self.offsets
            )
            for s, i in zip(symbols.int(), indexes.int())
        ]

    def decode(self, strings: list[bytes], indexes: Tensor) -> Tensor:
        """The int32 symbols, shaped like ``indexes``."""
        decoder = RansDecoder()
        out = torch.empty(indexes.shape, dtype=torch.int32)
        for item, (string, index) in enumerate(zip(strings, indexes.int())):
            flat = index.reshape(-1).tolist()
            values = decoder.decode_with_indexes(string, flat, self.cdfs, self.lengths, self.offsets)
            out[item] = torch.tensor(values, dtype=torch.int32).reshape(index.shape)
        return out


class HiFiC(nn.Module):
    """Encoder, generator and hyperprior of the HiFiC port (see the module docstring).

    Args:
        config: sizes and options (:class:`HiFiCConfig`).

    Shape:
        images for :meth:`encode` / returned by :meth:`decode` are in the model's range:
        [0, 1], or [-1, 1] when ``config.normalize_input_image``; any H, W.
    """

    def __init__(self, config: HiFiCConfig = HiFiCConfig()) -> None:
        super().__init__()
        self.config = config
        C, N = config.latent_channels, config.hyperlatent_filters
        self.Encoder = Encoder(C)
        self.Generator = Generator(C, config.n_residual_blocks)
        self.Hyperprior = Hyperprior(C, N, config.likelihood_type)
        self._coders: tuple[IndexedCoder, IndexedCoder] | None = None

    # ------------------------------------------------------------------ transforms

    def analysis(self, x: Tensor) -> Tensor:
        """The padded latent: ``Encoder(reflect_pad(x, 16))``, reflect-padded to a multiple of 4.

        The latent is also padded to at least 8 x 8, the least the hyper-encoder's reflect
        padding accepts: the port cannot code images of 64 pixels or less on a side at all.
        """
        y = self.Encoder(reflect_pad(x, 2**Encoder.n_downsampling_layers))
        return reflect_pad(y, 2**HyperpriorAnalysis.n_downsampling_layers, minimum=MIN_LATENT_SIZE)

    def synthesis(self, y_hat: Tensor, size: tuple[int, int]) -> Tensor:
        """``Generator(y_hat)`` (``tanh``-ed for [-1, 1] models), cropped to ``size``."""
        x_hat = self.Generator(y_hat)
        if self.config.normalize_input_image:
            x_hat = torch.tanh(x_hat)
        return x_hat[..., : size[0], : size[1]]

    # ------------------------------------------------------------------ no entropy coder

    @torch.no_grad()
    def quantize_latents(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Quantise the padded latent ``y`` as the port does, and estimate the bits.

        Returns:
            ``y_hat`` and the bits of ``y`` and ``z`` per image (each (B,)), estimated as
            the port does, ``-sum(log2(p + 1e-9))``.
        """
        prior = self.Hyperprior
        z_hat = torch.floor(prior.analysis_net(y) + 0.5)
        means, scales = prior.latent_parameters(z_hat)
        y_hat = torch.floor(y - means + 0.5) + means
        y_bits = likelihood_bits(prior.latent_likelihood(y_hat, means, scales), offset=1e-9)
        return y_hat, y_bits, likelihood_bits(prior.hyperlatent_likelihood(z_hat), offset=1e-9)

    # ------------------------------------------------------------------ bitstreams

    @torch.no_grad()
    def build_coders(self) -> tuple[IndexedCoder, IndexedCoder]:
        """The rANS tables of the hyper-latent (one per channel) and of the latent (one per scale)."""
        density = self.Hyperprior.hyperlatent_likelihood
        target = math.log(2.0 / TAIL_MASS - 1.0)
        minima = torch.ceil(-density.solve(-target)).clamp_min(0).long()
        maxima = torch.ceil(density.solve(target)).clamp_min(0).long()
        lengths = minima + maxima + 1
        samples = torch.arange(int(lengths.max())).view(1, 1, -1) - minima.view(-1, 1, 1)
        pmf = density.likelihood_collapsed(samples.float())[:, 0]
        pmfs = [torch.cat([p[:n], (1 - p[:n].sum()).clamp_min(0).view(1)]) for p, n in zip(pmf, lengths.tolist())]
        cdfs, cdf_lengths = _quantized_cdfs(pmfs)
        hyper = IndexedCoder(cdfs, cdf_lengths, (-minima).tolist())

        kind = self.config.likelihood_type
        multiplier = -_standardized_quantile(kind, TAIL_MASS / 2)
        centers = torch.ceil(SCALE_TABLE * multiplier).long()
        pmfs = []
        for scale, center in zip(SCALE_TABLE.tolist(), centers.tolist()):
            distance = torch.abs(torch.arange(2 * center + 1) - center).float()
            upper = _standardized_cdf(kind, (0.5 - distance) / scale)
            lower = _standardized_cdf(kind, (-0.5 - distance) / scale)
            pmfs.append(torch.cat([upper - lower, 2 * lower[:1]]))
        cdfs, cdf_lengths = _quantized_cdfs(pmfs)
        latent = IndexedCoder(cdfs, cdf_lengths, (-centers).tolist())
        return hyper, latent

    def _coder_pair(self) -> tuple[IndexedCoder, IndexedCoder]:
        if self._coders is None:
            self._coders = self.build_coders()
        return self._coders

    @staticmethod
    def scale_indexes(scales: Tensor) -> Tensor:
        """Index of the first table scale >= each scale (the port's and CompressAI's rule)."""
        indexes = torch.full(scales.shape, len(SCALE_TABLE) - 1, dtype=torch.int32)
        for scale in SCALE_TABLE[:-1].tolist():
            indexes -= (scales.cpu() <= scale).int()
        return indexes

    @torch.no_grad()
    def compress(self, y: Tensor) -> dict:
        """Encode the padded latent ``y`` (from :meth:`analysis`) to two strings per image."""
        hyper_coder, latent_coder = self._coder_pair()
        prior = self.Hyperprior
        z_symbols = torch.floor(prior.analysis_net(y) + 0.5)
        channel_index = torch.arange(z_symbols.shape[1], dtype=torch.int32).view(1, -1, 1, 1).expand(z_symbols.shape)
        z_strings = hyper_coder.encode(z_symbols.cpu(), channel_index)
        means, scales = prior.latent_parameters(z_symbols)
        y_symbols = torch.floor(y - means + 0.5)
        y_strings = latent_coder.encode(y_symbols.cpu(), self.scale_indexes(scales))
        return {"strings": [y_strings, z_strings], "shape": tuple(z_symbols.shape[-2:])}

    @torch.no_grad()
    def decompress(self, strings: list, shape: tuple[int, int]) -> Tensor:
        """Decode :meth:`compress`'s output to ``y_hat`` (the padded latent, quantised)."""
        hyper_coder, latent_coder = self._coder_pair()
        y_strings, z_strings = strings
        prior = self.Hyperprior
        device = next(self.parameters()).device
        channels = prior.hyperlatent_likelihood.n_channels
        index = torch.arange(channels, dtype=torch.int32).view(1, -1, 1, 1).expand(len(z_strings), channels, *shape)
        z_hat = hyper_coder.decode(z_strings, index).to(device=device, dtype=torch.float32)
        means, scales = prior.latent_parameters(z_hat)
        y_symbols = latent_coder.decode(y_strings, self.scale_indexes(scales)).to(device)
        return y_symbols.type_as(means) + means
