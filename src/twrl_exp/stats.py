"""Aggregate statistics over seeds, in plain numpy (no tracking or config imports).

The interquartile mean and its percentile-bootstrap confidence interval follow Agarwal et al.
(2021), "Deep Reinforcement Learning at the Edge of the Statistical Precipice": with a handful of
seeds the IQM is less sensitive to one outlier than the mean and more efficient than the median.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

Statistic = Callable[[np.ndarray], float]


def _values(x: ArrayLike) -> np.ndarray:
    values = np.asarray(x, dtype=float).ravel()
    if values.size == 0:
        raise ValueError("no values: a statistic of an empty sample is undefined.")
    return values


def iqm(x: ArrayLike) -> float:
    """Interquartile mean: the mean of the middle 50% of the values.

    Same convention as ``scipy.stats.trim_mean(x, 0.25)``: ``int(0.25 * n)`` values are cut from
    each end of the sorted sample, so samples of up to 3 values keep them all (plain mean).

    >>> iqm([1, 2, 3])
    2.0
    >>> iqm([1, 2, 3, 100])
    2.5
    >>> iqm([0, 1, 2, 3, 4, 5, 6, 1000])
    3.5

    Raises:
        ValueError: if ``x`` is empty.
    """
    values = np.sort(_values(x))
    cut = int(0.25 * values.size)
    return float(values[cut : values.size - cut].mean())


def bootstrap_ci(
    x: ArrayLike,
    statistic: Statistic = iqm,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of ``statistic(x)``.

    ``n_resamples`` samples of ``len(x)`` values are drawn from ``x`` with replacement; the
    interval runs between the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles
    of the statistic over them. The same ``seed`` gives the same interval.

    >>> bootstrap_ci([5.0, 5.0, 5.0])
    (5.0, 5.0)

    Args:
        x: the sample, e.g. one score per seed.
        statistic: maps a 1-D array to a number (default: the IQM).
        confidence: coverage of the interval, in (0, 1).
        n_resamples: number of bootstrap resamples (>= 1).
        seed: seed of the resampling generator.

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: if ``x`` is empty, ``confidence`` is outside (0, 1) or ``n_resamples`` < 1.
    """
    values = _values(x)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence} is invalid: it must be in (0, 1).")
    if n_resamples < 1:
        raise ValueError(f"n_resamples={n_resamples} is invalid: it must be >= 1.")
    rng = np.random.default_rng(seed)
    samples = values[rng.integers(0, values.size, size=(n_resamples, values.size))]
    estimates = np.array([statistic(sample) for sample in samples], dtype=float)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(estimates, [alpha, 1.0 - alpha])
    return float(low), float(high)


def aggregate_curves(
    curves: Sequence[tuple[ArrayLike, ArrayLike]], points: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over several curves ``(steps, values)`` on one grid of steps.

    The grid spans from the first to the last step of any curve. Curves are linearly
    interpolated between their own points and a curve that ends early (a seed stopped once
    solved, say) keeps its last value to the end of the grid, so the mean does not jump when
    it ends; before its first point a curve takes no part. Of several values at one step
    (episodes ending together in a vector env) the last one counts.

    >>> grid, mean, low, high = aggregate_curves([([0, 10], [0, 10]), ([5, 10], [2, 12])], 3)
    >>> grid.tolist(), mean.tolist(), low.tolist(), high.tolist()
    ([0.0, 5.0, 10.0], [0.0, 3.5, 11.0], [0.0, 2.0, 10.0], [0.0, 5.0, 12.0])

    Returns:
        ``(grid, mean, low, high)``; all empty if no curve has a point.
    """
    usable = [_clean(s, v) for s, v in curves if np.size(s) > 0]
    if not usable:
        empty = np.zeros(0)
        return empty, empty, empty, empty
    start = min(float(s[0]) for s, _ in usable)
    stop = max(float(s[-1]) for s, _ in usable)
    grid = np.linspace(start, stop, points) if stop > start else np.array([start])
    stacked = np.full((len(usable), grid.size), np.nan)
    for i, (s, v) in enumerate(usable):
        stacked[i] = np.interp(grid, s, v, left=np.nan)
    return grid, np.nanmean(stacked, 0), np.nanmin(stacked, 0), np.nanmax(stacked, 0)


def _clean(steps: ArrayLike, values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Sorted by step, one value per step (the last), as ``np.interp`` needs."""
    s, v = np.asarray(steps, dtype=float).ravel(), np.asarray(values, dtype=float).ravel()
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    last = np.r_[s[1:] != s[:-1], True]
    return s[last], v[last]
