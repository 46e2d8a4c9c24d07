"""Training of hac's own learned codecs (CompressAI architectures and ComDefend), resumable on a CPU.

The default codec, ``hac-hyperprior``, is the mean-scale hyperprior of Minnen, Ballé
and Toderici, "Joint Autoregressive and Hierarchical Priors for Learned Image
Compression" (NeurIPS 2018), ``compressai.models.MeanScaleHyperprior`` (CompressAI's
``mbt2018-mean``) without the autoregressive context model. It is trained with the
rate–distortion loss of CompressAI's example::

    loss = lambda * 255**2 * MSE(x, x_hat) + bpp(likelihoods)

plus the auxiliary loss that fits the entropy bottleneck's quantiles, minimised by a
second optimizer over the ``quantiles`` parameters only. ComDefend (Jia et al.,
CVPR 2019) is trained with its own loss; see :mod:`hac.training.architectures`.

Modules, in the order data flows through them:

* :mod:`~hac.training.architectures`: the registry of trainable models and their losses;
* :mod:`~hac.training.config`: :class:`~hac.training.config.TrainConfig` and the LR schedule;
* :mod:`~hac.training.crops`: image folders decoded into memory, sampled as random crops;
* :mod:`~hac.training.objectives`: one loss object per kind of run (plain, adversarial, purify-against,
  realism, decoder-only), chosen once from the config; :mod:`~hac.training.adversarial`,
  :mod:`~hac.training.realism` and :mod:`~hac.training.decoder_tuning` hold their pieces;
* :mod:`~hac.training.loop`: :func:`~hac.training.loop.train` (resumable, stops cleanly on SIGTERM/SIGINT);
* :mod:`~hac.training.checkpoint`: the checkpoint format, atomic saving, safe loading;
* :mod:`~hac.training.validation`: real entropy-coded bpp/PSNR and the JPEG reference curve;
* :mod:`~hac.training.export`: safetensors weights plus a model card;
The command line is :mod:`hac.cli.train` (``hac train``).
"""


from __future__ import annotations

from .architectures import ARCHITECTURES, Architecture, build_model, rd_loss
from .checkpoint import CheckpointError, load_checkpoint, load_model_weights
from .config import TrainConfig, lr_factor
from .crops import ImageBank
from .objectives import TrainingObjective, create_objective
from .validation import evaluate_model, jpeg_reference
from .export import export
from .loop import train

__all__ = [
    "TrainConfig",
    "Architecture",
    "ARCHITECTURES",
    "ImageBank",
    "TrainingObjective",
    "create_objective",
    "CheckpointError",
    "build_model",
    "rd_loss",
    "lr_factor",
    "load_checkpoint",
    "load_model_weights",
    "evaluate_model",
    "jpeg_reference",
    "train",
    "export",
]
