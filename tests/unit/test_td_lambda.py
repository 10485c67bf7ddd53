"""TD(lambda) control: exact updates, the lambda limits, traces, truncation, Watkins's cut."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from twrl_exp.config import make
from twrl_exp.errors import ConfigError
from twrl_exp.protocols import Clock, Step


def learner(model, policy, num_envs: int, **settings):
    """The TdLambda learner of ``update=td_lambda`` with its defaults and ``settings``."""
    return make(
        "update", "td_lambda", model=model, policy=policy, num_envs=num_envs, **settings
    ).learner


class Driver:
    """Feeds hand-made transitions to a TdLambda over a table of ``states`` x 2 actions."""

    def __init__(
        self,
        *,
        states: int = 6,
        num_envs: int = 1,
        init: float = 0.0,
        epsilon: float = 0.0,
        **kwargs,
    ) -> None:
        self.model = make(
            "model",
            "table",
            observation_space=spaces.Discrete(states),
            num_outputs=2,
            initial_value=init,
        )
        self.policy = make("policy", "egreedy", action_space=spaces.Discrete(2), epsilon=epsilon)
        self.update = learner(self.model, self.policy, num_envs, **kwargs)
        self.num_envs = num_envs
        self.prev: tuple[np.ndarray, np.ndarray] | None = None

    def start(self, states: list[int], actions: list[int]) -> None:
        self.prev = (self.model.features(np.array(states)), np.array(actions))

    def step(
        self,
        states: list[int],
        actions: list[int],
        rewards: list[float],
        *,
        terminated: list[bool] | None = None,
        truncated: list[bool] | None = None,
        start: list[bool] | None = None,
    ) -> None:
        n = self.num_envs
        features = self.model.features(np.array(states))
        assert self.prev is not None
        self.update.learn(
            Step(
                features=self.prev[0],
                actions=self.prev[1],
                reward=np.array(rewards, float),
                terminated=np.array(terminated or [False] * n),
                truncated=np.array(truncated or [False] * n),
                valid=~np.array(start or [False] * n),
                next_features=features,
                next_outputs=self.model.outputs(features),
                next_actions=np.array(actions),
            ),
            Clock(),
        )
        self.prev = (features, np.array(actions))

    def q(self, state: int, action: int = 1) -> float:
        return float(self.model.weights[state, action])


def run_chain(d: Driver, rewards: list[float]) -> None:
    """s0 -a1-> s1 -a1-> ... terminal, taking action 1 throughout."""
    d.start([0], [1])
    for k, r in enumerate(rewards):
        last = k == len(rewards) - 1
        d.step([k + 1], [1], [r], terminated=[last])


def test_lambda_one_equals_monte_carlo() -> None:
    rewards = [1.0, -2.0, 3.0, 0.5]
    d = Driver(lam=1.0, gamma=0.9, alpha=0.1, traces="accumulating")
    run_chain(d, rewards)
    returns = [sum(0.9**j * r for j, r in enumerate(rewards[k:])) for k in range(4)]
    for k in range(4):
        assert d.q(k) == pytest.approx(0.1 * returns[k])


def test_lambda_zero_equals_one_step_td() -> None:
    d = Driver(lam=0.0, gamma=0.9, alpha=0.1, init=0.5)
    run_chain(d, [1.0, 2.0, 3.0])
    assert d.q(0) == pytest.approx(0.5 + 0.1 * (1.0 + 0.9 * 0.5 - 0.5))
    assert d.q(1) == pytest.approx(0.5 + 0.1 * (2.0 + 0.9 * 0.5 - 0.5))
    assert d.q(2) == pytest.approx(0.5 + 0.1 * (3.0 - 0.5))  # terminal: no bootstrap
    assert d.q(3) == pytest.approx(0.5)


def test_intermediate_lambda_weights_later_errors_by_gamma_lambda() -> None:
    d = Driver(lam=0.5, gamma=1.0, alpha=1.0)
    run_chain(d, [0.0, 0.0, 4.0])
    assert d.q(2) == pytest.approx(4.0)
    assert d.q(1) == pytest.approx(0.5 * 4.0)
    assert d.q(0) == pytest.approx(0.25 * 4.0)


def test_truncation_bootstraps_and_termination_does_not() -> None:
    for truncated, expected in ((True, 0.5 + 0.5 * (1.0 + 0.5 - 0.5)), (False, 0.5 + 0.5 * 0.5)):
        d = Driver(lam=0.0, gamma=1.0, alpha=0.5, init=0.5)
        d.start([0], [1])
        d.step([1], [1], [1.0], truncated=[truncated], terminated=[not truncated])
        assert d.q(0) == pytest.approx(expected)


def test_traces_reset_between_episodes_and_phantom_step_is_ignored() -> None:
    d = Driver(lam=1.0, gamma=1.0, alpha=1.0)
    run_chain(d, [0.0, 1.0])  # episode 1 ends in state 2
    before = d.model.weights.copy()
    d.step([0], [1], [123.0], start=[True])  # autoreset step: reward must be ignored
    np.testing.assert_array_equal(d.model.weights, before)
    d.step([4], [1], [5.0], terminated=[True])  # episode 2: only state 0 changes
    changed = np.argwhere(d.model.weights != before)
    assert changed.tolist() == [[0, 1]]


def test_replacing_traces_cap_at_one() -> None:
    d = Driver(lam=1.0, gamma=1.0, alpha=1.0, traces="replacing")
    d.start([0], [1])
    d.step([0], [1], [0.0])  # revisit (0, a1)
    d.step([1], [1], [2.0], terminated=[True])
    assert d.q(0) == pytest.approx(2.0)  # accumulating would give 2 * 2.0 - corrections
    acc = Driver(lam=1.0, gamma=1.0, alpha=1.0, traces="accumulating")
    acc.start([0], [1])
    acc.step([0], [1], [0.0])
    acc.step([1], [1], [2.0], terminated=[True])
    assert acc.q(0) == pytest.approx(4.0)


def test_watkins_q_cuts_traces_after_an_exploratory_action() -> None:
    d = Driver(lam=1.0, gamma=1.0, alpha=1.0, target="q_learning", init=0.0)
    d.model.weights[2, 0] = 5.0  # in state 2, action 0 is greedy
    d.start([0], [1])
    d.step([1], [1], [0.0])
    d.step([2], [1], [0.0])  # a'=1 in state 2 is exploratory -> cut
    d.step([3], [1], [7.0], terminated=[True])
    assert d.q(0) == pytest.approx(0.0 + 1.0 * 0.0 + 5.0)  # got the max-backup, not later
    assert d.q(2) == pytest.approx(7.0)
    sarsa = Driver(lam=1.0, gamma=1.0, alpha=1.0, target="sarsa")
    sarsa.model.weights[2, 0] = 5.0
    sarsa.start([0], [1])
    sarsa.step([1], [1], [0.0])
    sarsa.step([2], [1], [0.0])
    sarsa.step([3], [1], [7.0], terminated=[True])
    assert sarsa.q(0) == pytest.approx(7.0)  # Sarsa keeps the trace


def test_expected_sarsa_backs_up_the_policy_average() -> None:
    d = Driver(lam=0.0, gamma=1.0, alpha=1.0, target="expected_sarsa", epsilon=0.5)
    d.model.weights[1] = [2.0, 6.0]  # pi = [0.25, 0.75] -> expectation 5.0
    d.start([0], [1])
    d.step([1], [0], [1.0])
    assert d.q(0) == pytest.approx(1.0 + 5.0)


def test_envs_keep_separate_traces() -> None:
    d = Driver(lam=1.0, gamma=1.0, alpha=1.0, num_envs=2)
    d.start([0, 3], [1, 1])
    d.step([1, 4], [1, 1], [0.0, 2.0], terminated=[False, True])
    assert d.q(0) == pytest.approx(0.0)  # env 0's trace sees no error
    assert d.q(3) == pytest.approx(2.0)


def test_tile_coding_step_size_is_divided_by_the_tilings() -> None:
    box = spaces.Box(np.array([0.0, 0.0]), np.array([1.0, 1.0]), dtype=np.float64)
    model = make(
        "model", "tilecoding", observation_space=box, num_outputs=2, num_tilings=4, tiles_per_dim=4
    )
    policy = make("policy", "egreedy", action_space=spaces.Discrete(2), epsilon=0.0)
    update = learner(model, policy, 1, lam=0.0, gamma=1.0, alpha=0.5)
    s0, s1 = np.array([[0.2, 0.2]]), np.array([[0.9, 0.9]])
    f1 = model.features(s1)
    update.learn(
        Step(
            features=model.features(s0),
            actions=np.array([1]),
            reward=np.array([1.0]),
            terminated=np.array([True]),
            truncated=np.array([False]),
            valid=np.array([True]),
            next_features=f1,
            next_outputs=model.outputs(f1),
            next_actions=np.array([1]),
        ),
        Clock(),
    )
    assert model.outputs(model.features(s0))[0, 1] == pytest.approx(0.5)  # alpha * delta


@pytest.mark.parametrize(
    ("model", "policy", "fragment"),
    [
        ("mlp", "egreedy", "model=tilecoding or model=table"),
        ("table", "normal", "policy=egreedy"),
    ],
)
def test_incompatible_parts_are_refused(model: str, policy: str, fragment: str) -> None:
    obs = spaces.Discrete(4)
    space = spaces.Box(-1, 1, (1,)) if policy == "normal" else spaces.Discrete(2)
    pol = make("policy", policy, action_space=space)
    mod = make("model", model, observation_space=obs, num_outputs=2)
    with pytest.raises(ConfigError, match=fragment):
        learner(mod, pol, 1)


@pytest.mark.parametrize(("key", "value"), [("lam", 1.5), ("gamma", -0.1), ("alpha", 0.0)])
def test_bad_values_are_refused(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"update.{key}={value}"):
        Driver(**{key: value})


def test_envs_sharing_a_weight_move_it_by_their_mean_error() -> None:
    d = Driver(lam=0.0, gamma=1.0, alpha=1.0, num_envs=3)
    d.start([0, 0, 0], [1, 1, 1])
    d.step([1, 1, 1], [1, 1, 1], [3.0, 6.0, 0.0], terminated=[True, True, True])
    assert d.q(0) == pytest.approx(3.0)  # mean of 3, 6, 0 - not their sum
