"""The official ComDefend weights (Jia et al., CVPR 2019) converted once to safetensors.

The published files (``enc20_0.0001.npy`` for ComCNN, ``dec20_0.0001.npy`` for RecCNN)
each hold 18 float32 arrays: nine 3x3 convolution kernels in TensorFlow's HWIO layout,
each followed by its bias. They are read with the hub's code-free reader
(:func:`hac.hub.convert.read_weight_list`) and rewritten in PyTorch's OIHW layout.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core.files import atomic_path
from ..hub import sha256_of
from ..hub.convert import read_weight_list
from .comdefend import COM_CHANNELS, OFFICIAL_DEC, OFFICIAL_ENC, REC_CHANNELS, load_comdefend

__all__ = ["COMDEFEND_FORMAT", "comdefend_layer_shapes", "comdefend_state_dict", "convert_comdefend"]

logger = logging.getLogger(__name__)

COMDEFEND_FORMAT = "hac-comdefend/1"


def comdefend_layer_shapes(network: str) -> list[tuple[int, ...]]:
    """The 18 shapes of the official ``network`` file ("com" or "rec"): HWIO kernel, bias, ..."""
    channels = {"com": COM_CHANNELS, "rec": REC_CHANNELS}[network]
    shapes: list[tuple[int, ...]] = []
    for cin, cout in zip(channels, channels[1:]):
        shapes += [(3, 3, cin, cout), (cout,)]
    return shapes


def comdefend_state_dict(com: Sequence[np.ndarray], rec: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
    """Official HWIO kernel/bias lists -> the state dict of :class:`hac.codecs.comdefend.ComDefend` (OIHW)."""
    state = {}
    for prefix, arrays in (("com", com), ("rec", rec)):
        for layer in range(len(arrays) // 2):
            kernel, bias = arrays[2 * layer], arrays[2 * layer + 1]
            # TF conv2d and torch conv2d are both cross-correlations: only the layout changes.
            state[f"{prefix}.convs.{layer}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
            state[f"{prefix}.convs.{layer}.bias"] = torch.from_numpy(bias.copy())
    return state


def convert_comdefend(enc: str | Path, dec: str | Path, out: str | Path) -> Path:
    """Convert the official ComDefend weights (ComCNN ``enc``, RecCNN ``dec``) to safetensors.

    The result loads with no missing or unexpected keys into
    :class:`hac.codecs.comdefend.ComDefend`; its metadata records the format and the
    sha256 of both sources (a source whose hash is not the published one is
    converted too, with a warning: e.g. weights trained with the authors' code).

    Returns:
        The path written (atomically).
    """
    from safetensors.torch import save_file

    enc, dec, out = Path(enc), Path(dec), Path(out)
    com = read_weight_list(enc, comdefend_layer_shapes("com"))
    rec = read_weight_list(dec, comdefend_layer_shapes("rec"))
    state = comdefend_state_dict(com, rec)
    load_comdefend(state, f"the conversion of {enc} and {dec}")  # exact keys and shapes
    digests = {"enc": sha256_of(enc), "dec": sha256_of(dec)}
    for (role, digest), spec in zip(digests.items(), (OFFICIAL_ENC, OFFICIAL_DEC)):
        if digest != spec.sha256:
            logger.warning("%s (%s) is not the published %s (sha256 %s...); converting it anyway", role, spec.filename, spec.name, digest[:12])
    metadata = {
        "format": COMDEFEND_FORMAT,
        "layout": "OIHW",
        "enc_file": enc.name,
        "enc_sha256": digests["enc"],
        "dec_file": dec.name,
        "dec_sha256": digests["dec"],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    logger.info("converted %s + %s -> %s", enc, dec, out)
    return out
