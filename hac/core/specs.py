"""Text specs for components, shared by the CLI, the batch config and the UI.

A spec names a registered component and its parameters::

    jpeg:q=25
    bmshj2018-hyperprior:q=3,metric=mse,mode=fast
    pgd:eps=4/255,steps=10

A codec *chain* joins specs with ``+`` (``jpeg:q=50+webp:q=80``): each round of
purification applies the whole chain in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

__all__ = ["ComponentSpec", "parse_spec", "parse_chain", "parse_value", "format_spec"]


@dataclass(frozen=True)
class ComponentSpec:
    """A component name plus keyword parameters, e.g. ``jpeg`` with ``{"q": 25}``."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return format_spec(self)


def parse_value(text: str) -> Any:
    """Parse one parameter value: int, float, fraction (``4/255``), bool, else str.

    Raises:
        ValueError: a number that is not finite (``inf``, ``nan``, ``1e999``).
    """
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for convert in (int, float):
        try:
            value = convert(text)
        except ValueError:
            continue
        if not math.isfinite(value):
            raise ValueError(f"{text!r} is not a finite number; give a number such as 25 or 4/255")
        return value
    if "/" in text:
        try:
            return float(Fraction(text))
        except (ValueError, ZeroDivisionError):
            pass
    return text


def parse_spec(text: str) -> ComponentSpec:
    """Parse ``name[:key=value[,key=value...]]`` into a :class:`ComponentSpec`.

    Raises:
        ValueError: empty name, a parameter without ``=``, or a repeated key.
    """
    name, _, rest = text.strip().partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"empty component name in spec {text!r}; expected e.g. 'jpeg:q=25'")
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(
                f"parameter {item!r} in spec {text!r} is not of the form key=value (e.g. 'jpeg:q=25')"
            )
        if key in params:
            raise ValueError(f"parameter {key!r} is given twice in spec {text!r}")
        try:
            params[key] = parse_value(value)
        except ValueError as error:
            raise ValueError(f"parameter {key} in spec {text!r}: {error}") from None
    return ComponentSpec(name, params)


def parse_chain(text: str) -> list[ComponentSpec]:
    """Parse a ``+``-joined chain of specs (``jpeg:q=50+webp:q=80``)."""
    parts = [part for part in text.split("+")]
    if not text.strip() or any(not part.strip() for part in parts):
        raise ValueError(f"invalid codec chain {text!r}; expected e.g. 'jpeg:q=25' or 'jpeg:q=50+webp:q=80'")
    return [parse_spec(part) for part in parts]


def format_spec(spec: ComponentSpec) -> str:
    """The inverse of :func:`parse_spec` (parameters in sorted order)."""
    if not spec.params:
        return spec.name
    params = ",".join(f"{key}={value}" for key, value in sorted(spec.params.items()))
    return f"{spec.name}:{params}"
