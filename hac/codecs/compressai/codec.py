"""Any CompressAI model behind hac's codec interface, in two modes that agree.

``entropy-coded`` runs the real codec: ``model.compress`` writes rANS bitstreams,
``model.decompress`` reads them back, and ``bpp = 8 * bytes / (H * W)``.

``fast`` skips the entropy coder: it quantises the latents exactly as the
encoder does and estimates ``bpp = -sum(log2 likelihoods) / (H * W)``. What
"exactly as the encoder does" means depends on the entropy model:

* factorized prior (``EntropyBottleneck``): ``y_hat = round(y - median) + median``;
* scale hyperprior: ``y_hat = round(y)``;
* mean-scale hyperprior: ``y_hat = round(y - mu) + mu``, ``mu`` from the hyperprior;
* autoregressive context models (``mbt2018``, ``cheng2020-*``): ``mu`` depends on
  the already decoded ``y_hat`` in raster order, so it is computed position by
  position, as ``compress`` does, but for the whole batch at once and without
  the rANS coder.

CompressAI's eval-mode ``forward`` agrees with the first three but not with the
fourth (it uses ``round(y)`` and a context computed in parallel), which is why
the quantisation is written out here rather than taken from ``forward``.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from compressai.models import (
    CompressionModel,
    FactorizedPrior,
    JointAutoregressiveHierarchicalPriors,
    MeanScaleHyperprior,
    ScaleHyperprior,
)
from torch import Tensor

from ...core.metrics import likelihood_bits
from ..base import Codec, CodecOutput, check_image_batch, pad_to_multiple, straight_through_clamp
from ..info import CodecMode

__all__ = ["CompressAICodec", "latent_kind"]

logger = logging.getLogger(__name__)

# The latent structures this module knows how to quantise; order matters
# (subclasses first): every autoregressive model is also a mean-scale hyperprior.
_KINDS = (
    (JointAutoregressiveHierarchicalPriors, "autoregressive"),
    (MeanScaleHyperprior, "mean-scale"),
    (ScaleHyperprior, "scale"),
    (FactorizedPrior, "factorized"),
)


def latent_kind(model: CompressionModel) -> str:
    """The latent structure of ``model``: "factorized", "scale", "mean-scale" or "autoregressive".

    Raises:
        ValueError: the model class is none of the supported CompressAI families.
    """
    for model_class, kind in _KINDS:
        if isinstance(model, model_class):
            return kind
    supported = ", ".join(model_class.__name__ for model_class, _ in _KINDS)
    raise ValueError(
        f"unsupported CompressAI model {type(model).__name__}; supported families (and subclasses): {supported}"
    )


class CompressAICodec(Codec):
    """A built CompressAI model as a hac codec.

    Args:
        model: a ``FactorizedPrior``, ``ScaleHyperprior``, ``MeanScaleHyperprior``
            or ``JointAutoregressiveHierarchicalPriors`` (including ``Cheng2020*``)
            instance, or a subclass. Its entropy models' CDF tables are built with
            ``model.update()`` if they are missing (kept if present).
        mode: ``"fast"`` (quantised forward pass, estimated bpp, batched) or
            ``"entropy-coded"`` (real bitstream, real bpp). Both give the same
            reconstruction.

    Shape:
        input (N, 3, H, W) float in [0, 1], any H and W (replicate-padded to the
        model's downsampling factor inside and cropped back); output ``x_hat``
        (N, 3, H, W) in [0, 1] and ``bpp`` (N,).
    """

    pass_cost = 3.0  # hac-hyperprior q1, 224x224, one CPU thread: 0.12-0.20 s against 0.07 s

    def __init__(self, model: CompressionModel, mode: CodecMode | str = CodecMode.FAST) -> None:
        super().__init__()
        self.mode = CodecMode(mode)
        self.kind = latent_kind(model)
        self.model = model.eval()
        self.multiple = int(getattr(model, "downsampling_factor", 64))
        if model.update():  # a no-op when the CDF tables came with the weights
            logger.debug("built the entropy coder's CDF tables for %s", type(model).__name__)
        self.codec_name = type(model).__name__  # create_codec replaces it with the registered name
        self.params = {"mode": self.mode.value}

    def forward(self, x: Tensor) -> CodecOutput:
        """Compress and reconstruct ``x`` (N, 3, H, W) in [0, 1]; returns x_hat in [0, 1] and bpp (N,)."""
        check_image_batch(x)
        dtype = next(self.model.parameters()).dtype
        with torch.no_grad():
            padded, (height, width) = pad_to_multiple(x.to(dtype), self.multiple)
            if self.mode is CodecMode.FAST:
                y = self.model.g_a(padded)
                y_hat, bits = self.quantize_latents(y)
                x_hat = self.model.g_s(y_hat)
            else:
                x_hat, bits = self._entropy_code(padded)
        x_hat = x_hat[..., :height, :width].clamp(0, 1).to(x.dtype)
        return CodecOutput(x_hat.contiguous(), (bits / (height * width)).float())

    def surrogate(self, x: Tensor) -> Tensor:
        """Differentiable ``forward(x).x_hat``: straight-through rounding of the latents.

        ``y_hat = y + (round(y - mu) + mu - y).detach()`` with ``mu`` exactly as in
        ``fast`` (so the forward value matches it up to float rounding), then
        ``g_s`` and a straight-through clamp. The hyper-latent ``z`` only moves
        ``mu`` and the scales, which enter detached, so it carries no gradient.

        Shape:
            x (N, 3, H, W) in [0, 1] -> x_hat (N, 3, H, W) in [0, 1]; gradients flow to x.
        """
        check_image_batch(x)
        padded, (height, width) = pad_to_multiple(x, self.multiple)
        y = self.model.g_a(padded)
        with torch.no_grad():
            y_hat, _ = self.quantize_latents(y.detach())
        x_hat = self.model.g_s(y + (y_hat - y).detach())
        return straight_through_clamp(x_hat[..., :height, :width])

    def rd_surrogate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Differentiable reconstruction *and* estimated bits: ``fast`` mode's values, straight-through gradients.

        A rate-distortion surrogate for attacking the codec itself (or training it
        against such attacks). Every quantisation is written ``q + (v - v.detach())``
        with ``q`` computed exactly as :meth:`quantize_latents` computes it, so the
        forward values are ``fast`` mode's and the backward pass treats rounding as
        the identity:

        * factorized prior: ``y = g_a(x)``, ``y_hat`` rounded around the entropy
          bottleneck's medians, bits from the bottleneck's likelihood;
        * hyperpriors: ``z = h_a(y)`` (``h_a(|y|)`` for the scale hyperprior),
          ``z_hat`` rounded around the medians and its bits from the bottleneck;
          ``h_s(z_hat)`` gives the scales (and means); ``y_hat`` rounded around the
          means and its bits from the Gaussian conditional's likelihood, lower
          bound included;
        * autoregressive models: ``y_hat`` is the serial decoder's value; once it
          is known, the masked convolution ``context_prediction(y_hat)`` run in
          parallel is exactly the context each position saw, so the scales and
          means come from ``entropy_parameters`` with gradients (equal to the
          serial ones up to float rounding, about 1e-8).

        The model's training flag plays no part (quantisation is always rounding,
        never noise), so this also runs on a model that is being trained.

        Shape:
            x (N, 3, H, W) in [0, 1] -> ``x_hat`` (N, 3, H, W) in [0, 1] (clamped
            straight-through), equal to ``forward(x).x_hat`` in ``fast`` mode, and
            ``bits`` (N,), equal to ``forward(x).bpp * H * W`` up to float rounding.
            Gradients flow to ``x`` from both.
        """
        check_image_batch(x)
        model = self.model
        padded, (height, width) = pad_to_multiple(x.to(next(model.parameters()).dtype), self.multiple)
        y = model.g_a(padded)
        if self.kind == "factorized":
            y_hat, bits = self._bottleneck_rd(y)
        else:
            z_hat, bits = self._bottleneck_rd(model.h_a(torch.abs(y) if self.kind == "scale" else y))
            params = model.h_s(z_hat)
            conditional = model.gaussian_conditional
            if self.kind == "scale":
                scales, means = params, None
                with torch.no_grad():
                    y_q = conditional.quantize(y.detach(), "dequantize")
            elif self.kind == "mean-scale":
                scales, means = params.chunk(2, 1)
                with torch.no_grad():
                    y_q = conditional.quantize(y.detach(), "dequantize", means.detach())
            else:
                with torch.no_grad():
                    _, serial_means = self._autoregressive_parameters(y.detach(), params.detach())
                    y_q = conditional.quantize(y.detach(), "dequantize", serial_means)
            y_hat = y_q + (y - y.detach())
            if self.kind == "autoregressive":
                context = model.context_prediction(y_hat)
                scales, means = model.entropy_parameters(torch.cat((params, context), dim=1)).chunk(2, 1)
            likelihoods = conditional._likelihood(y_hat, scales, means)
            if conditional.use_likelihood_bound:
                likelihoods = conditional.likelihood_lower_bound(likelihoods)
            bits = bits + likelihood_bits(likelihoods)
        x_hat = model.g_s(y_hat)[..., :height, :width]
        x_hat = x_hat.clamp(0, 1).detach() + (x_hat - x_hat.detach())  # exact-valued straight-through clamp
        return x_hat.to(x.dtype), bits

    def _bottleneck_rd(self, latents: Tensor) -> tuple[Tensor, Tensor]:
        """Straight-through ``round(v - median) + median`` and its bits (N,) under the entropy bottleneck.

        The likelihood is the bottleneck's own (``_likelihood`` and lower bound),
        laid out per channel as ``EntropyBottleneck.forward`` lays it out, so its
        value is the ``fast`` mode's.
        """
        bottleneck = self.model.entropy_bottleneck
        with torch.no_grad():
            quantized, _ = bottleneck(latents.detach(), training=False)
        latents_hat = quantized + (latents - latents.detach())
        batch, channels = latents.shape[:2]
        likelihoods, _, _ = bottleneck._likelihood(latents_hat.transpose(0, 1).reshape(channels, 1, -1))
        if bottleneck.use_likelihood_bound:
            likelihoods = bottleneck.likelihood_lower_bound(likelihoods)
        likelihoods = likelihoods.reshape(channels, batch, *latents.shape[2:]).transpose(0, 1)
        return latents_hat, likelihood_bits(likelihoods)

    @torch.no_grad()
    def quantize_latents(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Quantise the latents ``y`` (N, M, h, w) as the encoder does.

        Returns:
            ``y_hat`` (N, M, h, w), equal to what ``decompress`` reconstructs, and the
            estimated bits (N,) of ``y`` plus the hyper-latent ``z``.
        """
        model = self.model
        if self.kind == "factorized":
            y_hat, y_likelihoods = model.entropy_bottleneck(y, training=False)
            return y_hat, likelihood_bits(y_likelihoods)
        z = model.h_a(torch.abs(y) if self.kind == "scale" else y)
        z_hat, z_likelihoods = model.entropy_bottleneck(z, training=False)
        params = model.h_s(z_hat)
        if self.kind == "scale":
            scales, means = params, None
        elif self.kind == "mean-scale":
            scales, means = params.chunk(2, 1)
        else:
            scales, means = self._autoregressive_parameters(y, params)
        y_hat, y_likelihoods = model.gaussian_conditional(y, scales, means=means, training=False)
        return y_hat, likelihood_bits(y_likelihoods) + likelihood_bits(z_likelihoods)

    def _autoregressive_parameters(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """Scales and means of ``y`` from the serial context model, batched.

        The same arithmetic as CompressAI's ``_compress_ar``: positions in raster
        order, each one's context being the 5x5 masked convolution of the
        ``round(y - mu) + mu`` values already decoded above and to its left.
        ``compress`` runs it one image at a time; batched convolutions may round
        differently in the last bit (seen with 32-channel models: ``mu`` off by
        1.5e-8, reconstructions by 1e-7), so a latent lying within that distance
        of a rounding boundary could round the other way (odds about 3e-8 per
        latent); a per-image loop would be exact but made this step 4x slower.

        Args:
            y: latents (N, M, h, w).
            params: hyperprior output ``h_s(z_hat)`` (N, 2M, h, w).

        Returns:
            scales and means, each (N, M, h, w).
        """
        model = self.model
        context = model.context_prediction
        kernel = context.weight.shape[-1]
        pad = (kernel - 1) // 2
        weight = context.weight * context.mask
        batch, channels, height, width = y.shape
        # Not yet decoded positions stay zero; the mask hides them anyway.
        y_hat = y.new_zeros(batch, channels, height + 2 * pad, width + 2 * pad)
        scales = y.new_empty(y.shape)
        means = y.new_empty(y.shape)
        for row in range(height):
            for col in range(width):
                crop = y_hat[:, :, row : row + kernel, col : col + kernel]
                ctx = F.conv2d(crop, weight, bias=context.bias)
                local = params[:, :, row : row + 1, col : col + 1]
                gaussian = model.entropy_parameters(torch.cat((local, ctx), dim=1))
                scale, mean = gaussian[:, :, 0, 0].chunk(2, 1)
                scales[:, :, row, col] = scale
                means[:, :, row, col] = mean
                y_hat[:, :, row + pad, col + pad] = torch.round(y[:, :, row, col] - mean) + mean
        return scales, means

    def _entropy_code(self, padded: Tensor) -> tuple[Tensor, Tensor]:
        """Real ``compress`` / ``decompress`` of a padded batch; returns x_hat and bits (N,)."""
        encoded = self.model.compress(padded)
        strings = encoded["strings"]
        bits = torch.tensor(
            [8 * sum(len(per_latent[index]) for per_latent in strings) for index in range(padded.shape[0])],
            dtype=torch.float64,
            device=padded.device,
        )
        x_hat = self.model.decompress(strings, encoded["shape"])["x_hat"]
        return x_hat, bits
