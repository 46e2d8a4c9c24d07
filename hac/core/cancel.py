"""Stopping long work from outside it, cooperatively.

Long loops (attack steps, evaluation units) call a *stop check* between steps; the
check raises :class:`Cancelled` when the caller wants the work to end (a wall-clock
limit passed, the client went away). Nothing is interrupted mid-step, so no state is
left half-written: the evaluation store keeps every unit finished before the stop.
"""

from __future__ import annotations

import time
from typing import Callable

__all__ = ["Cancelled", "StopCheck", "Deadline"]


class Cancelled(Exception):
    """The work was stopped by its caller before it finished; the message says why."""


StopCheck = Callable[[], None]
"""Called between steps of long work; raises :class:`Cancelled` to stop it."""


class Deadline:
    """A stop check for a wall-clock limit and, optionally, a caller that went away.

    Args:
        seconds: the limit, from construction.
        gone: optional probe returning a reason (e.g. ``"the client disconnected"``) once the
            work's result is no longer wanted, else ``None``.
        clock: seconds, monotonic (tests pass a fake one).

    Calling the deadline raises :class:`Cancelled` once either applies.
    """

    def __init__(self, seconds: float, gone: Callable[[], str | None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not seconds > 0:
            raise ValueError(f"a deadline needs a positive number of seconds, got {seconds!r}")
        self.seconds = seconds
        self.gone = gone
        self.clock = clock
        self.started = clock()

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def __call__(self) -> None:
        reason = self.gone() if self.gone is not None else None
        if reason:
            raise Cancelled(f"stopped after {self.elapsed:.1f} s: {reason}")
        if self.elapsed > self.seconds:
            raise Cancelled(f"stopped after {self.elapsed:.1f} s: over the time limit of {self.seconds:g} s")
