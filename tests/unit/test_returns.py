"""Exact math: returns, baselines, normalisation, tile coding."""

from __future__ import annotations

import numpy as np
import pytest

from twrl_exp.model.tiles import tile_indices
from twrl_exp.returns import discounted_returns, normalize, update_time_baseline


def test_discounted_returns_match_hand_computation() -> None:
    rewards = np.array([[1.0], [2.0], [3.0]])
    end = np.array([[False], [False], [True]])
    got = discounted_returns(rewards, end, gamma=0.9)
    expected = [1 + 0.9 * 2 + 0.81 * 3, 2 + 0.9 * 3, 3.0]
    np.testing.assert_allclose(got[:, 0], expected)


def test_returns_restart_at_each_episode_end_and_columns_are_independent() -> None:
    rewards = np.array([[1.0, 5.0], [1.0, 5.0], [1.0, 5.0], [1.0, 5.0]])
    end = np.array([[False, True], [True, False], [False, False], [True, True]])
    got = discounted_returns(rewards, end, gamma=0.5)
    np.testing.assert_allclose(got[:, 0], [1.5, 1.0, 1.5, 1.0])
    np.testing.assert_allclose(got[:, 1], [5.0, 5 + 2.5 + 1.25, 5 + 2.5, 5.0])


def test_truncation_bootstraps_from_the_final_value_and_termination_does_not() -> None:
    rewards = np.array([[1.0, 1.0], [1.0, 1.0]])
    end = np.array([[False, False], [True, True]])
    bootstrap = np.array([[0.0, 0.0], [10.0, 0.0]])  # env 0 truncated (V=10), env 1 terminated
    got = discounted_returns(rewards, end, gamma=0.5, bootstrap=bootstrap)
    np.testing.assert_allclose(got[:, 0], [1 + 0.5 * (1 + 0.5 * 10), 1 + 0.5 * 10])
    np.testing.assert_allclose(got[:, 1], [1.5, 1.0])


def test_gamma_one_sums_rewards() -> None:
    rewards = np.arange(6, dtype=float).reshape(6, 1)
    end = np.zeros((6, 1), bool)
    end[-1] = True
    assert discounted_returns(rewards, end, 1.0)[0, 0] == pytest.approx(15.0)


@pytest.mark.parametrize(
    ("steps", "envs", "p_end"),
    [(0, 3, 0.1), (1, 2, 1.0), (7, 2, 0.3), (50, 5, 0.05), (401, 8, 0.01), (1000, 3, 0.0)],
)
def test_blocked_scan_equals_the_step_by_step_recurrence(steps, envs, p_end) -> None:
    rng = np.random.default_rng(steps)
    rewards = rng.normal(size=(steps, envs))
    end = rng.random((steps, envs)) < p_end
    bootstrap = rng.normal(size=(steps, envs))
    for gamma in (0.0, 0.5, 0.99, 1.0):
        for boot in (None, bootstrap):
            expected, tail = np.zeros((steps, envs)), np.zeros(envs)
            for t in reversed(range(steps)):
                restart = 0.0 if boot is None else boot[t]
                tail = rewards[t] + gamma * np.where(end[t], restart, tail)
                expected[t] = tail
            got = discounted_returns(rewards, end, gamma, boot)
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_time_baseline_starts_at_batch_means_then_moves_by_decay() -> None:
    b, seen = update_time_baseline(
        np.zeros(0), np.zeros(0, bool), np.array([0, 0, 1]), np.array([2.0, 4.0, 6.0]), decay=0.75
    )
    np.testing.assert_allclose(b, [3.0, 6.0])
    b, seen = update_time_baseline(b, seen, np.array([0, 2]), np.array([7.0, 1.0]), decay=0.75)
    np.testing.assert_allclose(b, [0.75 * 3 + 0.25 * 7, 6.0, 1.0])
    assert seen.tolist() == [True, True, True]


def test_normalize_gives_zero_mean_unit_std() -> None:
    x = normalize(np.array([1.0, 2.0, 3.0, 10.0]))
    assert x.mean() == pytest.approx(0.0, abs=1e-12)
    assert x.std() == pytest.approx(1.0, rel=1e-6)
    assert normalize(np.array([5.0])).tolist() == [0.0]


class TestTileCoding:
    def test_one_active_tile_per_tiling_within_range(self) -> None:
        rng = np.random.default_rng(0)
        obs = rng.random((500, 3))
        idx = tile_indices(obs, num_tilings=8, tiles_per_dim=4, memory_size=None)
        assert idx.shape == (500, 8)
        per_tiling = 5**3
        assert (idx >= 0).all()
        assert (idx < 8 * per_tiling).all()
        for k in range(8):  # tiling k owns a disjoint block of indices
            assert ((idx[:, k] >= k * per_tiling) & (idx[:, k] < (k + 1) * per_tiling)).all()

    def test_deterministic(self) -> None:
        obs = np.random.default_rng(1).random((50, 2))
        np.testing.assert_array_equal(
            tile_indices(obs, 8, 8, None), tile_indices(obs.copy(), 8, 8, None)
        )

    def test_local_generalisation(self) -> None:
        """Nearby points share most tiles; points far apart share none."""
        a = np.array([[0.50, 0.50]])
        near = np.array([[0.51, 0.50]])
        far = np.array([[0.10, 0.90]])
        shared_near = len(
            np.intersect1d(tile_indices(a, 8, 8, None), tile_indices(near, 8, 8, None))
        )
        shared_far = len(np.intersect1d(tile_indices(a, 8, 8, None), tile_indices(far, 8, 8, None)))
        assert shared_near >= 6
        assert shared_far == 0

    def test_offsets_make_tilings_differ(self) -> None:
        """A move smaller than one tile changes the active tile in some tilings only."""
        x = np.linspace(0, 1, 400, endpoint=False)[:, None]
        idx = tile_indices(x, num_tilings=4, tiles_per_dim=4, memory_size=None)
        changes = (np.diff(idx, axis=0) != 0).sum(axis=0)
        assert (changes >= 3).all()
        assert len({tuple(np.flatnonzero(np.diff(idx[:, k]))) for k in range(4)}) == 4

    def test_hashing_stays_in_memory_and_is_deterministic(self) -> None:
        obs = np.random.default_rng(2).random((1000, 6))
        idx = tile_indices(obs, 8, 10, memory_size=4096)
        assert idx.min() >= 0
        assert idx.max() < 4096
        np.testing.assert_array_equal(idx, tile_indices(obs, 8, 10, memory_size=4096))
        assert len(np.unique(idx)) > 2000  # spread over the memory, not collapsed

    def test_bounds_are_clipped(self) -> None:
        inside = tile_indices(np.array([[0.0], [0.999999]]), 2, 4, None)
        outside = tile_indices(np.array([[-3.0], [7.0]]), 2, 4, None)
        np.testing.assert_array_equal(inside, outside)


class TestGae:
    """Generalized advantage estimation against hand-computed cases."""

    def setup_method(self) -> None:
        rng = np.random.default_rng(0)
        self.rewards = rng.normal(size=(6, 2))
        self.values = rng.normal(size=(6, 2))
        self.next_values = np.vstack([self.values[1:], rng.normal(size=(1, 2))])
        self.ends = np.zeros((6, 2), bool)

    def test_lambda_one_is_monte_carlo_minus_v(self) -> None:
        from twrl_exp.returns import gae

        terminated = self.ends.copy()
        terminated[-1] = True  # complete episodes: no bootstrap at the end
        adv, ret = gae(
            self.rewards, self.values, self.next_values, terminated, terminated, 0.9, 1.0
        )
        mc = discounted_returns(self.rewards, terminated, 0.9)
        np.testing.assert_allclose(adv, mc - self.values)
        np.testing.assert_allclose(ret, mc)

    def test_lambda_zero_is_the_td_error(self) -> None:
        from twrl_exp.returns import gae

        adv, _ = gae(self.rewards, self.values, self.next_values, self.ends, self.ends, 0.9, 0.0)
        np.testing.assert_allclose(adv, self.rewards + 0.9 * self.next_values - self.values)

    def test_truncation_bootstraps_from_the_final_observation_and_termination_does_not(
        self,
    ) -> None:
        from twrl_exp.returns import gae

        rewards = np.array([[1.0, 1.0], [1.0, 1.0]])
        values = np.zeros((2, 2))
        # Env 0 is truncated after step 0 (final observation worth 10), env 1 terminates there;
        # the row after each is a new episode.
        next_values = np.array([[10.0, 10.0], [0.0, 0.0]])
        terminated = np.array([[False, True], [False, False]])
        ends = np.array([[True, True], [True, True]])
        adv, _ = gae(rewards, values, next_values, terminated, ends, 0.5, 0.95)
        assert adv[0, 0] == pytest.approx(1.0 + 0.5 * 10.0)  # bootstrapped
        assert adv[0, 1] == pytest.approx(1.0)  # not bootstrapped
        assert adv[1, 0] == pytest.approx(1.0)  # nothing flows back across the episode end

    def test_matches_a_direct_sum_of_discounted_td_errors(self) -> None:
        from twrl_exp.returns import gae

        gamma, lam = 0.97, 0.8
        adv, _ = gae(self.rewards, self.values, self.next_values, self.ends, self.ends, gamma, lam)
        delta = self.rewards + gamma * self.next_values - self.values
        for t in range(6):
            expected = sum((gamma * lam) ** k * delta[t + k] for k in range(6 - t))
            np.testing.assert_allclose(adv[t], expected)


def test_n_step_return_discounts_and_cuts_at_termination() -> None:
    from twrl_exp.returns import n_step_return

    assert n_step_return(np.array([1.0, 2.0, 4.0]), False, 0.5) == (4.0 * 0.25 + 1 + 1.0, 0.125)
    assert n_step_return(np.array([1.0, 2.0]), True, 0.5) == (2.0, 0.0)
