"""The codec registry and the one factory, :func:`create_codec`."""

from __future__ import annotations

import importlib
import inspect
import warnings
from typing import Any, Callable

from ..registry import Registry
from ..specs import ComponentSpec, parse_spec
from .base import Codec

__all__ = [
    "CODECS", "register_codec", "add_codec", "codec_class", "create_codec", "codec_names", "load_all_codec_modules",
    "CODEC_MODULES",
]

CODECS: Registry[Callable[..., Codec]] = Registry("codec")
_CLASSES: dict[str, type[Codec]] = {}

# Modules that register codecs when imported; imported on first use so that
# `import hac` does no work.
CODEC_MODULES = ("classical", "compressai_zoo", "comdefend", "elic", "hific")


def add_codec(name: str, factory: Callable[..., Codec], builds: type[Codec]) -> None:
    """Register ``factory`` under ``name``; it returns instances of ``builds``."""
    CODECS.add(name, factory)
    _CLASSES[name] = builds


def register_codec(name: str, builds: type[Codec] | None = None) -> Callable:
    """Decorator registering a codec class (``@register_codec("jpeg")``) or a factory
    function, which names the class it returns (``@register_codec("elic", builds=ELICCodec)``)."""

    def add(factory: Callable[..., Codec]) -> Callable[..., Codec]:
        cls = factory if isinstance(factory, type) else builds
        if cls is None:
            raise TypeError(f"register_codec({name!r}) on a function needs builds=<the Codec class it returns>")
        add_codec(name, factory, cls)
        return factory

    return add


def codec_class(name: str) -> type[Codec]:
    """The class the codec ``name`` builds, known without building it (no weights are loaded)."""
    load_all_codec_modules()
    CODECS.get(name)  # unknown names fail with the list of valid ones
    return _CLASSES[name]


def load_all_codec_modules() -> None:
    with warnings.catch_warnings():
        # compressai's import scripts a function with torch.jit, which torch now deprecates
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        for module in CODEC_MODULES:
            importlib.import_module(f"{__package__}.{module}")


def codec_names() -> list[str]:
    load_all_codec_modules()
    return CODECS.names()


def _check_params(name: str, factory: Callable, params: dict[str, Any]) -> None:
    signature = inspect.signature(factory)
    accepted = [p.name for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"codec {name!r} has no parameter(s) {', '.join(unknown)}; valid parameters: {', '.join(accepted) or 'none'}"
        )


def create_codec(spec: str | ComponentSpec, **params: Any) -> Codec:
    """Build a codec from a spec (``"jpeg:q=25"``) or a name plus keyword parameters.

    Raises:
        ValueError: unknown codec name or parameter, or an out-of-range value;
            the message lists the valid choices.
    """
    load_all_codec_modules()
    if isinstance(spec, str):
        spec = parse_spec(spec)
    merged = {**spec.params, **params}
    factory = CODECS.get(spec.name)
    _check_params(spec.name, factory, merged)
    codec = factory(**merged)
    codec.codec_name = spec.name
    return codec
