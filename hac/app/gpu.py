"""The app's model work on a GPU lent per call (Hugging Face ZeroGPU's ``spaces.GPU``), the plain call elsewhere.

Every model-running handler is wrapped by :func:`on_gpu`:

* before any GPU is asked for, the request's work is estimated from its fields (:class:`GpuWork`:
  units of one classifier step, as ``hac.defence.budget`` counts them); a request that one GPU call
  cannot hold (over :func:`max_call_seconds`) is refused with the command line that runs it anywhere;
* the handler then runs inside ``spaces.GPU(duration=...)``, the duration growing with the work; on
  ZeroGPU the models, loaded once on the CPU in the main process, move to the GPU inside the call
  (the call runs in a forked worker, so the CPU copies stay for the next request).

Off ZeroGPU ``spaces.GPU`` returns the function unchanged (and without ``spaces`` installed it is not
used at all): the same code runs on a laptop, a CPU Space and a dedicated-GPU Space.
ZeroGPU does not support ``torch.compile``; hac never calls it.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from .cache import ModelCache
from .handlers import user_error, user_errors

__all__ = [
    "ZERO_GPU_ENV", "MAX_CALL_SECONDS_ENV", "SECONDS_PER_UNIT", "STARTUP_SECONDS", "GpuWork",
    "on_zero_gpu", "model_device", "max_call_seconds", "call_seconds", "on_gpu",
]

ZERO_GPU_ENV = "SPACES_ZERO_GPU"
"""Set to true by Hugging Face on ZeroGPU Spaces (``spaces.config`` reads the same variable)."""
MAX_CALL_SECONDS_ENV = "HAC_GPU_MAX_SECONDS"
MAX_CALL_SECONDS = 120
"""Most GPU seconds one request may ask for: an unauthenticated visitor's whole daily ZeroGPU quota (2 min)."""
SECONDS_PER_UNIT = 0.02
"""GPU seconds per work unit (one classifier step on 224x224, a ViT-B/16 being the slowest classifier offered):
an estimate for a ZeroGPU H200 slice, with margin; ZeroGPU charges the time used, not the duration asked."""
STARTUP_SECONDS = 10
"""Per call: starting the worker, moving the models to the GPU, loading one not yet in the cache."""


@dataclass(frozen=True)
class GpuWork:
    """What a request asks for: ``units`` of work and the command that runs the same thing without the app."""

    units: float
    command: str


def on_zero_gpu() -> bool:
    return os.environ.get(ZERO_GPU_ENV, "").strip().lower() in ("1", "t", "true")


def model_device() -> str:
    """Where the app's models live between requests: the CPU on ZeroGPU (a GPU exists only inside a call),
    else CUDA when there is one."""
    return "cpu" if on_zero_gpu() or not torch.cuda.is_available() else "cuda"


def max_call_seconds() -> float:
    """:data:`MAX_CALL_SECONDS`, or ``$HAC_GPU_MAX_SECONDS`` (e.g. 1500 for a Space whose visitors have PRO quotas)."""
    text = os.environ.get(MAX_CALL_SECONDS_ENV, "").strip()
    try:
        value = float(text) if text else MAX_CALL_SECONDS
    except ValueError:
        raise ValueError(f"${MAX_CALL_SECONDS_ENV} must be a number of seconds, got {text!r}") from None
    if not 0 < value < math.inf:
        raise ValueError(f"${MAX_CALL_SECONDS_ENV} must be a positive number of seconds, got {text!r}")
    return value


def call_seconds(work: GpuWork) -> int:
    """The duration to ask ZeroGPU for: the work at :data:`SECONDS_PER_UNIT` plus :data:`STARTUP_SECONDS`."""
    return math.ceil(STARTUP_SECONDS + work.units * SECONDS_PER_UNIT)


def _spaces_gpu() -> Callable[..., Any] | None:
    try:
        import spaces
    except ImportError:
        return None
    return spaces.GPU


def on_gpu(handler: Callable[..., Any], work: Callable[[Mapping[str, Any]], GpuWork]) -> Callable[..., Any]:
    """``handler(cache, files, *fields)`` wrapped as the module docstring says.

    Args:
        handler: a model-running handler whose first parameter is the app's :class:`ModelCache`.
        work: the request's :class:`GpuWork` from the handler's arguments by name (defaults filled in);
            it raises ``ValueError`` for fields it cannot read, which the user sees as the handler's own
            errors are shown.

    Returns:
        A function with ``handler``'s signature (Gradio reads it, e.g. for ``gr.Progress``).
    """
    signature = inspect.signature(handler)

    def request_work(*args: Any, **kwargs: Any) -> GpuWork:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return work(bound.arguments)

    def duration(*args: Any, **kwargs: Any) -> int:
        return call_seconds(request_work(*args, **kwargs))

    def in_call(cache: ModelCache, *args: Any, **kwargs: Any) -> Any:
        if on_zero_gpu() and torch.cuda.is_available():
            cache.move_to("cuda")
        return handler(cache, *args, **kwargs)

    gpu = _spaces_gpu()
    decorated = gpu(duration=duration)(in_call) if gpu is not None else in_call

    @functools.wraps(handler)
    def call(*args: Any, **kwargs: Any) -> Any:
        if gpu is None:  # no GPU call to size: the app's work budget (hac.app.limits) alone applies
            return decorated(*args, **kwargs)
        with user_errors():
            request = request_work(*args, **kwargs)
        seconds, limit = call_seconds(request), max_call_seconds()
        if seconds > limit:
            raise user_error(
                f"This request needs about {seconds} s of GPU time ({request.units:,.0f} units of work), more than "
                f"one GPU call here may take ({limit:.0f} s). Ask for less (fewer steps, images, codecs or rounds), "
                f"or run it on your own machine: `{request.command}`",
                "Too much work for one GPU call",
            )
        return decorated(*args, **kwargs)

    return call
