"""How much work each model-running tab's request asks for (:class:`hac.app.gpu.GpuWork`), from its fields.

Each tab declares its own estimate beside its handler, which refuses requests over the work budget
(:mod:`hac.app.limits`) with it; here the same estimates size the ZeroGPU call. A unit is one classifier
step; a (image, cell) pair costs ``(attack steps x restarts x EOT samples + 1) x codec passes``
(chain length x rounds, learned codecs weighted): :mod:`hac.defence.budget`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..defence.budget import WorkEstimate
from .audit_fields import audit_estimate
from .batch import batch_estimate
from .codec_attack import codec_attack_estimate
from .gpu import GpuWork
from .handlers import attack_estimate

__all__ = ["attack_work", "codec_attack_work", "batch_work", "audit_work"]

Estimate = Callable[[Mapping[str, Any]], tuple[WorkEstimate, str]]


def _gpu_work(estimate: Estimate) -> Callable[[Mapping[str, Any]], GpuWork]:
    def work(fields: Mapping[str, Any]) -> GpuWork:
        units, command = estimate(fields)
        return GpuWork(units.units, command)

    work.__doc__ = f"The GPU work of :func:`{estimate.__module__}.{estimate.__name__}`."
    return work


attack_work = _gpu_work(attack_estimate)
codec_attack_work = _gpu_work(codec_attack_estimate)
batch_work = _gpu_work(batch_estimate)
audit_work = _gpu_work(audit_estimate)
