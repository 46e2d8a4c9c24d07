"""HiFiC as a hac codec, with the PyTorch port's published weights.

F. Mentzer, G. Toderici, M. Tschannen, E. Agustsson: "High-Fidelity Generative Image
Compression", NeurIPS 2020. The network is the PyTorch port
github.com/Justin-Tan/high-fidelity-generative-compression (see
:mod:`hac.codecs.hific.model`), whose README publishes three GAN-trained models
(OpenImages) on Google Drive and Zenodo (record 4026003)::

    create_codec("hific:q=low")                       # target 0.14 bpp
    create_codec("hific:q=med,mode=entropy-coded")    # target 0.30 bpp, real bitstream
    create_codec("hific:q=high")                      # target 0.45 bpp

The three differ in more than the rate: per the README's training commands, ``low``
and ``high`` work on [-1, 1] images (``-norm``: the generator ends in ``tanh``) with a
Gaussian latent density and 9 residual blocks; ``med`` works on [0, 1] images with a
logistic density. The converted weights carry these options (read from the
checkpoint's ``args``); the table :data:`QUALITY_CONFIGS` is the fallback.

**Modes.** ``fast`` is the port's ``compression_forward`` in evaluation mode, with its
bpp estimate ``-sum(log2(p + 1e-9)) / (H * W)`` (H, W of the input image; the port
divides by the padded size). ``entropy-coded`` codes the same quantised symbols with
CompressAI's rANS coder, using tables built from the port's own densities (see
:mod:`hac.codecs.hific.model`); ``bpp = 8 * bytes / (H * W)``. The reconstruction is
the same in both modes. ``surrogate`` rounds the latent with a straight-through
gradient (means and scales enter detached).

**Weights.** Google Drive cannot be fetched by a program and the Zenodo file names are
not documented, so the specs have no URL: download a checkpoint by hand and convert
it once, ``python -m hac convert hific --in CKPT --out weights/hific-low.safetensors``
(:func:`convert_checkpoint`). A checkpoint is a ``torch.save`` of a dict:
``model_state_dict`` (which also holds the ``Discriminator``), ``args``, optimiser
states, ``discriminator_state_dict``, epoch and step counters. It is read with
``torch.load(weights_only=True)`` (refused with :class:`hac.hub.UnsafeWeightsError`
if it needs more than tensors and plain containers); only the encoder, generator and
hyperprior weights and the options ``normalize_input_image`` and ``likelihood_type``
are kept. The discriminator, optimiser states and any entropy-coder tables are
dropped explicitly (the tables are rebuilt from the densities).
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from ... import hub
from ...hub import ManualDownloadWeightSpec
from ..base import Codec, CodecOutput, check_image_batch, straight_through_clamp
from .model import HiFiC, HiFiCConfig, LIKELIHOOD_TYPES
from ..factory import register_codec
from ..info import CodecInfo, CodecMode

__all__ = [
    "PAPER",
    "QUALITIES",
    "QUALITY_CONFIGS",
    "SPECS",
    "INFO",
    "MODEL_PREFIXES",
    "IGNORED_PREFIXES",
    "CONFIG_PREFIX",
    "check_quality",
    "convert_state_dict",
    "read_checkpoint",
    "convert_checkpoint",
    "config_from_state",
    "load_hific",
    "HiFiCCodec",
]

logger = logging.getLogger(__name__)

PAPER = (
    "F. Mentzer, G. Toderici, M. Tschannen, E. Agustsson: High-Fidelity Generative Image Compression, "
    "NeurIPS 2020 (arXiv:2006.09965); weights of the PyTorch port "
    "github.com/Justin-Tan/high-fidelity-generative-compression"
)
REPOSITORY = "https://github.com/Justin-Tan/high-fidelity-generative-compression"
ZENODO = "https://zenodo.org/record/4026003"
# q -> (Google Drive id, target bpp), from the port's README ("Pretrained Models").
DRIVE_IDS = {
    "low": ("1hfFTkZbs_VOBmXQ-M4bYEPejrD76lAY9", 0.14),
    "med": ("1QNoX0AGKTBkthMJGPfQI0dT0_tnysYUb", 0.30),
    "high": ("1BFYpvhVIA_Ek2QsHBbKnaBE8wn1GhFyA", 0.45),
}
QUALITIES = tuple(DRIVE_IDS)
DEFAULT_QUALITY = "med"
# The README's training commands: low `-nrb 9 -norm`, med `--likelihood_type logistic`, high `-nrb 9 -norm`.
QUALITY_CONFIGS = {
    "low": {"normalize_input_image": True, "likelihood_type": "gaussian"},
    "med": {"normalize_input_image": False, "likelihood_type": "logistic"},
    "high": {"normalize_input_image": True, "likelihood_type": "gaussian"},
}

MODEL_PREFIXES = (
    "Encoder.",
    "Generator.",
    "Hyperprior.analysis_net.",
    "Hyperprior.synthesis_mu.",
    "Hyperprior.synthesis_std.",
    "Hyperprior.hyperlatent_likelihood.",
)
# In the port's `model_state_dict` but not needed for inference: the GAN discriminator,
# and the entropy coder's tables when the model was saved in evaluation mode.
IGNORED_PREFIXES = (
    "Discriminator.",
    "Hyperprior.hyperprior_entropy_model.",
    "Hyperprior.prior_entropy_model.",
    "Hyperprior.prior_density.",
)
CONFIG_PREFIX = "hac_config."  # options stored as 0-d tensors next to the weights
# Options of the port's Model that hac's HiFiC does not implement, with the value it needs.
_REQUIRED_ARGS = {"use_channel_norm": True, "sample_noise": False, "use_latent_mixture_model": False}


def check_quality(q: object) -> str:
    """``q`` if it is ``low``, ``med`` or ``high``, else ``ValueError`` naming them."""
    return str(INFO.check_quality(q, "hific"))


def _spec(q: str) -> ManualDownloadWeightSpec:
    drive_id, target = DRIVE_IDS[q]
    filename = f"hific-{q}.safetensors"
    return ManualDownloadWeightSpec(
        name=f"hific-{q}",
        filename=filename,
        license="Apache-2.0",
        paper=PAPER,
        description=f"HiFiC (PyTorch port), GAN-trained on OpenImages, target {target} bpp",
        download_page=f"https://drive.google.com/open?id={drive_id} or {ZENODO}",
        project=REPOSITORY,
        original_filename=f"the HIFIC-{q} checkpoint (.pt, about 2 GB)",
        convert_command=f"python -m hac convert hific --in CKPT --out weights/{filename}",
    )


SPECS: dict[str, ManualDownloadWeightSpec] = {q: _spec(q) for q in QUALITIES}
hub.register_weights(SPECS.values())
INFO = CodecInfo.learned(f"HiFiC; {PAPER}", SPECS, DEFAULT_QUALITY)


# --------------------------------------------------------------------------- conversion


def convert_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Keep the inference weights of a port state dict (``module.`` prefixes dropped).

    Keys under :data:`IGNORED_PREFIXES` are dropped (and counted in the log); ``hac_config.``
    entries pass through.

    Raises:
        ValueError: a key that belongs to none of the known parts (listed).
    """
    kept, ignored, unknown = {}, [], []
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith(MODEL_PREFIXES + (CONFIG_PREFIX,)):
            kept[key] = value
        elif key.startswith(IGNORED_PREFIXES):
            ignored.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"unexpected keys for a HiFiC (PyTorch port) state dict: {', '.join(sorted(unknown)[:10])}"
            + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        )
    if ignored:
        logger.info("dropped %d HiFiC entries not needed for inference (discriminator, coder tables)", len(ignored))
    return kept


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """The model state dict and the ``args`` of a port checkpoint, read with ``weights_only=True``.

    A bare state dict (no ``args``) is accepted too; its ``args`` are then ``{}``.

    Raises:
        FileNotFoundError: no such file.
        hac.hub.UnsafeWeightsError: a pickle that needs arbitrary objects.
        ValueError: not a readable torch file, or no state dict in it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HiFiC checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise hub.UnsafeWeightsError(
            f"refusing to load {path}: it is a pickle that needs more than tensors and plain containers "
            f"(torch.load weights_only=True said: {str(error).splitlines()[0]}); hac never unpickles "
            "arbitrary objects. On a machine you trust, re-save its 'model_state_dict' and 'args' (as a "
            "plain dict) with torch.save and convert that file"
        ) from error
    except RuntimeError as error:
        raise ValueError(f"{path} is not a readable torch checkpoint: {error}") from error
    if isinstance(obj, Mapping) and isinstance(obj.get("model_state_dict"), Mapping):
        state, args = obj["model_state_dict"], obj.get("args") or {}
        others = sorted(key for key in obj if key not in ("model_state_dict", "args"))
        logger.info("%s: ignoring %s", path, ", ".join(others) or "nothing else")
    elif isinstance(obj, Mapping) and all(isinstance(value, Tensor) for value in obj.values()):
        state, args = obj, {}
    else:
        raise ValueError(f"{path} holds neither a HiFiC checkpoint (model_state_dict, args) nor a state dict")
    if not isinstance(args, Mapping):
        raise ValueError(f"{path}: 'args' should be a dict of options, got {type(args).__name__}")
    return dict(state), dict(args)


def _config_tensors(args: Mapping, source: str) -> dict[str, Tensor]:
    for name, needed in _REQUIRED_ARGS.items():
        if name in args and bool(args[name]) != needed:
            raise ValueError(f"{source} was trained with {name}={args[name]!r}; hac's HiFiC supports only {needed}")
    config = {}
    if "normalize_input_image" in args:
        config[f"{CONFIG_PREFIX}normalize_input_image"] = torch.tensor(int(bool(args["normalize_input_image"])))
    if "likelihood_type" in args:
        kind = args["likelihood_type"]
        if kind not in LIKELIHOOD_TYPES:
            supported = ", ".join(LIKELIHOOD_TYPES)
            raise ValueError(f"{source}: unsupported likelihood_type {kind!r}; supported: {supported}")
        config[f"{CONFIG_PREFIX}logistic_likelihood"] = torch.tensor(int(kind == "logistic"))
    return config


def convert_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """A published HiFiC checkpoint -> hac's state dict (for safetensors).

    Keeps the encoder, generator and hyperprior weights, plus the checkpoint's
    ``normalize_input_image`` and ``likelihood_type`` as ``hac_config.*`` 0-d tensors;
    drops the discriminator (in ``model_state_dict`` and ``discriminator_state_dict``),
    the optimiser states and the counters.

    Raises:
        FileNotFoundError, hac.hub.UnsafeWeightsError: see :func:`read_checkpoint`.
        ValueError: unknown keys, wrong shapes, or options hac does not implement.
    """
    state, args = read_checkpoint(path)
    state = convert_state_dict(state)
    state.update(_config_tensors(args, str(path)))
    _check_layout(state, _sizes(state), str(path))
    return {key: value.contiguous() for key, value in state.items()}


def _sizes(state: Mapping[str, Tensor]) -> HiFiCConfig:
    """A config with the sizes of ``state`` (latent and hyper-latent channels, residual blocks)."""
    try:
        latent = state["Encoder.conv_block_out.1.weight"].shape[0]
        hyper = state["Hyperprior.analysis_net.conv1.weight"].shape[0]
    except KeyError as error:
        raise ValueError(f"not HiFiC weights: {error.args[0]} is missing") from None
    blocks = 0
    while f"Generator.resblock_{blocks}.conv1.weight" in state:
        blocks += 1
    return HiFiCConfig(latent, hyper, blocks)


def config_from_state(state: Mapping[str, Tensor], q: str) -> HiFiCConfig:
    """The :class:`HiFiCConfig` of the weights of model ``q``.

    Sizes come from the shapes; ``normalize_input_image`` and ``likelihood_type`` from the
    ``hac_config.*`` entries the converter stores, else from :data:`QUALITY_CONFIGS`.
    Options that contradict the documented ones are used, with a warning.
    """
    documented = QUALITY_CONFIGS[check_quality(q)]
    options = dict(documented)
    if f"{CONFIG_PREFIX}normalize_input_image" in state:
        options["normalize_input_image"] = bool(state[f"{CONFIG_PREFIX}normalize_input_image"].item())
    if f"{CONFIG_PREFIX}logistic_likelihood" in state:
        options["likelihood_type"] = "logistic" if state[f"{CONFIG_PREFIX}logistic_likelihood"].item() else "gaussian"
    if options != documented:
        logger.warning(
            "the hific-%s weights were trained with %s, not %s as documented; using the weights' options",
            q, options, documented,
        )  # fmt: skip
    return replace(_sizes(state), **options)


def _check_layout(state: Mapping[str, Tensor], config: HiFiCConfig, source: str) -> None:
    """Raise ``ValueError`` unless ``state`` holds exactly :class:`HiFiC`'s keys and shapes."""
    with torch.device("meta"):
        expected = HiFiC(config).state_dict()
    weights = {key: value for key, value in state.items() if not key.startswith(CONFIG_PREFIX)}
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [
        f"{key} {tuple(weights[key].shape)} (expected {tuple(value.shape)})"
        for key, value in expected.items()
        if key in weights and weights[key].shape != value.shape
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{source} does not hold HiFiC weights: missing keys: {', '.join(missing) or 'none'}; "
            f"unexpected keys: {', '.join(unexpected) or 'none'}; wrong shapes: {', '.join(wrong) or 'none'}"
        )


def load_hific(q: str = DEFAULT_QUALITY, weights: str | Path | None = None) -> HiFiC:
    """The pretrained model ``q`` (eval mode, CPU, frozen).

    ``weights`` may be a converted safetensors file or, as it is read with
    ``weights_only=True`` too, the original checkpoint.

    Raises:
        hac.hub.MissingWeightsError: not converted yet (the message says how).
        ValueError: the file holds other weights.
    """
    spec = SPECS[check_quality(q)]
    state = convert_state_dict(hub.load_weights(spec, weights))
    config = config_from_state(state, q)
    _check_layout(state, config, f"the weights for {spec.name}")
    model = HiFiC(config)
    model.load_state_dict({key: value for key, value in state.items() if not key.startswith(CONFIG_PREFIX)})
    return model.eval().requires_grad_(False)


# --------------------------------------------------------------------------- codec


class HiFiCCodec(Codec):
    """A :class:`HiFiC` model as a hac codec.

    Args:
        model: a built :class:`HiFiC`.
        mode: ``"fast"`` (estimated bpp) or ``"entropy-coded"`` (real bitstream);
            the reconstruction is the same.

    Shape:
        (N, 3, H, W) in [0, 1], any H, W (reflect-padded inside, as the port does) ->
        ``x_hat`` (N, 3, H, W) in [0, 1], ``bpp`` (N,).
    """

    pass_cost = 32.0  # 224x224, one CPU thread: 2.25 s against 0.07 s

    def __init__(self, model: HiFiC, mode: CodecMode | str = CodecMode.FAST) -> None:
        super().__init__()
        self.mode = CodecMode(mode)
        self.model = model.eval()
        self.codec_name = "hific"
        self.params = {"mode": self.mode.value}

    def _to_model(self, x: Tensor) -> Tensor:
        return 2 * x - 1 if self.model.config.normalize_input_image else x

    def _from_model(self, x_hat: Tensor) -> Tensor:
        return (x_hat + 1) / 2 if self.model.config.normalize_input_image else x_hat

    def forward(self, x: Tensor) -> CodecOutput:
        """Compress and reconstruct ``x`` (N, 3, H, W) in [0, 1]."""
        check_image_batch(x)
        height, width = x.shape[-2:]
        with torch.no_grad():
            y = self.model.analysis(self._to_model(x.float()))
            if self.mode is CodecMode.FAST:
                y_hat, y_bits, z_bits = self.model.quantize_latents(y)
                bits = (y_bits + z_bits).double()
            else:
                encoded = self.model.compress(y)
                y_strings, z_strings = encoded["strings"]
                nbytes = [len(y_string) + len(z_string) for y_string, z_string in zip(y_strings, z_strings)]
                bits = torch.tensor(nbytes, dtype=torch.float64, device=x.device) * 8
                y_hat = self.model.decompress(encoded["strings"], encoded["shape"])
            x_hat = self._from_model(self.model.synthesis(y_hat, (height, width)))
        x_hat = x_hat.clamp(0, 1).to(x.dtype)
        return CodecOutput(x_hat.contiguous(), (bits / (height * width)).float())

    def surrogate(self, x: Tensor) -> Tensor:
        """Differentiable ``forward(x).x_hat``: ``y + (y_hat - y).detach()`` into the generator.

        Shape: (N, 3, H, W) in [0, 1] -> (N, 3, H, W) in [0, 1]; gradients flow to ``x``.
        """
        check_image_batch(x)
        y = self.model.analysis(self._to_model(x))
        y_hat, _, _ = self.model.quantize_latents(y.detach())
        x_hat = self.model.synthesis(y + (y_hat - y).detach(), tuple(x.shape[-2:]))
        return straight_through_clamp(self._from_model(x_hat))


@register_codec("hific", builds=HiFiCCodec, info=INFO)
def create_hific(q: str = DEFAULT_QUALITY, mode: CodecMode | str = CodecMode.FAST, weights: str | Path | None = None) -> HiFiCCodec:
    """HiFiC (Mentzer et al., NeurIPS 2020), PyTorch-port weights; see :mod:`hac.codecs.hific.codec`.

    Args:
        q: ``low`` (0.14 bpp), ``med`` (0.30) or ``high`` (0.45).
        mode: one of ``fast``, ``entropy-coded``.
        weights: a local weights file instead of ``weights/hific-<q>.safetensors``.
    """
    q = check_quality(q)
    mode = CodecMode(mode)
    codec = HiFiCCodec(load_hific(q, weights), mode)
    codec.params = {"q": q}
    if mode is not CodecMode.FAST:
        codec.params["mode"] = mode.value
    if weights is not None:
        codec.params["weights"] = str(weights)
    return codec
