"""Learned codecs: CompressAI's pretrained image zoo and hac's own hyperprior.

Every (architecture, metric, quality) of CompressAI's zoo gets one
:class:`hac.hub.WeightSpec`, built from ``compressai.zoo.image.model_urls`` (the
file name carries the torch-hub sha256 prefix, which :mod:`hac.hub` checks). Each
architecture is registered as a codec with the parameters ``q``, ``metric``,
``mode`` and ``weights``::

    create_codec("mbt2018-mean:q=3")                      # fast, estimated bpp
    create_codec("cheng2020-attn:q=2,mode=entropy-coded")  # real bitstream
    create_codec("hac-hyperprior:q=1")                    # hac/hub/shipped/hac-hyperprior-q1.safetensors
    create_codec("hac-hyperprior-robust:q=3")             # weights/hac-hyperprior-robust-q3.safetensors

Weights always come through :func:`hac.hub.load_weights` (cache, hash check,
safe loading); zoo checkpoints are saved in an older CompressAI key layout and
are converted by :func:`convert_zoo_state_dict` before ``from_state_dict``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from compressai.models import CompressionModel, MeanScaleHyperprior
from compressai.zoo.image import cfgs as ZOO_CONFIGS
from compressai.zoo.image import model_architectures as ZOO_MODELS
from compressai.zoo.image import model_urls as ZOO_URLS
from torch import Tensor

from ... import hub
from ...hub import WeightSpec
from .codec import CompressAICodec
from ..factory import add_codec
from ..info import CodecInfo, CodecMode

__all__ = [
    "LearnedArchitecture",
    "ARCHITECTURES",
    "PretrainedCodec",
    "get_architecture",
    "architecture_info",
    "load_model",
    "random_model",
    "convert_zoo_state_dict",
]

logger = logging.getLogger(__name__)

_PAPERS = {
    "bmshj2018": (
        "J. Ballé, D. Minnen, S. Singh, S. J. Hwang, N. Johnston: Variational image compression "
        "with a scale hyperprior, ICLR 2018 (arXiv:1802.01436)"
    ),
    "mbt2018": (
        "D. Minnen, J. Ballé, G. D. Toderici: Joint autoregressive and hierarchical priors for "
        "learned image compression, NeurIPS 2018 (arXiv:1809.02736)"
    ),
    "cheng2020": (
        "Z. Cheng, H. Sun, M. Takeuchi, J. Katto: Learned image compression with discretized "
        "Gaussian mixture likelihoods and attention modules, CVPR 2020 (arXiv:2001.01568)"
    ),
}
HAC_HYPERPRIOR = "hac-hyperprior"
HAC_QUALITIES = (1, 2, 3)
HAC_FAMILIES = {
    HAC_HYPERPRIOR: "hac's mean-scale hyperprior (mbt2018-mean architecture)",
    f"{HAC_HYPERPRIOR}-adv": "hac's hyperprior adversarially fine-tuned against codec attacks",
    f"{HAC_HYPERPRIOR}-robust": (
        "hac's robust hyperprior (latent-shift adversarial training, then the decoder alone; "
        "docs/results/codec-attacks-kodak)"
    ),
}
"""hac's own codec families: one set of weights per quality, ``weights/<family>-q<q>.safetensors``."""
DEFAULT_QUALITY = 3

# torch hub convention: "<name>-<first 8 hex digits of the sha256>.<ext>"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.")
# EntropyBottleneck parameters of older CompressAI versions: "_biases.0" or "_bias0" -> "biases.0".
_OLD_BOTTLENECK_KEY = re.compile(
    r"(?P<module>(?:^|\.)entropy_bottleneck)\._(?P<kind>biases|bias|matrices|matrix|factors|factor)\.?(?P<index>\d+)$"
)
_PLURAL = {"bias": "biases", "matrix": "matrices", "factor": "factors"}


@dataclass(frozen=True)
class LearnedArchitecture:
    """One learned codec family: its model class and its sets of weights.

    Attributes:
        name: codec name, e.g. ``"mbt2018-mean"``.
        model_class: the CompressAI class; ``from_state_dict`` builds it from weights.
        specs: ``(metric, quality) -> WeightSpec``.
        sizes: ``quality -> constructor arguments`` (channel counts), used for
            random-initialised models when no weights are wanted.
    """

    name: str
    model_class: type[CompressionModel]
    specs: Mapping[tuple[str, int], WeightSpec]
    sizes: Mapping[int, tuple[int, ...]]

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(metric for metric, _ in self.specs))

    @property
    def qualities(self) -> tuple[int, ...]:
        return tuple(sorted({quality for _, quality in self.specs}))

    def weights(self, metric: str) -> dict[int, WeightSpec]:
        """``quality -> WeightSpec`` of the weights trained for ``metric``."""
        return {quality: spec for (known, quality), spec in self.specs.items() if known == metric}

    def spec(self, q: int, metric: str = "mse") -> WeightSpec:
        """The weights for quality ``q`` and ``metric``.

        Raises:
            ValueError: ``q`` or ``metric`` is not one this architecture was trained for.
        """
        if isinstance(q, bool) or q not in self.qualities:
            valid = ", ".join(map(str, self.qualities))
            raise ValueError(f"{self.name} quality q must be one of {valid}, got {q!r}")
        if metric not in self.metrics:
            raise ValueError(f"{self.name} metric must be one of {', '.join(self.metrics)}, got {metric!r}")
        if (metric, int(q)) not in self.specs:
            valid = ", ".join(str(quality) for known, quality in self.specs if known == metric)
            raise ValueError(f"{self.name} has no {metric} weights at q={q}; {metric} qualities: {valid}")
        return self.specs[metric, int(q)]


def _zoo_architecture(name: str) -> LearnedArchitecture:
    paper = _PAPERS[name.split("-")[0]]
    specs = {}
    for metric, urls in ZOO_URLS[name].items():
        for quality, url in urls.items():
            filename = url.rsplit("/", 1)[-1]
            digest = _HASH_IN_NAME.search(filename)
            specs[metric, quality] = WeightSpec(
                name=f"{name}-{metric}-{quality}",
                filename=filename,
                url=url,
                sha256=digest.group(1) if digest else None,
                license="Apache-2.0",
                paper=paper,
                description=f"CompressAI {name}, optimised for {metric}, quality {quality}",
            )
    return LearnedArchitecture(name, ZOO_MODELS[name], specs, dict(ZOO_CONFIGS[name]))


def _hac_architecture(family: str, description: str) -> LearnedArchitecture:
    specs = {
        ("mse", quality): hub.own_weight_spec(
            f"{family}-q{quality}",
            family,
            license="MIT",
            paper="hac (this project)",
            description=f"{description}, quality {quality}",
        )
        for quality in HAC_QUALITIES
    }
    sizes = {quality: ZOO_CONFIGS["mbt2018-mean"][quality] for quality in HAC_QUALITIES}
    return LearnedArchitecture(family, MeanScaleHyperprior, specs, sizes)


ARCHITECTURES: dict[str, LearnedArchitecture] = {
    architecture.name: architecture
    for architecture in [
        *(_zoo_architecture(name) for name in ZOO_URLS),
        *(_hac_architecture(family, description) for family, description in HAC_FAMILIES.items()),
    ]
}


def get_architecture(name: str) -> LearnedArchitecture:
    """Look a learned architecture up (``ValueError`` listing the names if unknown)."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown learned codec {name!r}; valid: {', '.join(sorted(ARCHITECTURES))}") from None


def convert_zoo_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename the keys of a published CompressAI checkpoint to the installed layout.

    ``module.`` prefixes (DataParallel) are dropped, residual blocks'
    ``downsample`` is now ``skip``, and the entropy bottleneck's ``_biases.0`` /
    ``_bias0`` (and matrices, factors) are now ``biases.0``. Current keys pass through.
    """
    converted = {}
    for key, value in state.items():
        key = key.removeprefix("module.").replace(".downsample.", ".skip.")
        key = _OLD_BOTTLENECK_KEY.sub(lambda m: f"{m['module']}.{_PLURAL.get(m['kind'], m['kind'])}.{m['index']}", key)
        converted[key] = value
    return converted


def load_model(
    name: str, q: int = DEFAULT_QUALITY, metric: str = "mse", weights: str | Path | None = None
) -> CompressionModel:
    """Build a learned codec's model from its pretrained weights (eval mode, CPU).

    Args:
        name: architecture name (see :data:`ARCHITECTURES`).
        q: quality level.
        metric: the distortion it was trained for, ``"mse"`` or ``"ms-ssim"``.
        weights: explicit local file instead of the hub's resolution order.

    Raises:
        ValueError: unknown name / q / metric, or the file holds other weights.
        hac.hub.MissingWeightsError: not on this machine and not downloadable.
        hac.hub.UnsafeWeightsError: hash mismatch or an unsafe pickle.
    """
    architecture = get_architecture(name)
    spec = architecture.spec(q, metric)
    state = convert_zoo_state_dict(hub.load_weights(spec, weights))
    try:
        model = architecture.model_class.from_state_dict(state)
    except (KeyError, RuntimeError) as error:
        raise ValueError(
            f"the weights for {spec.name!r} do not fit {architecture.model_class.__name__}: {error}"
        ) from error
    sizes = f"N={model.N}, M={getattr(model, 'M', model.N)}"
    logger.debug("built %s (%s) from the %s weights", type(model).__name__, sizes, spec.name)
    return model.eval()


def random_model(name: str, q: int = DEFAULT_QUALITY) -> CompressionModel:
    """A random-initialised model with the channel counts of ``name`` at quality ``q`` (eval mode)."""
    architecture = get_architecture(name)
    architecture.spec(q, architecture.metrics[0])  # validates q
    return architecture.model_class(*architecture.sizes[int(q)]).eval()


class PretrainedCodec(CompressAICodec):
    """A learned codec with pretrained weights (see :class:`~hac.codecs.compressai.codec.CompressAICodec`).

    Args:
        architecture: registered name, e.g. ``"bmshj2018-hyperprior"``.
        q: quality level (1 = fewest bits); valid levels depend on the architecture.
        metric: ``"mse"`` or ``"ms-ssim"`` (``hac-hyperprior``: ``"mse"`` only).
        mode: ``"fast"`` (estimated bpp, batched) or ``"entropy-coded"`` (real
            bitstream); the reconstruction is the same.
        weights: local weights file to use instead of the default resolution.

    Shape:
        (N, 3, H, W) in [0, 1] -> x_hat (N, 3, H, W) in [0, 1], bpp (N,).
    """

    def __init__(
        self,
        architecture: str,
        q: int = DEFAULT_QUALITY,
        metric: str = "mse",
        mode: CodecMode | str = CodecMode.FAST,
        weights: str | Path | None = None,
    ) -> None:
        spec = get_architecture(architecture).spec(q, metric)
        mode = CodecMode(mode)
        super().__init__(load_model(architecture, q, metric, weights), mode)
        self.weight_spec = spec
        self.params = {"q": int(q)}
        if metric != "mse":
            self.params["metric"] = metric
        if mode is not CodecMode.FAST:
            self.params["mode"] = mode.value
        if weights is not None:
            self.params["weights"] = str(weights)


def _codec_factory(architecture: LearnedArchitecture) -> Callable[..., PretrainedCodec]:
    def factory(
        q: int = DEFAULT_QUALITY, metric: str = "mse", mode: CodecMode | str = CodecMode.FAST, weights: str | Path | None = None
    ) -> PretrainedCodec:
        return PretrainedCodec(architecture.name, q=q, metric=metric, mode=mode, weights=weights)

    factory.__name__ = factory.__qualname__ = f"create_{architecture.name.replace('-', '_')}"
    factory.__doc__ = (
        f"{architecture_info(architecture).description}.\n\n"
        f"q in {', '.join(map(str, architecture.qualities))}; metric in {', '.join(architecture.metrics)}; "
        f"mode in {', '.join(CodecMode.values())}. See :class:`PretrainedCodec`."
    )
    return factory


def architecture_info(architecture: LearnedArchitecture) -> CodecInfo:
    """The codec facts of a learned architecture: its qualities and weights per metric; the app starts in the middle."""
    qualities = architecture.qualities
    paper = next(iter(architecture.specs.values())).paper
    return CodecInfo.learned(
        f"{architecture.name} ({architecture.model_class.__name__}; {paper})",
        architecture.weights(architecture.metrics[0]),
        DEFAULT_QUALITY,
        start_quality=qualities[len(qualities) // 2],
        weight_variants={"metric": {metric: architecture.weights(metric) for metric in architecture.metrics}},
        rate_attack=True,  # PretrainedCodec.rd_surrogate
    )


for _architecture in ARCHITECTURES.values():
    hub.register_weights(_architecture.specs.values())
    add_codec(_architecture.name, _codec_factory(_architecture), PretrainedCodec, architecture_info(_architecture))
del _architecture
