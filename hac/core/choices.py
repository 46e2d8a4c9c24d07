"""Closed sets of string values as enums, parsed once at the boundary (CLI, app, config).

``enum.StrEnum`` is Python 3.11+; :class:`Choice` is the same idea for 3.10: a
``str`` mixin, so a member compares, hashes, formats and JSON-encodes as its
value (``ThreatModel.BPDA == "bpda"``), and stores and reports keep their strings.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Choice"]


class Choice(str, Enum):
    """A string enum; ``Cls(value)`` parses, and an unknown value raises ``ValueError`` listing the valid ones."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """The valid values, in declaration order."""
        return tuple(member.value for member in cls)

    @classmethod
    def unknown(cls, value: object) -> str:
        """The error message for an invalid ``value`` (subclasses word it for their kind)."""
        return f"unknown {cls.__name__} {value!r}; valid choices: {', '.join(cls.values())}"

    @classmethod
    def _missing_(cls, value: object):
        raise ValueError(cls.unknown(value))
