"""Bjøntegaard deltas between two rate–quality curves.

BD-rate (G. Bjøntegaard, "Calculation of average PSNR differences between RD
curves", VCEG-M33, 2001): for each curve, fit log(rate) as a polynomial of the
quality (degree 3, or fewer with fewer than 4 points), integrate both fits over
the quality range the two curves share, and turn the mean log-rate difference into
a percentage: the average extra rate the test codec needs for the anchor's
quality (negative: it saves bits). BD-PSNR swaps the roles (quality as a function
of log-rate, over the shared log-rate range).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["bd_rate", "bd_quality", "bd_rate_and_range"]


def _fit(x: np.ndarray, y: np.ndarray) -> np.polynomial.Polynomial:
    degree = min(3, len(x) - 1)
    return np.polynomial.Polynomial.fit(x, y, degree)


def _mean_difference(xa, ya, xt, yt) -> tuple[float, tuple[float, float]]:
    """Mean over the shared x range of (fit_t(x) - fit_a(x)), each y fitted as a polynomial of x."""
    xa, ya, xt, yt = (np.asarray(v, dtype=np.float64) for v in (xa, ya, xt, yt))
    for name, x, y in (("anchor", xa, ya), ("test", xt, yt)):
        if x.ndim != 1 or x.shape != y.shape:
            raise ValueError(f"{name} curve: rates and qualities must be 1-D and of equal length")
        if len(np.unique(x)) < 2:
            raise ValueError(f"{name} curve needs at least 2 points with distinct values, has {len(np.unique(x))}")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError(f"{name} curve has non-finite values")
    low, high = max(xa.min(), xt.min()), min(xa.max(), xt.max())
    if not high > low:
        raise ValueError(
            f"the curves do not overlap (anchor {xa.min():.3f}..{xa.max():.3f}, test {xt.min():.3f}..{xt.max():.3f})"
        )
    integrals = []
    for x, y in ((xa, ya), (xt, yt)):
        antiderivative = _fit(x, y).integ()
        integrals.append(antiderivative(high) - antiderivative(low))
    return float((integrals[1] - integrals[0]) / (high - low)), (float(low), float(high))


def _log_rates(anchor_rate, test_rate, what: str) -> tuple[np.ndarray, np.ndarray]:
    for name, rates in (("anchor", anchor_rate), ("test", test_rate)):
        if np.any(np.asarray(rates, dtype=np.float64) <= 0):
            raise ValueError(f"{name} rates must be positive for a {what}")
    return np.log(anchor_rate), np.log(test_rate)


def bd_rate_and_range(anchor_rate, anchor_quality, test_rate, test_quality) -> tuple[float, tuple[float, float]]:
    """:func:`bd_rate` and the quality range (low, high) it was averaged over."""
    anchor_log, test_log = _log_rates(anchor_rate, test_rate, "BD-rate")
    difference, shared = _mean_difference(anchor_quality, anchor_log, test_quality, test_log)
    return 100.0 * math.expm1(difference), shared


def bd_rate(anchor_rate: Sequence[float], anchor_quality: Sequence[float], test_rate: Sequence[float], test_quality: Sequence[float]) -> float:
    """Bjøntegaard delta rate of ``test`` against ``anchor``, in percent.

    ``log(rate)`` is fitted as a cubic polynomial of the quality (a lower degree
    for curves of fewer than 4 points), both fits are integrated over the quality
    range the curves share, and the mean log-rate difference ``d`` gives
    ``100 * (exp(d) - 1)``. A test curve needing ``k`` times the anchor's rate at
    every quality gives exactly ``100 * (k - 1)``.

    Raises:
        ValueError: a curve has fewer than 2 distinct qualities, a rate is not
            positive, or the quality ranges do not overlap.
    """
    return bd_rate_and_range(anchor_rate, anchor_quality, test_rate, test_quality)[0]


def bd_quality(anchor_rate: Sequence[float], anchor_quality: Sequence[float], test_rate: Sequence[float], test_quality: Sequence[float]) -> float:
    """Bjøntegaard delta quality (e.g. BD-PSNR in dB): mean quality gain at equal rate.

    The quality is fitted as a polynomial of ``log(rate)`` and integrated over the
    shared log-rate range. A test curve ``d`` above the anchor everywhere gives ``d``.
    """
    anchor_log, test_log = _log_rates(anchor_rate, test_rate, "BD-quality")
    difference, _ = _mean_difference(anchor_log, anchor_quality, test_log, test_quality)
    return difference
