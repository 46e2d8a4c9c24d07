"""Fine-tuning a mean-scale hyperprior's decoder alone.

The encoder, hyperprior and entropy models stay frozen, so every image keeps exactly the bitstream it had
before; only the synthesis transform ``g_s`` learns, decoding the real quantised latents ŷ (not the noisy
training relaxation). Two runs use it: the realism fine-tune (:mod:`hac.training.realism`, against a
discriminator) and ``--decoder-only`` (pixels only: λ·255²·MSE), which wins back clean quality that an
adversarial fine-tune of the whole codec cost its decoder, without touching what the encoder learned
against rate attacks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["quantized_latents", "freeze_all_but_decoder", "decoder_terms"]


@torch.no_grad()
def quantized_latents(model: nn.Module, x: Tensor) -> Tensor:
    """ŷ exactly as the decoder receives it from the real bitstream: z and y rounded (around the medians and
    the predicted means), not the noisy training relaxation. ``model`` is a mean-scale hyperprior."""
    y = model.g_a(x)
    z = model.h_a(y)
    z_hat = model.entropy_bottleneck.quantize(z, "dequantize", model.entropy_bottleneck._get_medians())
    _, means = model.h_s(z_hat).chunk(2, 1)
    return model.gaussian_conditional.quantize(y, "dequantize", means)


def freeze_all_but_decoder(model: nn.Module) -> list[nn.Parameter]:
    """Freeze everything but the synthesis transform ``g_s`` and return its parameters.

    Raises:
        ValueError: the model is not a mean-scale hyperprior (:func:`quantized_latents` needs its predicted means).
    """
    from compressai.models import MeanScaleHyperprior

    if not isinstance(model, MeanScaleHyperprior):
        raise ValueError(f"decoder fine-tuning needs a mean-scale hyperprior (g_a, h_a, h_s, g_s); got {type(model).__name__}")
    model.requires_grad_(False)
    model.g_s.requires_grad_(True)
    return list(model.g_s.parameters())


def decoder_terms(model: nn.Module, x: Tensor, lmbda: float) -> dict[str, Tensor]:
    """The decoder-only loss on the batch ``x``: ``loss`` = λ·255²·MSE of ``g_s`` decoding the real ŷ, and ``mse``.
    (The rate is fixed by the frozen encoder, so it has no term.)"""
    mse = F.mse_loss(model.g_s(quantized_latents(model, x)), x)
    return {"loss": lmbda * 255**2 * mse, "mse": mse}
