"""Trainable codec architectures, each with its training loss.

The CompressAI models (``mbt2018-mean``, ``bmshj2018-hyperprior``) are trained with
CompressAI's rate–distortion loss :func:`rd_loss`; their entropy bottleneck's
``quantiles`` get an auxiliary optimizer (:func:`split_parameters`). ``comdefend``
(Jia et al., CVPR 2019, :mod:`hac.codecs.comdefend`) is ComCNN + RecCNN trained with
ComDefend's unified loss ``MSE + λ·mean(b²)`` on the soft code
``b = sigmoid(ComCNN(x) − N(0, 20²))``, has no auxiliary optimizer and is exported as
``hac-comdefend-cifar10.safetensors``. New runs from the CLI start from the
architecture's :attr:`Architecture.defaults` (ComDefend: 32px crops, λ = 1e-4, lr 1e-3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from ..core.metrics import bits_per_pixel
from ..core.registry import Registry

__all__ = ["CODEC_NAME", "Architecture", "ARCHITECTURES", "build_model", "rd_loss", "split_parameters"]

CODEC_NAME = "hac-hyperprior"


@dataclass(frozen=True)
class Architecture:
    """A trainable codec architecture.

    Attributes:
        name: CompressAI zoo name (or ``"comdefend"``), stored in exported metadata.
        build: ``build(N, M) -> nn.Module`` (a model with CompressAI's ``update`` /
            ``compress`` / ``decompress``, used by :func:`~hac.training.validation.evaluate_model`).
        multiple: input height/width must be a multiple of this (total down-sampling).
        paper: the work that introduced it.
        loss: ``loss(model, x, lmbda) -> {"loss", "mse", ...}`` (scalars); ``None``
            means CompressAI's rate–distortion loss :func:`rd_loss`. Models with
            ``quantiles`` parameters also get the auxiliary optimizer.
        loss_text: the loss, for the exported model card.
        export_stem: file stem of the exported weights; ``{quality}`` is filled in.
        defaults: :class:`~hac.training.config.TrainConfig` values for new runs started from the CLI.
    """

    name: str
    build: Callable[[int, int], nn.Module]
    multiple: int = 64
    paper: str = ""
    loss: Callable[[nn.Module, Tensor, float], dict[str, Tensor]] | None = None
    loss_text: str = "λ·255²·MSE + bpp"
    export_stem: str = CODEC_NAME + "-q{quality}"
    defaults: Mapping[str, object] = field(default_factory=dict)

    def loss_terms(self, model: nn.Module, x: Tensor, lmbda: float) -> dict[str, Tensor]:
        """The training loss of ``model`` on the batch ``x`` (N, 3, H, W) in [0, 1] with trade-off ``lmbda``."""
        if self.loss is None:
            return rd_loss(model(x), x, lmbda)
        return self.loss(model, x, lmbda)


def _mean_scale_hyperprior(N: int, M: int) -> nn.Module:
    from compressai.models import MeanScaleHyperprior

    return MeanScaleHyperprior(N, M)


def _scale_hyperprior(N: int, M: int) -> nn.Module:
    from compressai.models import ScaleHyperprior

    return ScaleHyperprior(N, M)


def _comdefend(N: int, M: int) -> nn.Module:
    from ..codecs.comdefend import ComDefend

    return ComDefend()  # fixed widths: N and M do not apply


def _comdefend_loss(model: nn.Module, x: Tensor, lmbda: float) -> dict[str, Tensor]:
    from ..codecs.comdefend import training_loss

    return training_loss(model, x, lmbda)


ARCHITECTURES: Registry[Architecture] = Registry("architecture")
ARCHITECTURES.add(
    "mbt2018-mean",
    Architecture("mbt2018-mean", _mean_scale_hyperprior, 64, "Minnen, Ballé, Toderici, NeurIPS 2018"),
)
ARCHITECTURES.add(
    "bmshj2018-hyperprior",
    Architecture("bmshj2018-hyperprior", _scale_hyperprior, 64, "Ballé et al., ICLR 2018"),
)
ARCHITECTURES.add(
    "comdefend",
    Architecture(
        "comdefend",
        _comdefend,
        1,
        "Jia, Wei, Cao, Foroosh, CVPR 2019",
        loss=_comdefend_loss,
        loss_text="MSE + λ·mean(b²), b = sigmoid(ComCNN(x) − e), e ~ N(0, 20²)",
        export_stem="hac-comdefend-cifar10",
        # The official CIFAR-10 weights: λ = 1e-4, Adam 1e-3; whole 32x32 images.
        defaults={"crop": 32, "batch_size": 32, "lmbda": 1e-4, "lr": 1e-3, "eval_every": 1000, "eval_images": 500},
    ),
)


def build_model(architecture: str, N: int, M: int) -> nn.Module:
    """A freshly initialised model of a registered architecture (``ValueError`` if unknown)."""
    return ARCHITECTURES.get(architecture).build(N, M)


def rd_loss(out: Mapping, x: Tensor, lmbda: float) -> dict[str, Tensor]:
    """CompressAI's rate–distortion loss: ``λ·255²·MSE + bpp``.

    Args:
        out: model output with ``x_hat`` (N, 3, H, W) and ``likelihoods`` (dict of tensors).
        x: the input batch (N, 3, H, W) in [0, 1].
        lmbda: the trade-off λ.

    Returns:
        ``loss``, ``bpp`` and ``mse`` (scalars).
    """
    bpp = bits_per_pixel(out["likelihoods"], x.shape[2] * x.shape[3]).mean()
    mse = F.mse_loss(out["x_hat"], x)
    return {"loss": lmbda * 255**2 * mse + bpp, "bpp": bpp, "mse": mse}


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Main parameters and the entropy bottleneck's ``quantiles`` (aux optimizer only)."""
    main, aux = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (aux if name.endswith(".quantiles") else main).append(param)
    return main, aux
