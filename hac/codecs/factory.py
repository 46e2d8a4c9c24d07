"""The codec registry and the one factory, :func:`create_codec`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

from ..core.registry import Registry
from ..core.specs import ComponentSpec, parse_spec
from .base import Codec
from .info import CodecInfo
from .resampled import ResampledCodec, check_scale

__all__ = [
    "CODECS", "CodecEntry", "register_codec", "add_codec", "codec_factory", "codec_class", "codec_info", "check_codec_params",
    "create_codec", "codec_names",
    "load_all_codec_modules", "SCALE_PARAM",
]


@dataclass(frozen=True)
class CodecEntry:
    """A registered codec: the factory that builds it, the :class:`Codec` class it returns, and its facts."""

    factory: Callable[..., Codec]
    builds: type[Codec]
    info: CodecInfo


CODECS: Registry[CodecEntry] = Registry("codec")

# A parameter every codec takes, applied by create_codec around the codec it builds.
SCALE_PARAM = "scale"



def add_codec(name: str, factory: Callable[..., Codec], builds: type[Codec], info: CodecInfo | None = None) -> None:
    """Register ``factory`` under ``name``; it returns instances of ``builds`` and has the facts ``info``
    (default: no quality setting, no weights). ``info.surrogate`` is taken from ``builds``."""
    info = replace(info or CodecInfo(), surrogate=builds.has_surrogate())
    CODECS.add(name, CodecEntry(factory, builds, info))


def register_codec(name: str, builds: type[Codec] | None = None, info: CodecInfo | None = None) -> Callable:
    """Decorator registering a codec class (``@register_codec("jpeg", info=CodecInfo(...))``) or a factory
    function, which names the class it returns (``@register_codec("elic", builds=ELICCodec, info=...)``)."""

    def add(factory: Callable[..., Codec]) -> Callable[..., Codec]:
        cls = factory if isinstance(factory, type) else builds
        if cls is None:
            raise TypeError(f"register_codec({name!r}) on a function needs builds=<the Codec class it returns>")
        add_codec(name, factory, cls, info)
        return factory

    return add


def _entry(name: str) -> CodecEntry:
    load_all_codec_modules()
    return CODECS.get(name)  # unknown names fail with the list of valid ones


def codec_factory(name: str) -> Callable[..., Codec]:
    """The factory of the codec ``name`` (its signature lists the codec's parameters)."""
    return _entry(name).factory


def codec_class(name: str) -> type[Codec]:
    """The class the codec ``name`` builds, known without building it (no weights are loaded)."""
    return _entry(name).builds


def codec_info(name: str) -> CodecInfo:
    """The facts the codec ``name`` declared (qualities, default, weights, attacks it supports); nothing is built."""
    return _entry(name).info


def load_all_codec_modules() -> None:
    """Import every module of :mod:`hac.codecs` (those that register codecs do so on import).

    Done on first use, so that ``import hac`` does no work; a new codec is one module
    with its ``@register_codec(name, info=...)``, found here without further edits.
    """
    package = importlib.import_module(__package__)
    with warnings.catch_warnings():
        # compressai's import scripts a function with torch.jit, which torch now deprecates
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        for module in pkgutil.walk_packages(package.__path__, f"{__package__}."):
            importlib.import_module(module.name)


def codec_names(sort: bool = True) -> list[str]:
    """Every registered codec's name, sorted, or in registration order (``sort=False``: module by module,
    each module's codecs as it declares them, e.g. jpeg before webp)."""
    load_all_codec_modules()
    return CODECS.names(sort)


def check_codec_params(name: str, params: Mapping[str, Any]) -> None:
    """Check that ``params`` are parameters of the codec ``name`` (nothing is built).

    Raises:
        ValueError: unknown codec name or parameter; the message lists the valid ones.
    """
    signature = inspect.signature(codec_factory(name))
    accepted = [p.name for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD]
    accepted.append(SCALE_PARAM)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"codec {name!r} has no parameter(s) {', '.join(unknown)}; valid parameters: {', '.join(accepted) or 'none'}"
        )


def create_codec(spec: str | ComponentSpec, **params: Any) -> Codec:
    """Build a codec from a spec (``"jpeg:q=25"``) or a name plus keyword parameters.

    Every codec also takes ``scale`` (default 1): below 1 the codec codes a
    downscaled image (:class:`~hac.codecs.resampled.ResampledCodec`).

    Raises:
        ValueError: unknown codec name or parameter, or an out-of-range value;
            the message lists the valid choices.
    """
    if isinstance(spec, str):
        spec = parse_spec(spec)
    merged = {**spec.params, **params}
    check_codec_params(spec.name, merged)
    scale = check_scale(merged.pop(SCALE_PARAM, 1))
    codec = codec_factory(spec.name)(**merged)
    codec.codec_name = spec.name
    return codec if scale == 1 else ResampledCodec(codec, scale)
