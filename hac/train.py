"""Training of hac's own learned codecs and ComDefend: the public API of :mod:`hac.training`
and its command line, ``python -m hac.train`` (see :mod:`hac.training.cli`)."""

from __future__ import annotations

import sys

from .training.architectures import ARCHITECTURES, Architecture, build_model, rd_loss
from .training.checkpoint import CheckpointError, load_checkpoint, load_model_weights
from .training.cli import main
from .training.config import TrainConfig, lr_factor
from .training.data import ImageBank
from .training.evaluation import evaluate_model, jpeg_reference
from .training.export import export
from .training.loop import train

__all__ = [
    "TrainConfig",
    "Architecture",
    "ARCHITECTURES",
    "ImageBank",
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
    "main",
]

if __name__ == "__main__":
    sys.exit(main())
