"""ELIC as a hac codec, with the published re-implementation's weights.

D. He et al.: "ELIC: Efficient Learned Image Compression with Unevenly Grouped
Space-Channel Contextual Adaptive Coding", CVPR 2022. The network is the unofficial
re-implementation github.com/VincentChandelier/ELiC-ReImplemetation (see
:mod:`hac.codecs.elic.model`), whose README publishes six MSE models on Google Drive,
``ELIC_<lambda>_ft_3980_Plateau.pth.tar`` for lambda 0.004 ... 0.45.

``q`` names the model by its lambda times 1000, as in the file names::

    create_codec("elic:q=0004")                     # lambda 0.004, fewest bits (q parses to 4)
    create_codec("elic:q=450,mode=entropy-coded")   # lambda 0.45, real bitstream

so ``q`` is one of 4, 8, 16, 32, 150, 450 (``"0004"`` etc. are accepted too).

**Modes.** ``fast`` quantises the latents exactly as the encoder does and estimates
``bpp = -sum(log2 p) / (H * W)``; ``entropy-coded`` writes the rANS bitstreams
(``ELIC.compress``) and decodes them (``ELIC.decompress``), ``bpp = 8 * bytes / (H * W)``.
Both give the same reconstruction. ``surrogate`` rounds with a straight-through
gradient (the means enter detached).

**Padding.** Images are replicate-padded at the bottom/right to a multiple of 64 and
the reconstruction is cropped back (the reference pads with zeros; replicate is hac's
convention for every codec and avoids coding an artificial edge).

**Weights.** Google Drive links cannot be fetched by a program, so the specs have no
URL: download the ``.pth.tar`` by hand and convert it once,
``python -m hac convert elic --in ELIC_0004_ft_3980_Plateau.pth.tar --out weights/elic-0004.safetensors``
(:func:`convert_checkpoint`). The originals are plain state dicts, loaded with
``torch.load(weights_only=True)``; their CompressAI 1.1 entropy-bottleneck keys
(``_matrix0``, ...) are renamed to the installed CompressAI's layout.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from ... import hub
from ...hub import ManualDownloadWeightSpec
from ..base import Codec, CodecOutput, check_image_batch, pad_to_multiple, straight_through_clamp
from ..compressai.zoo import convert_zoo_state_dict
from .model import CODER_TABLES, ELIC
from ..factory import register_codec
from ..info import CodecInfo, CodecMode

__all__ = [
    "PAPER",
    "QUALITIES",
    "DRIVE_IDS",
    "SPECS",
    "INFO",
    "elic_spec",
    "check_quality",
    "convert_state_dict",
    "convert_checkpoint",
    "load_elic",
    "ELICCodec",
]

logger = logging.getLogger(__name__)

PAPER = (
    "D. He, Z. Yang, W. Peng, R. Ma, H. Qin, Y. Wang: ELIC: Efficient Learned Image Compression with "
    "Unevenly Grouped Space-Channel Contextual Adaptive Coding, CVPR 2022 (arXiv:2203.10886); weights of "
    "the unofficial re-implementation github.com/VincentChandelier/ELiC-ReImplemetation"
)
REPOSITORY = "https://github.com/VincentChandelier/ELiC-ReImplemetation"
# lambda * 1000 -> Google Drive file id, from the README's "Available Checkpoint" table.
DRIVE_IDS = {
    4: "1YGVJ9bpeEq0xfqka2xkaMzhDkeYFJi6q",
    8: "1VNE7rx-rBFLnNFkz56Zc-cPr6xrBBJdL",
    16: "1MWlYAmpHbWlGtG7MBBTPEew800grY5yC",
    32: "1Moody9IR8CuAGwLCZ_ZMTfZXT0ehQhqc",
    150: "1s544Uxv0gBY3WvKBcGNb3Fb22zfmd9PL",
    450: "1uuKQJiozcBfgGMJ8CfM6lrXOZWv6RUDN",
}
QUALITIES = tuple(DRIVE_IDS)
DEFAULT_QUALITY = 16


def check_quality(q: object) -> int:
    """``q`` as lambda * 1000 (an int, or a zero-padded string such as ``"0004"``).

    Raises:
        ValueError: not one of the published models; the message lists them.
    """
    valid = ", ".join(f"{quality:04d}" for quality in QUALITIES)
    if isinstance(q, str) and q.strip().isdigit():
        q = int(q)
    if isinstance(q, bool) or not isinstance(q, int) or q not in DRIVE_IDS:
        raise ValueError(f"elic quality q must be one of {valid} (lambda * 1000), got {q!r}")
    return q


def elic_spec(q: int) -> ManualDownloadWeightSpec:
    """The weights spec of the model with lambda ``q / 1000``."""
    q = check_quality(q)
    original = f"ELIC_{q:04d}_ft_3980_Plateau.pth.tar"
    filename = f"elic-{q:04d}.safetensors"
    return ManualDownloadWeightSpec(
        name=f"elic-{q:04d}",
        filename=filename,
        license="unspecified (the repository has no licence file)",
        paper=PAPER,
        description=f"ELIC (ELiC-ReImplemetation), MSE, lambda {q / 1000:g}",
        download_page=f"https://drive.google.com/file/d/{DRIVE_IDS[q]}/view",
        project=REPOSITORY,
        original_filename=original,
        convert_command=f"python -m hac convert elic --in {original} --out weights/{filename}",
    )


SPECS: dict[int, ManualDownloadWeightSpec] = {q: elic_spec(q) for q in QUALITIES}
hub.register_weights(SPECS.values())
INFO = CodecInfo.learned(f"ELIC; {PAPER}", SPECS, DEFAULT_QUALITY)


# --------------------------------------------------------------------------- conversion


def convert_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Published key layout -> :class:`ELIC`'s (drops ``module.``, renames old bottleneck keys)."""
    return convert_zoo_state_dict(state)


def _check_layout(state: Mapping[str, Tensor], source: str) -> None:
    """Raise ``ValueError`` unless ``state`` has exactly :class:`ELIC`'s keys and shapes.

    The entropy coder's tables (``_quantized_cdf``, ``_offset``, ``_cdf_length``,
    ``scale_table``) may have any size, or be absent (then they are rebuilt).
    """
    with torch.device("meta"):
        expected = ELIC().state_dict()
    missing = sorted(key for key in set(expected) - set(state) if not key.endswith(CODER_TABLES))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(value.shape)})"
        for key, value in expected.items()
        if key in state and not key.endswith(CODER_TABLES) and state[key].shape != value.shape
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{source} does not hold ELIC weights: missing keys: {', '.join(missing) or 'none'}; "
            f"unexpected keys: {', '.join(unexpected) or 'none'}; wrong shapes: {', '.join(wrong) or 'none'}"
        )


def convert_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Read a published ``ELIC_*.pth.tar`` safely and return hac's state dict (for safetensors).

    The file is loaded with ``torch.load(weights_only=True)`` (a pickle needing more than
    tensors is refused with :class:`hac.hub.UnsafeWeightsError`); ``{"state_dict": ...}``
    wrappers are unwrapped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file does not hold exactly ELIC's keys and shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ELIC checkpoint not found: {path}")
    state = convert_state_dict(hub.load_state_dict(path))
    _check_layout(state, str(path))
    return {key: value.contiguous() for key, value in state.items()}


def load_elic(q: int = DEFAULT_QUALITY, weights: str | Path | None = None) -> ELIC:
    """The pretrained model with lambda ``q / 1000`` (eval mode, CPU, frozen).

    Raises:
        hac.hub.MissingWeightsError: not converted yet (the message says how).
        ValueError: the file holds other weights.
    """
    spec = SPECS[check_quality(q)]
    state = convert_state_dict(hub.load_weights(spec, weights))
    _check_layout(state, f"the weights for {spec.name}")
    model = ELIC.from_state_dict(state)
    return model.eval().requires_grad_(False)


# --------------------------------------------------------------------------- codec


class ELICCodec(Codec):
    """An :class:`ELIC` model as a hac codec.

    Args:
        model: a built :class:`ELIC`; its CDF tables are built if missing.
        mode: ``"fast"`` (estimated bpp) or ``"entropy-coded"`` (real bitstream);
            the reconstruction is the same.

    Shape:
        (N, 3, H, W) in [0, 1], any H, W -> ``x_hat`` (N, 3, H, W) in [0, 1], ``bpp`` (N,).
    """

    pass_cost = 30.0  # 224x224, one CPU thread: 2.0 s against 0.07 s

    def __init__(self, model: ELIC, mode: CodecMode | str = CodecMode.FAST) -> None:
        super().__init__()
        self.mode = CodecMode(mode)
        self.model = model.eval()
        self.multiple = model.downsampling_factor
        if model.update():
            logger.debug("built ELIC's entropy coder tables")
        self.codec_name = "elic"
        self.params = {"mode": self.mode.value}

    def forward(self, x: Tensor) -> CodecOutput:
        """Compress and reconstruct ``x`` (N, 3, H, W) in [0, 1]."""
        check_image_batch(x)
        with torch.no_grad():
            padded, (height, width) = pad_to_multiple(x.float(), self.multiple)
            if self.mode is CodecMode.FAST:
                y_hat, y_bits, z_bits = self.model.quantize_latents(self.model.g_a(padded))
                x_hat, bits = self.model.g_s(y_hat), (y_bits + z_bits).double()
            else:
                encoded = self.model.compress(padded)
                y_strings, z_strings = encoded["strings"]
                nbytes = [
                    len(z_strings[i]) + sum(len(strings[i]) for strings in y_strings) for i in range(x.shape[0])
                ]
                bits = torch.tensor(nbytes, dtype=torch.float64, device=x.device) * 8
                x_hat = self.model.decompress(encoded["strings"], encoded["shape"])["x_hat"]
        x_hat = x_hat[..., :height, :width].clamp(0, 1).to(x.dtype)
        return CodecOutput(x_hat.contiguous(), (bits / (height * width)).float())

    def surrogate(self, x: Tensor) -> Tensor:
        """Differentiable ``forward(x).x_hat``: ``y + (y_hat - y).detach()`` into ``g_s``.

        ``y_hat`` is computed exactly as in ``fast``; the means, scales and the hyper-latent
        carry no gradient. Shape: (N, 3, H, W) in [0, 1] -> (N, 3, H, W) in [0, 1].
        """
        check_image_batch(x)
        padded, (height, width) = pad_to_multiple(x, self.multiple)
        y = self.model.g_a(padded)
        y_hat, _, _ = self.model.quantize_latents(y.detach())
        x_hat = self.model.g_s(y + (y_hat - y).detach())
        return straight_through_clamp(x_hat[..., :height, :width])


@register_codec("elic", builds=ELICCodec, info=INFO)
def create_elic(q: int | str = DEFAULT_QUALITY, mode: CodecMode | str = CodecMode.FAST, weights: str | Path | None = None) -> ELICCodec:
    """ELIC (He et al., CVPR 2022), re-implementation weights; see :mod:`hac.codecs.elic.codec`.

    Args:
        q: lambda * 1000 of the model: 4, 8, 16, 32, 150 or 450 (``"0004"`` ... accepted).
        mode: one of ``fast``, ``entropy-coded``.
        weights: a local weights file instead of ``weights/elic-<q>.safetensors``.
    """
    q = check_quality(q)
    mode = CodecMode(mode)
    codec = ELICCodec(load_elic(q, weights), mode)
    codec.params = {"q": f"{q:04d}"}
    if mode is not CodecMode.FAST:
        codec.params["mode"] = mode.value
    if weights is not None:
        codec.params["weights"] = str(weights)
    return codec
