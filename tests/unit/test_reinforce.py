"""REINFORCE: the exact gradient step, whole-episode batching across envs, option checks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from gymnasium import spaces

from twrl_exp.config import make
from twrl_exp.errors import ConfigError
from twrl_exp.policy import Categorical
from twrl_exp.protocols import Clock, Step

OBS = spaces.Box(-1.0, 1.0, (3,), np.float32)
RNG = np.random.default_rng(0)


class Driver:
    """Feeds hand-made vector steps through REINFORCE's storage to its learner with a clock,
    as an agent does."""

    def __init__(self, update) -> None:
        self.storage, self.learner = update.storage, update.learner
        self.clock = Clock()
        self.prev: tuple[np.ndarray, np.ndarray] | None = None

    def start(self, features: np.ndarray, actions: np.ndarray) -> None:
        self.prev = (features, actions)

    def observe(self, *, features, outputs, actions, reward, terminated, truncated, episode_start):
        assert self.prev is not None
        self.clock.env_steps += int(np.count_nonzero(~episode_start))
        self.storage.add(
            Step(
                features=self.prev[0],
                actions=self.prev[1],
                reward=reward,
                terminated=terminated,
                truncated=truncated,
                valid=~episode_start,
                next_features=features,
                next_outputs=outputs,
                next_actions=actions,
            )
        )
        self.prev = (features, actions)
        metrics = None
        for batch in self.storage.batches(self.clock):
            metrics = self.learner.learn(batch, self.clock)
        return metrics


def parts(num_envs: int = 1, **kwargs):
    torch.manual_seed(0)
    policy = Categorical(action_space=spaces.Discrete(2))
    model = make(
        "model", "mlp", observation_space=OBS, num_outputs=2, hidden_sizes=[], output_gain=1.0
    )
    update = make(
        "update",
        "reinforce",
        model=model,
        policy=policy,
        num_envs=num_envs,
        total_env_steps=1000,
        **kwargs,
    )
    return model, policy, Driver(update)


def feed(update, obs, actions, rewards, terminated, start=None):
    n = len(actions)
    return update.observe(
        features=np.asarray(obs, np.float32),
        outputs=None,
        actions=np.asarray(actions),
        reward=np.asarray(rewards, float),
        terminated=np.asarray(terminated),
        truncated=np.zeros(n, bool),
        episode_start=np.asarray(start if start is not None else [False] * n),
    )


def test_one_update_is_the_policy_gradient_step() -> None:
    model, _, update = parts(
        optimizer="sgd",
        lr=0.1,
        baseline="none",
        normalize_advantages=False,
        gamma=0.5,
        steps_per_batch=3,
    )
    before = copy.deepcopy(model)
    rng = np.random.default_rng(1)
    obs = rng.uniform(-1, 1, (4, 1, 3)).astype(np.float32)
    acts, rewards = [1, 0, 1], [1.0, 2.0, 4.0]
    update.start(obs[0], np.array([acts[0]]))
    assert feed(update, obs[1], [acts[1]], [rewards[0]], [False]) is None
    assert feed(update, obs[2], [acts[2]], [rewards[1]], [False]) is None
    metrics = feed(update, obs[3], [0], [rewards[2]], [True])
    assert metrics is not None
    assert metrics["batch/steps"] == 3

    returns = torch.tensor([1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4.0])
    logits = before(torch.from_numpy(obs[:3, 0]))
    log_p = torch.log_softmax(logits, 1)[torch.arange(3), torch.tensor(acts)]
    (-(log_p * returns).mean()).backward()
    for p_new, p_old in zip(model.parameters(), before.parameters(), strict=True):
        torch.testing.assert_close(p_new.detach(), p_old.detach() - 0.1 * p_old.grad)


def test_episodes_in_flight_are_kept_whole_for_the_next_batch() -> None:
    _, _, update = parts(num_envs=2, steps_per_batch=3)
    zeros = np.zeros((2, 3), np.float32)
    update.start(zeros, np.array([0, 0]))
    assert feed(update, zeros, [0, 0], [1, 1], [False, False]) is None
    assert feed(update, zeros, [0, 0], [1, 1], [False, False]) is None
    first = feed(update, zeros, [0, 0], [1, 1], [True, False])  # env 0: 3 steps
    assert first is not None
    assert first["batch/steps"] == 3
    assert first["batch/episodes"] == 1
    assert feed(update, zeros, [0, 0], [0, 1], [False, False], start=[True, False]) is None
    second = feed(update, zeros, [0, 0], [1, 1], [False, True])  # env 1: 5 steps
    assert second is not None
    assert second["batch/steps"] == 5  # all of env 1's episode


def test_linear_lr_schedule_reaches_the_final_fraction() -> None:
    _, _, update = parts(steps_per_batch=1, lr=0.2, lr_schedule="linear", lr_final_fraction=0.1)
    update.learner._set_lr(Clock(env_steps=500))
    assert update.learner.optimizer.param_groups[0]["lr"] == pytest.approx(0.11)
    update.learner._set_lr(Clock(env_steps=1000))
    assert update.learner.optimizer.param_groups[0]["lr"] == pytest.approx(0.02)


@pytest.mark.parametrize("baseline", ["none", "average", "value"])
def test_every_baseline_learns_a_bandit(baseline: str) -> None:
    """One-step episodes: action 1 pays 1, action 0 pays 0; p(a=1) must rise."""
    model, policy, update = parts(num_envs=16, baseline=baseline, steps_per_batch=64, lr=0.05)
    obs = np.zeros((16, 3), np.float32)
    actions = policy.sample(model.outputs(obs), RNG)
    update.start(obs, actions)
    start = np.zeros(16, bool)
    for _ in range(400):
        reward = (actions == 1).astype(float) * ~start
        actions = policy.sample(model.outputs(obs), RNG)
        feed(update, obs, actions, reward, ~start, start=start)
        start = ~start
    p1 = torch.softmax(model(torch.zeros(1, 3)), 1)[0, 1].item()
    assert p1 > 0.9


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"lr": -0.1}, "update.lr=-0.1"),
        ({"gamma": 1.5}, "update.gamma=1.5"),
        ({"steps_per_batch": 0}, "update.steps_per_batch=0"),
        ({"optimizer_kwargs": {"bogus": 1}}, "optimizer_kwargs"),
    ],
)
def test_bad_values_are_refused(kwargs, fragment) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parts(**kwargs)


def test_incompatible_model_or_policy_is_refused() -> None:
    egreedy = make("policy", "egreedy", action_space=spaces.Discrete(2))
    mlp = make("model", "mlp", observation_space=OBS, num_outputs=2)
    runtime = {"num_envs": 1, "total_env_steps": 10}
    with pytest.raises(ConfigError, match="policy=categorical or policy=normal"):
        make("update", "reinforce", model=mlp, policy=egreedy, **runtime)
    table = make("model", "table", observation_space=spaces.Discrete(3), num_outputs=2)
    cat = Categorical(action_space=spaces.Discrete(2))
    with pytest.raises(ConfigError, match="model=mlp"):
        make("update", "reinforce", model=table, policy=cat, **runtime)
