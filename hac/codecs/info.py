"""What each registered codec declares about itself, once, beside its code.

``@register_codec("jpeg", info=CodecInfo(...))`` states the codec's qualities,
default, weights per quality and the attacks it supports. The app, ``hac rd``,
``hac eval`` and the CLI ask :func:`hac.codecs.factory.codec_info` for these
facts and never branch on a codec's name, so a newly registered codec shows up
in all of them (quality slider, rate-distortion sweep) without further edits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Union

from ..core.choices import Choice
from ..hub import WeightSpec

__all__ = ["CodecInfo", "CodecMode", "Quality", "Weights"]

Quality = Union[int, str]
Weights = Mapping[Union[Quality, None], WeightSpec]
"""Weights by quality; the key ``None`` holds the weights of a codec without a quality setting."""


class CodecMode(Choice):
    """How a learned codec runs: ``fast`` (quantised forward pass, estimated bpp) or
    ``entropy-coded`` (real bitstream, real bpp); both give the same reconstruction."""

    FAST = "fast"
    ENTROPY_CODED = "entropy-coded"

    @classmethod
    def unknown(cls, value: object) -> str:
        return f"mode must be one of {', '.join(cls.values())}, got {value!r}"


@dataclass(frozen=True)
class CodecInfo:
    """One codec's facts.

    Attributes:
        description: one line saying what the codec is (and its paper, where it has one).
        qualities: the valid values of the quality parameter: a ``range`` of integers
            (JPEG ``range(1, 96)``) or a tuple of listed values (HiFiC ``("low", "med", "high")``);
            ``None``: the codec has no quality setting.
        default_quality: the quality the codec is built with when none is given.
        start_quality: where an interactive chooser (the app's slider) starts when no
            weights say otherwise; ``None``: ``default_quality``.
        sweep: the qualities a rate-distortion sweep measures by default; ``None``: all of them.
        quality_param: the name of the quality parameter in the codec's spec (``q``).
        weights: the weights the codec loads with its default parameters, by quality;
            empty: it needs none.
        weight_variants: weights chosen by another parameter, ``{param: {value: weights}}``
            (the zoo's ``metric``, ComDefend's ``pretrained``).
        modes: the :class:`CodecMode` values it takes as ``mode`` (empty: it has no modes).
        rate_attack: whether the codec attack's ``rate`` objective has a differentiable
            rate estimate for it.
        surrogate: whether it has a differentiable surrogate; filled in from the class at
            registration (:meth:`hac.codecs.base.Codec.has_surrogate`), never declared by hand.
    """

    description: str = ""
    qualities: range | tuple[Quality, ...] | None = None
    default_quality: Quality | None = None
    start_quality: Quality | None = None
    sweep: tuple[Quality, ...] | None = None
    quality_param: str = "q"
    weights: Weights = field(default_factory=dict)
    weight_variants: Mapping[str, Mapping[Any, Weights]] = field(default_factory=dict)
    modes: tuple[CodecMode, ...] = ()
    rate_attack: bool = False
    surrogate: bool = False

    def __post_init__(self) -> None:
        if self.qualities is None:
            if self.default_quality is not None or self.sweep:
                raise ValueError("a codec without qualities has no default quality or sweep")
            return
        if not isinstance(self.qualities, range):
            object.__setattr__(self, "qualities", tuple(self.qualities))
        if len(self.qualities) == 0:
            raise ValueError("qualities must not be empty (None: the codec has no quality setting)")
        for name in ("default_quality", "start_quality"):
            value = getattr(self, name)
            if value is not None and value not in self.qualities:
                raise ValueError(f"{name} {value!r} is not one of the qualities {self.describe_qualities()}")
        if self.default_quality is None:
            raise ValueError("a codec with qualities declares its default_quality")
        for quality in self.sweep or ():
            if quality not in self.qualities:
                raise ValueError(f"sweep quality {quality!r} is not one of the qualities {self.describe_qualities()}")
        for quality in self.weights:
            if quality is not None and quality not in self.qualities:
                raise ValueError(f"weights for quality {quality!r}, which is not one of {self.describe_qualities()}")

    @classmethod
    def learned(cls, description: str, weights: Weights, default_quality: Quality, **facts: Any) -> "CodecInfo":
        """A learned codec with one set of weights per quality (its qualities are the keys of ``weights``)
        that runs in every :class:`CodecMode`; ``facts`` sets the other fields."""
        return cls(description, tuple(weights), default_quality, weights=weights, modes=tuple(CodecMode), **facts)

    @property
    def has_quality(self) -> bool:
        return self.qualities is not None

    @property
    def listed(self) -> bool:
        """Whether the qualities are a list rather than a run of consecutive integers (ELIC's λ·1000, HiFiC's names)."""
        if self.qualities is None or isinstance(self.qualities, range):
            return False
        first = self.qualities[0]
        return not (all(isinstance(q, int) for q in self.qualities) and list(self.qualities) == list(range(first, first + len(self.qualities))))

    @property
    def initial_quality(self) -> Quality | None:
        """Where a chooser starts: :attr:`start_quality`, else :attr:`default_quality`."""
        return self.start_quality if self.start_quality is not None else self.default_quality

    def describe_qualities(self) -> str:
        """``[1, 95]`` for a range, ``1, 2, 3`` or ``low, med, high`` for a list."""
        if isinstance(self.qualities, range):
            return f"[{self.qualities[0]}, {self.qualities[-1]}]"
        return ", ".join(map(str, self.qualities or ()))

    def check_quality(self, value: object, codec: str) -> Quality:
        """``value`` if it is one of the qualities (a whole float counts for a range), else ``ValueError``.

        The message names the codec, the parameter and the valid values, e.g.
        ``jpeg quality q must be an integer in [1, 95], got 0``.
        """
        where = f"{codec} quality {self.quality_param}"
        if self.qualities is None:
            raise ValueError(f"codec {codec!r} has no quality setting")
        if isinstance(self.qualities, range):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value not in self.qualities:
                raise ValueError(f"{where} must be an integer in {self.describe_qualities()}, got {value!r}")
            return int(value)
        if isinstance(value, bool) or value not in self.qualities:
            raise ValueError(f"{where} must be one of {self.describe_qualities()}, got {value!r}")
        return self.qualities[self.qualities.index(value)]

    def weights_for(self, params: Mapping[str, object] | None = None) -> Weights:
        """The weights by quality for the codec's other parameters ``params`` (e.g. ``{"metric": "ms-ssim"}``).

        Raises:
            ValueError: a variant parameter has a value with no declared weights.
        """
        for param, variants in self.weight_variants.items():
            if params and param in params:
                value = params[param]
                if value not in variants:
                    raise ValueError(f"{param} must be one of {', '.join(map(str, variants))}, got {value!r}")
                return variants[value]
        return self.weights
