"""Aggregate statistics over seeds, in plain numpy (no tracking or config imports).

The interquartile mean and its percentile-bootstrap confidence interval follow Agarwal et al.
(2021), "Deep Reinforcement Learning at the Edge of the Statistical Precipice": with a handful of
seeds the IQM is less sensitive to one outlier than the mean and more efficient than the median.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

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


# ------------------------------------------------------------------------- comparisons
# The statistics of a comparison, in numpy and scipy (no tracking or config imports).
#
# Scores are per env: ``{env: one score per seed}``, as many seeds per env as there are (rliable
# asks for a full runs x tasks matrix; ragged is fine here).
#
# - **Aggregates** (Agarwal et al. 2021, rliable's ``aggregate_iqm`` / ``aggregate_mean``): the
#   interquartile mean and the mean of all scores of all envs together.
# - **Stratified bootstrap** (rliable's ``StratifiedBootstrap``, percentile intervals): each
#   resample draws, in every env, as many seeds as the env has, with replacement, from that env's
#   seeds; every agent is resampled independently.
# - **Probability of improvement** (rliable's ``probability_of_improvement``): per env, the
#   Mann-Whitney U of A's seeds against B's divided by ``n_A * n_B`` (the chance that a random
#   seed of A scores above a random seed of B, ties counted half), averaged over envs.
# - **Performance profiles** (rliable's ``run_score_distributions``): for each threshold, the
#   fraction of an agent's seeds that score above it, averaged over envs.
# - **The decision and the seed budget** (Colas, Sigaud & Oudeyer 2018, "How Many Random Seeds?"):
#   Welch's t-test on the per-seed scores at level ``alpha``; the seeds each side needs for a
#   stated power against a stated difference, from the power of Welch's test (the noncentral t
#   distribution, Welch-Satterthwaite degrees of freedom) with the sides' standard deviations.


Scores = Mapping[str, np.ndarray]


def _as_scores(scores: Mapping[str, Sequence[float] | np.ndarray]) -> dict[str, np.ndarray]:
    out = {env: np.asarray(v, dtype=float).ravel() for env, v in scores.items()}
    empty = [env for env, v in out.items() if v.size == 0]
    if not out or empty:
        raise ValueError(f"no scores for {empty or 'any env'}: every env needs one seed or more.")
    return out


def trimmed_mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """The interquartile mean along ``axis`` (``scipy.stats.trim_mean(x, 0.25)``: ``int(n / 4)``
    values cut from each end)."""
    from scipy import stats as sps  # (imported when used: scipy sets warning filters)

    return np.asarray(sps.trim_mean(values, 0.25, axis=axis))


def aggregate_iqm(scores: Mapping[str, Sequence[float] | np.ndarray]) -> float:
    """The IQM of every score of every env together (rliable's ``aggregate_iqm``)."""
    return float(trimmed_mean(np.concatenate(list(_as_scores(scores).values()))))


def aggregate_mean(scores: Mapping[str, Sequence[float] | np.ndarray]) -> float:
    """The mean of every score of every env together (rliable's ``aggregate_mean``)."""
    return float(np.mean(np.concatenate(list(_as_scores(scores).values()))))


def probability_of_improvement(
    x: Mapping[str, Sequence[float] | np.ndarray], y: Mapping[str, Sequence[float] | np.ndarray]
) -> float:
    """P(X > Y): per env, the chance that a seed of ``x`` scores above a seed of ``y`` (ties
    count half), averaged over the envs (rliable's ``probability_of_improvement``)."""
    xs, ys = _as_scores(x), _as_scores(y)
    _same_envs(xs, ys)
    return float(np.mean([_u_fraction(xs[env][None], ys[env][None])[0] for env in xs]))


def _same_envs(xs: Mapping[str, np.ndarray], ys: Mapping[str, np.ndarray]) -> None:
    if set(xs) != set(ys):
        raise ValueError(
            f"the agents were run on different envs ({sorted(xs)} against {sorted(ys)}): "
            "compare them on the envs both have."
        )


def _u_fraction(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row by row (resamples ``[R, n]`` and ``[R, m]``): Mann-Whitney U / (n m)."""
    greater = (x[:, :, None] > y[:, None, :]).sum(axis=(1, 2))
    ties = (x[:, :, None] == y[:, None, :]).sum(axis=(1, 2))
    return (greater + 0.5 * ties) / (x.shape[1] * y.shape[1])


def _resample(
    scores: Mapping[str, np.ndarray], reps: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """``reps`` stratified resamples: per env, ``[reps, n_env]``."""
    return {env: v[rng.integers(0, v.size, size=(reps, v.size))] for env, v in scores.items()}


def _interval(estimates: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence} is invalid: it must be in (0, 1).")
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(estimates, [tail, 1.0 - tail])
    return float(low), float(high)


def aggregate_ci(
    scores: Mapping[str, Sequence[float] | np.ndarray],
    statistic: str = "iqm",
    *,
    confidence: float = 0.95,
    reps: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """The stratified-bootstrap percentile interval of the IQM (``statistic="iqm"``) or mean
    (``"mean"``) of all scores."""
    resampled = _resample(_as_scores(scores), reps, np.random.default_rng(seed))
    together = np.concatenate(list(resampled.values()), axis=1)
    if statistic == "iqm":
        return _interval(trimmed_mean(together, axis=1), confidence)
    if statistic == "mean":
        return _interval(together.mean(axis=1), confidence)
    raise ValueError(f"statistic={statistic!r} is invalid: use 'iqm' or 'mean'.")


def improvement_ci(
    x: Mapping[str, Sequence[float] | np.ndarray],
    y: Mapping[str, Sequence[float] | np.ndarray],
    *,
    confidence: float = 0.95,
    reps: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """The stratified-bootstrap percentile interval of P(X > Y), ``x`` and ``y`` resampled
    independently (rliable's ``StratifiedIndependentBootstrap``)."""
    xs, ys = _as_scores(x), _as_scores(y)
    _same_envs(xs, ys)
    rng = np.random.default_rng(seed)
    rx, ry = _resample(xs, reps, rng), _resample(ys, reps, rng)
    per_env = np.stack([_u_fraction(rx[env], ry[env]) for env in xs])
    return _interval(per_env.mean(axis=0), confidence)


def performance_profile(
    scores: Mapping[str, Sequence[float] | np.ndarray], thresholds: np.ndarray
) -> np.ndarray:
    """For each threshold, the fraction of seeds scoring above it, averaged over envs."""
    values = _as_scores(scores)
    return np.mean([(v[None, :] > thresholds[:, None]).mean(axis=1) for v in values.values()], 0)


def performance_profile_band(
    scores: Mapping[str, Sequence[float] | np.ndarray],
    thresholds: np.ndarray,
    *,
    confidence: float = 0.95,
    reps: int = 1000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The profile's pointwise stratified-bootstrap interval: ``(low, high)`` per threshold."""
    resampled = _resample(_as_scores(scores), reps, np.random.default_rng(seed))
    fractions = np.mean(
        [(v[:, None, :] > thresholds[None, :, None]).mean(axis=2) for v in resampled.values()],
        axis=0,
    )  # [reps, thresholds]
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(fractions, [tail, 1.0 - tail], axis=0)
    return low, high


# ------------------------------------------------------------------ decision and seed budget


def welch_test(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """The two-sided p-value of Welch's t-test of equal means (nan with fewer than 2 seeds a
    side; 1 where both sides are constant and equal, 0 where constant and different)."""
    from scipy import stats as sps  # (imported when used: scipy sets warning filters)

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.size < 2 or b.size < 2:
        return math.nan
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0
    return float(sps.ttest_ind(a, b, equal_var=False).pvalue)


def welch_power(n: int, sd_x: float, sd_y: float, difference: float, alpha: float) -> float:
    """The power of a two-sided Welch test at level ``alpha`` with ``n`` seeds a side, when the
    means differ by ``difference`` and the sides' standard deviations are ``sd_x``, ``sd_y``."""
    from scipy import stats as sps  # (imported when used: scipy sets warning filters)

    if n < 2:
        return 0.0
    var = (sd_x**2 + sd_y**2) / n
    if var == 0.0:
        return 1.0 if difference != 0 else 0.0
    df = var**2 / ((sd_x**4 + sd_y**4) / (n**2 * (n - 1)))
    critical = sps.t.ppf(1.0 - alpha / 2.0, df)
    shift = abs(difference) / math.sqrt(var)
    exact = float(sps.nct.sf(critical, df, shift) + sps.nct.cdf(-critical, df, shift))
    if math.isfinite(exact):
        return exact
    # scipy's noncentral t gives nan far out (huge df or shift), where it is the normal
    return float(sps.norm.sf(critical - shift) + sps.norm.cdf(-critical - shift))


def seeds_needed(
    sd_x: float,
    sd_y: float,
    difference: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    limit: int = 100_000,
) -> int | None:
    """The fewest seeds a side (equal on both sides, at least 2) for which Welch's test at
    level ``alpha`` detects a difference of means ``difference`` with probability ``power``;
    None if ``difference`` is 0 or more than ``limit`` seeds would be needed."""
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha={alpha}, power={power}: both must be in (0, 1).")
    if difference == 0 or not math.isfinite(difference):
        return None
    high = 2  # power grows with n: double until it is reached, then bisect
    while welch_power(high, sd_x, sd_y, difference, alpha) < power:
        if high >= limit:
            return None
        high = min(2 * high, limit)
    low = max(2, high // 2)
    while low < high:
        middle = (low + high) // 2
        if welch_power(middle, sd_x, sd_y, difference, alpha) >= power:
            high = middle
        else:
            low = middle + 1
    return low


def iqm_curve(
    curves: Sequence[tuple[Sequence[float], Sequence[float]]],
    *,
    points: int = 100,
    confidence: float = 0.95,
    reps: int = 1000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The aggregate learning curve of several seeds: ``(steps, iqm, low, high)``, the IQM over
    seeds at each of ``points`` env steps and its bootstrap interval (seeds resampled).

    The steps run from the last seed's first point (every seed has a value from there on) to
    the latest point of any; a seed is interpolated linearly between its points and keeps its
    last value after its end (a run stopped once solved). All empty without a usable curve.
    """
    usable = []
    for steps, values in curves:
        s, v = _clean(steps, values)  # sorted by step, one value per step
        if np.isfinite(v).any():
            usable.append((s[np.isfinite(v)], v[np.isfinite(v)]))
    if not usable:
        empty = np.zeros(0)
        return empty, empty, empty, empty
    start = max(float(s[0]) for s, _ in usable)
    stop = max(float(s[-1]) for s, _ in usable)
    grid = np.linspace(start, stop, points) if stop > start else np.array([start])
    matrix = np.stack([np.interp(grid, s, v) for s, v in usable])  # [seeds, points]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(usable), size=(reps, len(usable)))
    estimates = trimmed_mean(matrix[picks], axis=1)  # [reps, points]
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(estimates, [tail, 1.0 - tail], axis=0)
    return grid, trimmed_mean(matrix, axis=0), low, high
