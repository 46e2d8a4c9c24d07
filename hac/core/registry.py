"""One small registry type shared by codecs, classifiers and attacks.

Each kind of component keeps one :class:`Registry`; a factory looks names up in
it, so an unknown name always fails the same way: a ``ValueError`` that lists
the valid choices.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table with a decorator for registration.

    Args:
        kind: what the entries are ("codec", "classifier", ...), used in errors.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (names must be unique)."""

        def add(obj: T) -> T:
            self.add(name, obj)
            return obj

        return add

    def add(self, name: str, obj: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj

    def remove(self, name: str) -> None:
        """Forget ``name`` (a plugin or a test unregistering what it added)."""
        self.get(name)  # unknown names fail with the list of valid ones
        del self._entries[name]

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.names())}"
            ) from None

    def names(self, sort: bool = True) -> list[str]:
        """The registered names, sorted, or in the order they were registered (``sort=False``)."""
        return sorted(self._entries) if sort else list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
