"""What one request of the public app may ask for: per-field caps, one work budget, a time limit.

Every model-running handler checks its settings against the caps, then its
:mod:`hac.defence.budget` estimate against :attr:`AppLimits.max_work`, before any
work starts; a refusal says what to lower and gives the command line that runs the
same thing without limits. While it runs, :func:`request_deadline` stops it at the
next attack step or evaluation unit once the client has gone or the time limit has
passed, so no request holds a worker beyond its budget.

The app never opens a server path a user names: path-valued codec parameters
(``weights=``) are refused here (the CLI keeps them), and :func:`public_message`
takes server paths out of every error message shown.
"""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..codecs.factory import codec_factory
from ..core.cancel import Deadline
from ..core.specs import ComponentSpec, parse_chain
from ..defence.budget import WorkEstimate

__all__ = [
    "MAX_STEPS", "MAX_RESTARTS", "MAX_EOT_ITER", "MAX_QUERIES", "MAX_CHAIN", "APP_MAX_ROUNDS", "MAX_IMAGES",
    "MAX_SURROGATE_STEPS", "MAX_STEPS_MULTIPLIER", "MAX_SWEEP", "SECONDS_PER_UNIT", "AppLimits", "WorkTooLarge", "check_attack_caps", "check_chain", "request_deadline",
    "public_message",
]

MAX_STEPS = 200
"""Most attack steps per run (``steps``)."""
MAX_RESTARTS = 10
MAX_EOT_ITER = 8
"""Most EOT iterations an attack may set itself (APGD's ``eot_iter``); the ``eot`` threat model uses 8 samples."""
MAX_QUERIES = 5000
"""Most queries of a gradient-free attack (Square's ``n_queries``)."""
MAX_CHAIN = 8
"""Most codecs in one chain."""
MAX_SURROGATE_STEPS = 500
"""Most training steps of the audit's learned surrogate."""
MAX_STEPS_MULTIPLIER = 20
"""Largest multiple of its steps the audit's steps check may run the strongest attack at."""
MAX_SWEEP = 4
"""Most values in the audit's steps multipliers and in its eps sweep."""
APP_MAX_ROUNDS = 10
"""The public app's purification rounds per request (the library allows up to ``purify.MAX_ROUNDS``)."""
MAX_IMAGES = 200
SECONDS_PER_UNIT = 0.07
"""One work unit (an efficientnet-lite0 step on 224x224) on one CPU thread; turns a budget into minutes."""

_ATTACK_CAPS = {"steps": MAX_STEPS, "restarts": MAX_RESTARTS, "eot_iter": MAX_EOT_ITER, "n_queries": MAX_QUERIES}


class WorkTooLarge(ValueError):
    """A request over the app's work budget (the message says what to lower and gives the command line)."""


@dataclass(frozen=True)
class AppLimits:
    """The app's work budget (units of :mod:`hac.defence.budget`) and wall-clock limit per request.

    :meth:`from_env` reads ``$HAC_APP_MAX_WORK`` and ``$HAC_APP_TIME_LIMIT`` (seconds).
    """

    max_work: float = 20_000
    time_limit: float = 300

    def __post_init__(self) -> None:
        for name in ("max_work", "time_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"app limit {name} must be a positive finite number, got {value!r}")

    @classmethod
    def from_env(cls) -> "AppLimits":
        values = {}
        for name, variable in (("max_work", "HAC_APP_MAX_WORK"), ("time_limit", "HAC_APP_TIME_LIMIT")):
            text = os.environ.get(variable, "").strip()
            if text:
                try:
                    values[name] = float(text)
                except ValueError:
                    raise ValueError(f"${variable} must be a number, got {text!r}") from None
        return cls(**values)

    def check(self, estimate: WorkEstimate, what: str, command: str,
              steps: str = "the attack steps (steps x restarts x EOT samples)") -> None:
        """Refuse ``estimate`` if it is over :attr:`max_work`, naming its largest factor and ``command``;
        ``steps`` says what the attack steps are made of in the caller's fields.

        Raises:
            WorkTooLarge: over the budget.
        """
        if estimate.units <= self.max_work:
            return
        worst = max(estimate.cells, key=lambda cell: cell.units)
        factors = {
            steps: worst.attack_steps + 1,
            "the codec chain's length or its rounds (learned codecs count for several passes)": worst.codec_passes,
            "the number of images": estimate.images,
            "the number of grid cells": len(estimate.cells),
        }
        largest = max(factors, key=factors.get)
        raise WorkTooLarge(
            f"{what} is too much work for this app: {estimate.explain()}, over its budget of {self.max_work:,.0f} "
            f"(about {self.max_work * SECONDS_PER_UNIT / 60:.0f} min on one CPU core). Lower {largest}, "
            f"or run it on your own machine: `{command}`"
        )


def check_attack_caps(field: str, spec: ComponentSpec) -> None:
    """Refuse attack parameters over the app's caps (``steps``, ``restarts``, ``eot_iter``, ``n_queries``)."""
    for key, cap in _ATTACK_CAPS.items():
        value = spec.params.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > cap:
            raise ValueError(f"{field}: {key}={value} in {spec} is over the app's cap of {cap}; lower it, or run it "
                             "with the command line (`python -m hac attack` or `python -m hac eval`)")


def _path_parameters(codec: str) -> list[str]:
    parameters = inspect.signature(codec_factory(codec)).parameters.values()
    return [p.name for p in parameters if "Path" in str(p.annotation)]


def check_chain(field: str, chain: str, rounds: int | None = None) -> list[ComponentSpec]:
    """A chain the app may run: at most :data:`MAX_CHAIN` codecs, no path-valued parameter, rounds capped.

    Raises:
        ValueError: naming ``field`` and the limit.
    """
    specs = parse_chain(chain)
    if len(specs) > MAX_CHAIN:
        raise ValueError(f"{field}: the chain has {len(specs)} codecs, the app runs at most {MAX_CHAIN}; "
                         "shorten it, or run it with the command line (`python -m hac attack --codec ...`)")
    for spec in specs:
        paths = sorted(set(spec.params) & set(_path_parameters(spec.name)))
        if paths:
            raise ValueError(f"{field}: the app does not open server files, so {spec.name} takes no "
                             f"{', '.join(f'{name}=' for name in paths)} here; pick the codec and quality by name "
                             "(the command line accepts weights= for your own files)")
    if rounds is not None and not 1 <= rounds <= APP_MAX_ROUNDS:
        raise ValueError(f"rounds must be an integer in [1, {APP_MAX_ROUNDS}], got {rounds!r}")
    return specs


def request_deadline(seconds: float) -> Deadline:
    """A stop check for the running Gradio request: its time limit, or its client gone.

    The client counts as gone when Gradio no longer holds the request's event as alive (its
    stream closed, or it was cancelled); outside a request only the time limit applies.
    """
    from gradio.context import LocalContext

    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    if queue is None or event_id is None:
        return Deadline(seconds)

    def gone() -> str | None:
        for job in list(queue.active_jobs):
            for event in job or ():
                if event._id == event_id:
                    return None if event.alive else "the client disconnected"
        return "the client disconnected (the request was cancelled)"

    return Deadline(seconds, gone)


_PATH = re.compile(r"(?:~/|(?<![\w.:/])/(?=[\w.~-]))[^\s'\"`,;()\[\]]*")


def public_message(message: str, names: Callable[[str], str] = lambda path: Path(path).name or "the file") -> str:
    """``message`` with every server path replaced by its last part (``/tmp/gradio/ab12/x.png`` -> ``x.png``)
    and the home folder never shown."""
    home = str(Path.home())
    message = message.replace(home, "~") if home not in ("", "/") else message
    return _PATH.sub(lambda match: names(match.group(0)), message)
