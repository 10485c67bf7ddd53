"""IQM, bootstrap intervals and curve aggregation against hand-computed values."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from twrl_exp import stats
from twrl_exp.stats import aggregate_curves, bootstrap_ci, iqm


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        ([7.0], 7.0),  # n < 4 cuts nothing: the plain mean
        ([1, 2], 1.5),
        ([3, 1, 2], 2.0),
        ([1, 2, 3, 100], 2.5),  # int(0.25 * 4) = 1 cut from each end: mean(2, 3)
        ([100, 1, 3, 2, -50], 2.0),  # n = 5 cuts 1 each end: mean(1, 2, 3)
        ([0, 1, 2, 3, 4, 5, 6, 1000], 3.5),  # n = 8 cuts 2: mean(2, 3, 4, 5)
        ([5, 4, 3, 2, 1, 0, -1, -2, -3, -4], 0.5),  # n = 10 cuts 2: mean(-2 .. 3)
    ],
)
def test_iqm_is_the_mean_of_the_middle_half(x: list[float], expected: float) -> None:
    assert iqm(x) == pytest.approx(expected)


def test_iqm_matches_scipy_trim_mean() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for n in range(1, 30):
        x = rng.standard_cauchy(n)
        assert iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))


def test_empty_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        iqm([])
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([])


def test_bootstrap_of_a_constant_is_a_point() -> None:
    assert bootstrap_ci([3.0, 3.0, 3.0, 3.0]) == (3.0, 3.0)
    assert bootstrap_ci([2.5]) == (2.5, 2.5)


def test_bootstrap_of_three_values_spans_min_to_max() -> None:
    # Resampling 3 values, all-min (or all-max) has probability 1/27 > 2.5%, so the 95% percentile
    # interval of the mean (= IQM for n = 3) is exactly [min, max].
    assert bootstrap_ci([10.0, 20.0, 60.0]) == (10.0, 60.0)
    assert bootstrap_ci([10.0, 20.0, 60.0], np.mean) == (10.0, 60.0)


def test_bootstrap_is_deterministic_given_a_seed() -> None:
    x = np.random.default_rng(0).normal(size=12)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    assert bootstrap_ci(x, seed=3) != bootstrap_ci(x, seed=4)


def test_bootstrap_interval_brackets_the_estimate_and_shrinks_with_data() -> None:
    rng = np.random.default_rng(2)
    small, large = rng.normal(10, 1, size=10), rng.normal(10, 1, size=400)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large, n_resamples=500)
    assert lo_s <= iqm(small) <= hi_s
    assert lo_l <= iqm(large) <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 2
    assert 9.5 < lo_l < 10 < hi_l < 10.5


def test_confidence_widens_the_interval() -> None:
    x = np.random.default_rng(5).normal(size=20)
    lo90, hi90 = bootstrap_ci(x, np.mean, confidence=0.9)
    lo99, hi99 = bootstrap_ci(x, np.mean, confidence=0.99)
    assert lo99 < lo90 < hi90 < hi99


@pytest.mark.parametrize("kwargs", [{"confidence": 1.0}, {"confidence": 0.0}, {"n_resamples": 0}])
def test_bad_bootstrap_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="invalid"):
        bootstrap_ci([1.0, 2.0], **kwargs)


def test_curves_are_averaged_on_one_grid_and_early_stops_hold_their_last_value() -> None:
    a = ([0, 100, 200], [0.0, 10.0, 20.0])
    b = ([0, 100], [2.0, 4.0])  # stopped at step 100: holds 4 afterwards
    grid, mean, low, high = aggregate_curves([a, b], points=5)
    assert grid.tolist() == [0, 50, 100, 150, 200]
    assert mean.tolist() == [1.0, 4.0, 7.0, 9.5, 12.0]
    assert low.tolist() == [0.0, 3.0, 4.0, 4.0, 4.0]
    assert high.tolist() == [2.0, 5.0, 10.0, 15.0, 20.0]


def test_a_curve_takes_part_only_once_it_has_started_and_duplicate_steps_keep_the_last() -> None:
    a = ([0, 10], [0.0, 10.0])
    b = ([10, 5, 5], [30.0, 1.0, 20.0])  # unsorted, two values at step 5: the later one counts
    grid, mean, low, high = aggregate_curves([a, b], points=3)
    assert grid.tolist() == [0, 5, 10]
    assert mean.tolist() == [0.0, 12.5, 20.0]
    assert low.tolist() == [0.0, 5.0, 10.0]
    assert high.tolist() == [0.0, 20.0, 30.0]


def test_no_points_give_empty_curves() -> None:
    assert all(part.size == 0 for part in aggregate_curves([([], [])]))
    grid, mean, _, _ = aggregate_curves([([7], [3.0])])
    assert grid.tolist() == [7.0]
    assert mean.tolist() == [3.0]


def test_docstring_examples() -> None:
    result = doctest.testmod(stats)
    assert result.attempted >= 5
    assert result.failed == 0
