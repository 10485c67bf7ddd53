"""The comparison statistics against rliable's own figures on fixed data, and the seed budget's
calibration by simulation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from twrl_exp import stats

REFERENCE = json.loads((Path(__file__).parents[1] / "data" / "rliable_reference.json").read_text())


def scores(name: str) -> dict[str, np.ndarray]:
    """rliable's runs x tasks matrix as {env: one score per seed}."""
    matrix = np.asarray(REFERENCE["scores"][name])
    return {f"env{t}": matrix[:, t] for t in range(matrix.shape[1])}


def close_interval(ours: tuple[float, float], theirs: list[float]) -> None:
    """Two bootstrap intervals of one statistic (different resamples): equal within a few
    percent of the interval's width."""
    width = theirs[1] - theirs[0]
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine == pytest.approx(reference, abs=0.04 * width + 1e-3), (ours, theirs)


@pytest.mark.parametrize("name", ["a", "b", "c"])
def test_iqm_and_mean_with_intervals_match_rliable(name: str) -> None:
    for statistic, aggregate in (("iqm", stats.aggregate_iqm), ("mean", stats.aggregate_mean)):
        point, low, high = REFERENCE[statistic][name]
        assert aggregate(scores(name)) == pytest.approx(point, rel=1e-12)
        close_interval(stats.aggregate_ci(scores(name), statistic, reps=20000), [low, high])


@pytest.mark.parametrize("pair", ["a,b", "a,c"])
def test_probability_of_improvement_matches_rliable(pair: str) -> None:
    x, y = pair.split(",")
    point, low, high = REFERENCE["probability_of_improvement"][pair]
    assert stats.probability_of_improvement(scores(x), scores(y)) == pytest.approx(point, rel=1e-12)
    close_interval(stats.improvement_ci(scores(x), scores(y), reps=20000), [low, high])


@pytest.mark.parametrize("name", ["a", "b", "c"])
def test_performance_profiles_match_rliable(name: str) -> None:
    thresholds = np.asarray(REFERENCE["thresholds"])
    reference = REFERENCE["profile"][name]
    np.testing.assert_allclose(
        stats.performance_profile(scores(name), thresholds), reference["point"], rtol=1e-12
    )
    low, high = stats.performance_profile_band(scores(name), thresholds, reps=20000)
    np.testing.assert_allclose(low, reference["low"], atol=0.04)
    np.testing.assert_allclose(high, reference["high"], atol=0.04)


def test_the_iqm_shrugs_off_an_outlier_the_mean_does_not() -> None:
    c = scores("c")
    assert stats.aggregate_mean(c) - stats.aggregate_iqm(c) > 0.15  # the 7.5 seed


def test_probability_of_improvement_counts_ties_half_and_is_symmetric() -> None:
    x, y = {"e": [1.0, 2.0, 3.0]}, {"e": [2.0, 2.0, 4.0]}
    # pairs (x > y): 3>2, 3>2 -> 2; ties: 2=2, 2=2 -> 1; of 9
    assert stats.probability_of_improvement(x, y) == pytest.approx(3 / 9)
    assert stats.probability_of_improvement(x, y) + stats.probability_of_improvement(
        y, x
    ) == pytest.approx(1.0)
    assert stats.probability_of_improvement(x, x) == 0.5


def test_agents_on_different_envs_are_refused_in_one_sentence() -> None:
    with pytest.raises(ValueError, match=r"different envs \(\['a'\] against \['b'\]\)"):
        stats.probability_of_improvement({"a": [1.0]}, {"b": [1.0]})


def test_welch_test_edge_cases() -> None:
    assert math.isnan(stats.welch_test([1.0], [2.0, 3.0]))  # one seed: no test
    assert stats.welch_test([5.0, 5.0], [5.0, 5.0]) == 1.0
    assert stats.welch_test([5.0, 5.0], [4.0, 4.0]) == 0.0
    assert 0.0 < stats.welch_test([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]) < 1.0


@pytest.mark.parametrize(
    ("sd_x", "sd_y", "difference"),
    [(1.0, 1.0, 1.0), (1.0, 1.0, 0.5), (30.0, 80.0, 60.0), (2.0, 0.5, 1.2)],
)
def test_the_recommended_seeds_reach_the_stated_power(sd_x, sd_y, difference) -> None:
    """Calibration: with normal scores of a known difference, N seeds a side (the recommended
    number) make Welch's test at 5% reject in 80% of 4,000 simulated comparisons, within a few
    points; and N is the fewest that do (the analytic power at N - 1 is below 80%)."""
    n = stats.seeds_needed(sd_x, sd_y, difference, alpha=0.05, power=0.8)
    assert n is not None
    rng = np.random.default_rng(0)
    trials = 4000
    x = rng.normal(difference, sd_x, size=(trials, n))
    y = rng.normal(0.0, sd_y, size=(trials, n))
    from scipy import stats as sps

    rejected = sps.ttest_ind(x, y, axis=1, equal_var=False).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.03), (n, rejected.mean())
    assert (
        stats.welch_power(n - 1, sd_x, sd_y, difference, 0.05)
        < 0.8
        <= stats.welch_power(n, sd_x, sd_y, difference, 0.05)
    )


def test_no_difference_needs_no_seed_count_and_a_tiny_one_too_many() -> None:
    assert stats.seeds_needed(1.0, 1.0, 0.0) is None
    assert stats.seeds_needed(1.0, 1.0, 1e-6, limit=1000) is None
    assert stats.seeds_needed(0.0, 0.0, 3.0) == 2  # no spread: two seeds a side tell


def test_looking_again_after_each_round_keeps_the_false_decisions_at_alpha() -> None:
    """--until-decided's procedure on two equal agents (normal scores): test at alpha / looks
    after 3, 6, 9 and 12 seeds a side, stop at the first rejection. It decides (wrongly) in at
    most alpha of 4,000 simulated comparisons; testing at alpha each time would not."""
    rng = np.random.default_rng(1)
    trials, rounds, alpha = 4000, [3, 6, 9, 12], 0.05
    x = rng.normal(size=(trials, 12))
    y = rng.normal(size=(trials, 12))
    from scipy import stats as sps

    p = np.stack(
        [sps.ttest_ind(x[:, :n], y[:, :n], axis=1, equal_var=False).pvalue for n in rounds], 1
    )
    corrected = (p < alpha / len(rounds)).any(axis=1).mean()
    naive = (p < alpha).any(axis=1).mean()
    assert corrected <= alpha + 0.01
    assert naive > alpha + 0.02  # the reason for the correction


def test_an_iqm_curve_aligns_seeds_on_env_steps_with_a_band() -> None:
    curves = [([0, 10, 20], [0.0, 10.0, 20.0]), ([5, 15], [1.0, 3.0]), ([0, 20], [0.0, 40.0])]
    grid, iqm, low, high = stats.iqm_curve(curves, points=4, reps=200)
    assert grid.tolist() == [5.0, 10.0, 15.0, 20.0]  # from the last seed's first point
    # at step 20: seeds at 20, 3 (kept after its end) and 40: 3 values -> their mean
    assert iqm[-1] == pytest.approx((20 + 3 + 40) / 3)
    assert np.all(low <= iqm + 1e-9)
    assert np.all(iqm <= high + 1e-9)
