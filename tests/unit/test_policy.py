"""Action selection: sampling frequencies, log-probabilities, epsilon schedule, bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from twrl_exp.config import make
from twrl_exp.errors import ConfigError
from twrl_exp.policy import Categorical, Greedy, RandomPolicy
from twrl_exp.protocols import Clock


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_categorical_samples_follow_softmax() -> None:
    policy = Categorical(action_space=spaces.Discrete(3))
    logits = np.tile(np.log([0.2, 0.5, 0.3]), (200_000, 1))
    freq = np.bincount(policy.sample(logits, rng()), minlength=3) / 200_000
    np.testing.assert_allclose(freq, [0.2, 0.5, 0.3], atol=0.005)


def test_categorical_log_prob_and_entropy_match_torch() -> None:
    policy = Categorical(action_space=spaces.Discrete(4))
    logits = torch.randn(7, 4)
    actions = torch.randint(0, 4, (7,))
    dist = torch.distributions.Categorical(logits=logits)
    torch.testing.assert_close(policy.log_prob(logits, actions), dist.log_prob(actions))
    torch.testing.assert_close(policy.entropy(logits), dist.entropy())


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 9])
def test_categorical_act_draws_what_sample_draws_with_its_log_prob(n: int) -> None:
    """Bit for bit, whether act works on columns (a few actions) or on rows."""
    policy = Categorical(action_space=spaces.Discrete(n))
    logits = (np.random.default_rng(n).normal(size=(64, n)) * 3).astype(np.float32)
    actions, extras = policy.act(logits, rng(), Clock())
    np.testing.assert_array_equal(actions, policy.sample(logits, rng()))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert list(extras) == ["log_prob"]
    np.testing.assert_array_equal(extras["log_prob"], log_p[np.arange(64), actions])


def test_categorical_respects_discrete_start() -> None:
    policy = Categorical(action_space=spaces.Discrete(3, start=-1))
    assert policy.env_actions(np.array([0, 2])).tolist() == [-1, 1]


def test_normal_log_prob_and_entropy_match_torch() -> None:
    space = spaces.Box(-2.0, 2.0, (2,), np.float32)
    policy = make("policy", "normal", action_space=space, init_std=0.7)
    means = torch.randn(5, 2)
    actions = torch.randn(5, 2) * 3
    dist = torch.distributions.Normal(means, torch.full((2,), 0.7))
    torch.testing.assert_close(policy.log_prob(means, actions), dist.log_prob(actions).sum(1))
    torch.testing.assert_close(policy.entropy(means), dist.entropy().sum(1))


def test_normal_samples_unclipped_and_env_actions_clipped() -> None:
    space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    policy = make("policy", "normal", action_space=space, init_std=2.0)
    samples = policy.sample(np.zeros((10_000, 1), np.float32), rng())
    assert samples.std() == pytest.approx(2.0, rel=0.05)
    clipped = policy.env_actions(samples)
    assert clipped.min() == -1.0
    assert clipped.max() == 1.0
    assert np.abs(samples).max() > 1.0


def test_normal_std_is_learned_or_fixed() -> None:
    space = spaces.Box(-1.0, 1.0, (3,), np.float32)
    for learn_std, learned in ((True, 1), (False, 0)):
        policy = make("policy", "normal", action_space=space, learn_std=learn_std)
        assert len(list(policy.parameters())) == learned


def test_egreedy_probabilities_and_decay() -> None:
    policy = make(
        "policy",
        "egreedy",
        action_space=spaces.Discrete(4),
        epsilon=0.2,
        decay=0.5,
        min_epsilon=0.04,
    )
    q = np.array([[0.0, 1.0, 1.0, -1.0]])
    probs = policy.probabilities(q, Clock())
    np.testing.assert_allclose(probs, [[0.05, 0.45, 0.45, 0.05]])
    assert policy.epsilon(Clock(episodes=1)) == pytest.approx(0.1)
    assert policy.epsilon(Clock(episodes=6)) == pytest.approx(0.04)


def test_egreedy_per_step_schedule_reads_the_clocks_env_steps() -> None:
    policy = make(
        "policy",
        "egreedy",
        action_space=spaces.Discrete(2),
        total_env_steps=1000,
        epsilon=1.0,
        exploration_fraction=0.5,
        final_epsilon=0.1,
    )
    assert policy.epsilon(Clock()) == 1.0
    assert policy.epsilon(Clock(env_steps=250, episodes=99)) == pytest.approx(0.55)
    assert policy.epsilon(Clock(env_steps=800)) == pytest.approx(0.1)
    assert policy.stats(Clock(env_steps=500)) == {"policy/epsilon": pytest.approx(0.1)}


def test_egreedy_sampling_frequencies_match_probabilities() -> None:
    policy = make("policy", "egreedy", action_space=spaces.Discrete(3), epsilon=0.3)
    q = np.tile([0.0, 2.0, 1.0], (100_000, 1))
    freq = np.bincount(policy.sample(q, rng(), 0.3), minlength=3) / 100_000
    np.testing.assert_allclose(freq, policy.probabilities(q[:1], Clock())[0], atol=0.01)


def test_greedy_breaks_ties_at_random() -> None:
    policy = Greedy(action_space=spaces.Discrete(3))
    actions, _ = policy.act(np.tile([1.0, 0.0, 1.0], (10_000, 1)), rng(), Clock())
    assert set(np.unique(actions).tolist()) == {0, 2}
    assert abs((actions == 0).mean() - 0.5) < 0.03


@pytest.mark.parametrize(
    "space",
    [
        spaces.Discrete(4, start=2),
        spaces.MultiDiscrete([2, 3]),
        spaces.Box(-2.0, 3.0, (2,), np.float32),
    ],
)
def test_random_policy_stays_in_the_space(space: spaces.Space) -> None:
    policy = RandomPolicy(action_space=space)
    actions = policy.env_actions(policy.sample(np.empty((500, 0)), rng()))
    assert all(space.contains(a) for a in actions)


@pytest.mark.parametrize(
    ("option", "space", "fragment"),
    [
        ("categorical", spaces.Box(-1, 1, (1,)), "policy=normal"),
        ("normal", spaces.Discrete(2), "policy=categorical"),
        ("egreedy", spaces.Box(-1, 1, (1,)), "policy=normal"),
        ("random", spaces.Box(-np.inf, np.inf, (1,)), "bounded"),
    ],
)
def test_wrong_action_space_is_refused_with_the_fix(option, space, fragment) -> None:
    with pytest.raises(ConfigError, match=fragment):
        make("policy", option, action_space=space)


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu", "sigmoid", "gelu"])
def test_mlp_acting_path_matches_torch_and_follows_updates(activation: str) -> None:
    torch.manual_seed(0)
    model = make(
        "model",
        "mlp",
        observation_space=spaces.Box(-1, 1, (5,)),
        num_outputs=3,
        activation=activation,
        output_gain=1.0,
    )
    x = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.outputs(x), expected, rtol=1e-5, atol=1e-6)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(torch.from_numpy(x)).sum().backward()
    opt.step()
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.outputs(x), expected, rtol=1e-5, atol=1e-6)
    model.load_state_dict(
        make(
            "model",
            "mlp",
            observation_space=spaces.Box(-1, 1, (5,)),
            num_outputs=3,
            activation=activation,
        ).state_dict()
    )
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.outputs(x), expected, rtol=1e-5, atol=1e-6)


def test_mlp_ortho_init_false_keeps_torchs_default_init() -> None:
    """SB3's ``ortho_init=False`` (some zoo presets): torch's Kaiming-uniform weights and
    uniform biases, so the untrained policy's means are far from 0; orthogonal init (the
    default) gives an output layer of gain 0.01 and zero biases."""

    def built(ortho: bool):
        torch.manual_seed(0)
        space = spaces.Box(-1, 1, (4,))
        return make("model", "mlp", observation_space=space, num_outputs=2, ortho_init=ortho)

    ortho, default = built(True), built(False)
    assert ortho.ortho_init is True
    assert default.ortho_init is False
    assert all(
        float(layer.bias.abs().max()) == 0.0 for layer in ortho.net if hasattr(layer, "bias")
    )
    assert all(
        float(layer.bias.abs().max()) > 0.0 for layer in default.net if hasattr(layer, "bias")
    )
    head_ortho, head_default = ortho.net[-1].weight, default.net[-1].weight
    assert float(head_ortho.norm()) < 0.03  # gain 0.01 on a 2 x 64 matrix
    assert float(head_default.norm()) > 0.3  # U(-1/8, 1/8) entries: about 0.6
