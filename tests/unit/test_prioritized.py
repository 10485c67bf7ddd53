"""Prioritised replay (Schaul et al. 2016): the sum tree's exact maths, proportional stratified
sampling, importance weights, beta annealing, checkpoints, and the feedback seam that feeds it
the learner's TD errors. In-process only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from twrl_exp import serialization
from twrl_exp.agent import Agent
from twrl_exp.build import build, make_runner
from twrl_exp.cli_errors import describe
from twrl_exp.config import make
from twrl_exp.errors import ConfigError
from twrl_exp.protocols import Clock, FeedbackLearner, FeedbackStorage, Step, Update
from twrl_exp.storage import PrioritizedReplayStorage, ReplayBatch, ReplayStorage
from twrl_exp.storage.prioritized import annealed_beta, importance_weights
from twrl_exp.storage.sum_tree import SegmentTree

# ---------------------------------------------------------------------------- the sum tree


@pytest.mark.parametrize("capacity", [1, 2, 5, 8, 13])
def test_sum_and_min_trees_hold_the_total_and_minimum_after_any_updates(capacity: int) -> None:
    rng = np.random.default_rng(0)
    sums, minima = SegmentTree(capacity, minimum=False), SegmentTree(capacity, minimum=True)
    leaves = np.zeros(capacity)
    for _ in range(50):
        index = rng.integers(0, capacity, rng.integers(1, 6))  # repeats included
        values = rng.random(len(index))
        sums.set(index, values)
        minima.set(index, values)
        leaves[index] = values  # numpy's rule for repeats: the last one wins
        assert sums.root() == pytest.approx(leaves.sum(), rel=1e-12)
        written = np.unique(np.concatenate([np.flatnonzero(leaves), index]))
        assert minima.root() == leaves[written].min()
        np.testing.assert_array_equal(sums[np.arange(capacity)], leaves)
    rebuilt = SegmentTree(capacity, minimum=False)
    rebuilt.reset(leaves)
    np.testing.assert_array_equal(rebuilt.nodes, sums.nodes)


def test_the_sums_do_not_drift_over_many_updates() -> None:
    """Ancestors are recomputed from their children, never adjusted by differences."""
    tree = SegmentTree(4, minimum=False)
    rng = np.random.default_rng(1)
    for _ in range(10_000):
        tree.set(rng.integers(0, 4, 1), rng.random(1) * 1e6)
    tree.set(np.arange(4), np.array([0.1, 0.2, 0.3, 0.4]))
    assert tree.root() == (0.1 + 0.2) + (0.3 + 0.4)


def test_prefix_search_finds_the_leaf_whose_interval_holds_the_mass() -> None:
    """Leaf ``i`` owns ``[S_{i-1}, S_i)``; an empty leaf owns nothing; past the total (rounding)
    the last leaf with a positive value answers."""
    tree = SegmentTree(6, minimum=False)
    tree.set(np.arange(6), np.array([1.0, 0.0, 2.0, 0.5, 0.0, 0.0]))  # S = 1, 1, 3, 3.5, ...
    masses = np.array([0.0, 0.5, np.nextafter(1.0, 0), 1.0, 2.9, 3.0, 3.49, 3.5, 4.0, 1e9])
    expected = [0, 0, 0, 2, 2, 3, 3, 3, 3, 3]
    assert tree.find_prefix(masses).tolist() == expected
    assert tree.find_prefix(masses.reshape(2, 5)).tolist() == [expected[:5], expected[5:]]


# ---------------------------------------------------------------------------- the buffer


def per(capacity: int = 8, batch_size: int = 4, **kwargs) -> PrioritizedReplayStorage:
    settings = {
        "num_envs": 1,
        "feature_dim": 1,
        "action_shape": (),
        "action_dtype": np.dtype(np.int64),
        "buffer_size": capacity,
        "batch_size": batch_size,
        "learning_starts": 0,
        "train_freq": 1,
        "gradient_steps": 1,
        "gamma": 0.5,
        "n_step": 1,
        "seed": 0,
        "priority_alpha": 0.6,
        "priority_beta": 0.4,
        "priority_eps": 1e-6,
        "total_env_steps": 1000,
        **kwargs,
    }
    return PrioritizedReplayStorage(**settings)


def fill(buffer: ReplayStorage, count: int) -> None:
    """``count`` one-env transitions whose observation is their number."""
    for k in range(count):
        buffer.add(
            Step(
                features=np.array([[k]], np.float32),
                actions=np.array([0]),
                reward=np.array([1.0]),
                terminated=np.array([False]),
                truncated=np.array([False]),
                valid=np.array([True]),
                next_features=np.array([[k + 1]], np.float32),
                next_outputs=np.zeros((1, 2)),
                next_actions=np.zeros(1, np.int64),
            )
        )


def tell(buffer: PrioritizedReplayStorage, index: list[int], errors: list[float]) -> None:
    batch = buffer.sample()
    batch = ReplayBatch(**{**vars(batch), "index": np.array([index])})
    buffer.feedback(batch, np.array([errors]))


def test_priorities_are_errors_plus_eps_to_the_alpha_and_new_ones_get_the_largest() -> None:
    buffer = per(priority_alpha=0.5, priority_eps=0.25)
    fill(buffer, 4)
    np.testing.assert_array_equal(buffer.sums[np.arange(4)], np.ones(4))  # max_error starts at 1
    tell(buffer, [0, 1, 2, 3], [0.0, -2.0, 3.75, 0.75])  # the sign does not matter
    np.testing.assert_allclose(buffer.sums[np.arange(4)], [0.5, 1.5, 2.0, 1.0])
    assert buffer.max_error == 4.0
    fill(buffer, 1)
    assert buffer.sums[np.array([4])].tolist() == [2.0]  # (3.75 + 0.25)^0.5, the largest
    assert buffer.sums.root() == pytest.approx(7.0)
    assert buffer.minima.root() == 0.5


def test_sampling_is_proportional_to_priority() -> None:
    buffer = per(capacity=5, batch_size=8, priority_alpha=1.0)
    fill(buffer, 5)
    errors = [1.0, 2.0, 3.0, 0.5, 3.5]
    tell(buffer, [0, 1, 2, 3, 4], errors)
    counts = np.bincount(buffer.sample(20_000).index.ravel(), minlength=5)
    expected = np.array(errors) / sum(errors)
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.005)


def test_a_minibatch_draws_one_transition_from_each_segment() -> None:
    """Equal priorities and as many segments as transitions: every transition exactly once."""
    buffer = per(capacity=8, batch_size=8)
    fill(buffer, 8)
    for row in buffer.sample(50).index:
        assert sorted(row.tolist()) == list(range(8))


def test_importance_weights_are_n_p_to_the_minus_beta_over_their_largest() -> None:
    buffer = per(capacity=6, batch_size=6, priority_alpha=0.7)
    fill(buffer, 6)
    tell(buffer, list(range(6)), [0.1, 2.0, 0.3, 5.0, 1.0, 0.02])
    buffer.beta = 0.55
    batch = buffer.sample(3)
    p = buffer.sums[np.arange(6)]
    probability = p / p.sum()
    weight = (6 * probability) ** -0.55
    expected = weight[batch.index] / weight.max()
    assert batch.weights is not None
    np.testing.assert_allclose(batch.weights, expected, rtol=1e-6)
    assert importance_weights(np.array([2.0]), 2.0, 0.3).tolist() == [1.0]


def test_alpha_zero_and_beta_one_is_uniform_replay() -> None:
    buffer = per(capacity=6, batch_size=6, priority_alpha=0.0, priority_beta=1.0)
    fill(buffer, 6)
    tell(buffer, list(range(6)), [0.1, 2.0, 0.3, 5.0, 1.0, 0.02])
    batch = buffer.sample(2)
    assert batch.weights is not None
    np.testing.assert_array_equal(batch.weights, np.ones((2, 6), np.float32))


@pytest.mark.parametrize(("steps", "beta"), [(1, 0.4006), (250, 0.55), (1000, 1.0), (5000, 1.0)])
def test_beta_anneals_from_its_start_to_one_over_the_step_budget(steps: int, beta: float) -> None:
    """``beta = beta_0 + (1 - beta_0) * env_steps / max_env_steps``, at most 1."""
    assert annealed_beta(0.4, 0.0) == 0.4
    buffer = per(total_env_steps=1000, priority_alpha=1.0)
    fill(buffer, 8)
    tell(buffer, list(range(4)), [1.0, 2.0, 4.0, 8.0])
    (batch,) = buffer.batches(Clock(env_steps=steps))
    assert buffer.beta == pytest.approx(beta)
    p = buffer.sums[batch.index]
    np.testing.assert_allclose(batch.weights, (p / buffer.minima.root()) ** -beta, rtol=1e-6)


def test_annealing_needs_a_budget_and_options_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"train\.max_env_steps"):
        per(total_env_steps=None)
    per(total_env_steps=None, priority_beta=1.0)  # nothing to anneal
    with pytest.raises(ConfigError, match="priority_alpha"):
        per(priority_alpha=1.5)
    with pytest.raises(ConfigError, match="priority_eps"):
        per(priority_eps=0.0)


def test_a_checkpoint_keeps_the_priorities_and_sampling_continues_identically(tmp_path) -> None:
    buffer = per(capacity=16, batch_size=4)
    fill(buffer, 20)  # wrapped around
    tell(buffer, [3, 5, 7, 9], [0.5, 4.0, 0.01, 2.0])
    buffer.sample(3)
    path = serialization.save({"storage": buffer.state_dict()}, tmp_path / "replay.pt")
    restored = per(capacity=16, batch_size=4)
    restored.load_state_dict(serialization.load(path)["storage"])
    np.testing.assert_array_equal(restored.sums.nodes, buffer.sums.nodes)
    np.testing.assert_array_equal(restored.minima.nodes, buffer.minima.nodes)
    assert restored.max_error == buffer.max_error
    for _ in range(3):
        a, b = buffer.sample(2), restored.sample(2)
        np.testing.assert_array_equal(a.index, b.index)
        np.testing.assert_array_equal(a.weights, b.weights)
        fill(buffer, 1)
        fill(restored, 1)
    uniform = ReplayStorage(
        num_envs=1,
        feature_dim=1,
        action_shape=(),
        action_dtype=np.dtype(np.int64),
        buffer_size=16,
        batch_size=4,
        learning_starts=0,
        train_freq=1,
        gradient_steps=1,
        gamma=0.5,
        n_step=1,
        seed=0,
    )
    fill(uniform, 5)
    from_uniform = per(capacity=16)
    from_uniform.load_state_dict(uniform.state_dict())  # every transition as likely as new
    np.testing.assert_array_equal(from_uniform.sums[np.arange(5)], np.ones(5))


# ---------------------------------------------------------------------------- DQN and the seam


def dqn(**kwargs):
    torch.manual_seed(0)
    q = make(
        "model",
        "mlp",
        observation_space=spaces.Box(-1, 1, (3,), np.float32),
        num_outputs=2,
        hidden_sizes=[8],
        output_gain=1.0,
    )
    return make(
        "update",
        "dqn",
        model=q,
        make_model=None,
        policy=make("policy", "egreedy", action_space=spaces.Discrete(2)),
        num_envs=1,
        total_env_steps=1000,
        seed=0,
        lr=0.1,
        optimizer="sgd",
        loss="mse",
        max_grad_norm=None,
        **kwargs,
    )


def test_dqn_weights_each_loss_and_tells_back_its_td_errors() -> None:
    rule = dqn(prioritized=True)
    assert isinstance(rule.storage, PrioritizedReplayStorage)
    assert isinstance(rule.storage, FeedbackStorage)
    assert isinstance(rule.learner, FeedbackLearner)
    learner = rule.learner
    rng = np.random.default_rng(0)
    batch = ReplayBatch(
        obs=rng.normal(size=(1, 5, 3)).astype(np.float32),
        actions=np.array([[0, 1, 1, 0, 1]]),
        rewards=np.ones((1, 5), np.float32),
        discounts=np.array([[0.9, 0.9, 0.0, 0.9, 0.9]], np.float32),
        next_obs=rng.normal(size=(1, 5, 3)).astype(np.float32),
        index=np.array([[0, 1, 2, 3, 4]]),
        weights=np.array([[1.0, 0.5, 0.25, 0.1, 0.0]], np.float32),
    )
    with torch.no_grad():
        nxt = torch.from_numpy(batch.next_obs[0])
        best = learner.q(nxt).argmax(1, keepdim=True)
        y = 1.0 + torch.from_numpy(batch.discounts[0]) * learner.target(nxt).gather(1, best)[:, 0]
        taken = learner.q(torch.from_numpy(batch.obs[0]))[torch.arange(5), batch.actions[0]]
    expected = torch.mean(torch.from_numpy(batch.weights[0]) * (taken - y) ** 2)
    assert learner.learn(batch, Clock())["loss"] == pytest.approx(expected.item(), rel=1e-5)
    np.testing.assert_allclose(learner.feedback(), (y - taken).abs()[None].numpy(), rtol=1e-6)
    assert not isinstance(dqn(prioritized=False).storage, FeedbackStorage)


def test_the_agent_tells_a_feedback_storage_what_its_learner_found(make_cfg) -> None:
    cfg = make_cfg(
        "env=cartpole",
        "update=dqn",
        "update.prioritized=true",
        "update.learning_starts=200",
        "update.train_freq=50",
        "update.gradient_steps=2",
        "train.max_env_steps=600",
        "monitor=none",
        "eval.every_steps=null",
        "eval.final=false",
    )
    built = build(cfg)
    runner = make_runner(cfg, built)
    told: list[np.ndarray] = []
    storage = runner.agent.update.storage
    assert isinstance(storage, PrioritizedReplayStorage)
    original = storage.feedback

    def spy(batch: ReplayBatch, errors: np.ndarray) -> None:
        told.append(errors)
        original(batch, errors)

    storage.feedback = spy  # type: ignore[method-assign]
    runner.run()
    assert len(told) == runner.agent.clock.updates > 0
    assert all(errors.shape == (2, storage.batch_size) for errors in told)
    priorities = storage.sums[np.arange(storage.size)]
    assert len(np.unique(priorities)) > 2  # no longer all at the initial maximum
    built.close()


def test_a_runs_checkpoint_restores_the_priorities(make_cfg, tmp_path) -> None:
    cfg = make_cfg(
        "env=cartpole",
        "update=dqn",
        "update.prioritized=true",
        "update.learning_starts=200",
        "update.train_freq=50",
        "train.max_env_steps=800",
        "monitor=none",
        "eval.every_steps=null",
        "eval.final=false",
    )
    built, fresh = build(cfg), build(cfg)
    runner = make_runner(cfg, built)
    runner.run()
    path = serialization.save(runner.state_dict(), tmp_path / "last.pt")
    restored = make_runner(cfg, fresh)
    restored.load_state_dict(serialization.load(path))
    saved, loaded = runner.agent.update.storage, restored.agent.update.storage
    assert isinstance(saved, PrioritizedReplayStorage)
    assert isinstance(loaded, PrioritizedReplayStorage)
    np.testing.assert_array_equal(loaded.sums.nodes, saved.sums.nodes)
    assert loaded.max_error == saved.max_error
    assert len(np.unique(saved.sums[np.arange(saved.size)])) > 2  # learning told priorities
    later = Clock(env_steps=runner.agent.clock.env_steps + 50)  # beta follows the clock
    (a,), (b,) = saved.batches(later), loaded.batches(later)
    np.testing.assert_array_equal(a.index, b.index)
    np.testing.assert_array_equal(a.weights, b.weights)
    built.close()
    fresh.close()


def test_a_storage_that_wants_feedback_needs_a_learner_that_gives_it() -> None:
    rule = dqn(prioritized=True)
    silent = make("update", "none")
    with pytest.raises(ConfigError, match="tells nothing"):
        Agent(
            model=rule.learner.q,
            policy=make("policy", "egreedy", action_space=spaces.Discrete(2)),
            update=Update(storage=rule.storage, learner=silent.learner),
        )


def test_prioritized_is_refused_by_a_rule_without_replay(make_cfg) -> None:
    with pytest.raises(Exception) as refused:  # noqa: PT011 (Hydra's own exception types)
        make_cfg("env=cartpole", "update=ppo", "update.prioritized=true")
    sentence = describe(refused.value)
    assert sentence is not None
    assert "update.prioritized is not a key of update" in sentence


def test_uniform_replay_is_unchanged_but_names_its_sample() -> None:
    batch = dqn(learning_starts=0, batch_size=2).storage
    fill(batch, 3)
    sample = batch.sample(2)
    assert sample.weights is None
    assert sample.index is not None
    np.testing.assert_array_equal(sample.obs[..., 0], sample.index)
