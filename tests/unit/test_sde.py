"""gSDE (policy.use_sde=true): the noise is z(s) @ W, kept for its window and drawn anew after
each update; its log-probabilities are the Gaussian of the latent variance, the same in acting
(numpy) and learning (torch); it is saved with the policy; it needs an MLP."""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from twrl_exp import seeding
from twrl_exp.build import build_agent
from twrl_exp.config import make
from twrl_exp.errors import ConfigError
from twrl_exp.protocols import Clock

BOX = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
LATENT = 5


def normal(**options):
    policy = make("policy", "normal", action_space=BOX, use_sde=True, init_std=0.3, **options)
    policy.attach_latent(LATENT)
    return policy


def tanh_normal(**options):
    policy = make("policy", "tanh_normal", action_space=BOX, use_sde=True, **options)
    policy.attach_latent(LATENT)
    return policy


def outputs(n: int, seed: int = 0) -> np.ndarray:
    """``[n, A + L]``: means then the last hidden layer (tanh features, as an MLP's)."""
    gen = np.random.default_rng(seed)
    return np.concatenate(
        [gen.normal(size=(n, 2)), np.tanh(gen.normal(size=(n, LATENT)))], axis=1
    ).astype(np.float32)


def marginal(policy, out: torch.Tensor, clip: float = math.inf) -> torch.distributions.Normal:
    """The Gaussian of the pre-squash action given z: variance z^2 @ sigma^2 + 1e-6 (around
    the means clipped to ``[-clip, clip]``)."""
    sigma = policy.sde.log_std.detach().exp()
    variance = out[:, 2:].pow(2) @ sigma.pow(2) + 1e-6
    return torch.distributions.Normal(out[:, :2].clamp(-clip, clip), variance.sqrt())


def test_log_prob_and_entropy_are_the_gaussian_of_the_latent_variance() -> None:
    policy = normal()
    with torch.no_grad():
        policy.sde.log_std.copy_(torch.randn(LATENT, 2) * 0.3)
    out = torch.from_numpy(outputs(64))
    actions = torch.randn(64, 2)
    expected = marginal(policy, out)
    torch.testing.assert_close(policy.log_prob(out, actions), expected.log_prob(actions).sum(1))
    torch.testing.assert_close(policy.entropy(out), expected.entropy().sum(1))


def test_acting_and_learning_agree_on_the_log_prob() -> None:
    """PPO's first ratio is 1 only if the log-probability recorded when acting is the one the
    update recomputes."""
    policy = normal()
    with torch.no_grad():  # some entries below the floor (policy.min_std): clamped alike
        policy.sde.log_std[:2] = -12.0
    rng = np.random.default_rng(1)
    policy.bind_exploration(rng)
    out = outputs(8)
    actions, extras = policy.act(out, rng, Clock())
    recomputed = policy.log_prob(torch.from_numpy(out), torch.from_numpy(actions))
    np.testing.assert_allclose(
        extras["log_prob"], recomputed.detach().double().numpy(), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("make_policy", [normal, tanh_normal])
def test_the_noise_is_a_function_of_the_state_until_it_is_drawn_anew(make_policy) -> None:
    policy = make_policy(sde_sample_freq=3)
    rng = np.random.default_rng(0)
    policy.bind_exploration(rng)
    out = outputs(4)
    out[1] = out[0]  # two envs in the same state
    clock = Clock()
    first = [policy.act(out, rng, clock)[0] for _ in range(3)]
    for actions in first[1:]:  # same state, same matrices: the same action
        np.testing.assert_array_equal(actions, first[0])
    assert not np.allclose(first[0][0], first[0][1])  # each env its own matrix
    fourth = policy.act(out, rng, clock)[0]  # sde_sample_freq=3 steps: new matrices
    assert not np.allclose(fourth, first[0])
    clock.updates += 1  # a learning update: new matrices at once
    assert not np.allclose(policy.act(out, rng, clock)[0], fourth)
    # Without a window (-1), only updates draw anew.
    policy = make_policy(sde_sample_freq=-1)
    policy.bind_exploration(rng)
    kept = [policy.act(out, rng, clock)[0] for _ in range(50)]
    assert all(np.array_equal(a, kept[0]) for a in kept)


def test_the_noise_has_the_variance_the_log_prob_assumes() -> None:
    policy = normal()
    rng = np.random.default_rng(2)
    policy.bind_exploration(rng)
    out = np.repeat(outputs(1), 40_000, axis=0)  # 40,000 envs in one state: 40,000 matrices
    actions, _ = policy.act(out, rng, Clock())
    expected = marginal(policy, torch.from_numpy(out[:1])).variance.numpy()[0]
    np.testing.assert_allclose((actions - out[:, :2]).var(axis=0), expected, rtol=0.04)
    np.testing.assert_allclose((actions - out[:, :2]).mean(axis=0), 0.0, atol=0.02)


def test_a_stochastic_evaluation_leaves_the_training_noise_alone() -> None:
    def training_actions(evaluate: bool) -> list[np.ndarray]:
        policy = normal(sde_sample_freq=2)
        rng, eval_rng = np.random.default_rng(3), np.random.default_rng(4)
        policy.bind_exploration(rng)
        clock, out, seen = Clock(), outputs(4), []
        for _ in range(5):
            seen.append(policy.act(out, rng, clock)[0])
            if evaluate:
                evaluated = [policy.act(out, eval_rng, clock)[0] for _ in range(2)]
                assert not np.array_equal(evaluated[0], evaluated[1])  # its own draws each step
        return seen

    for a, b in zip(training_actions(False), training_actions(True), strict=True):
        np.testing.assert_array_equal(a, b)


def test_greedy_actions_are_the_means_without_noise() -> None:
    out = outputs(3)
    policy = normal()
    actions, _ = policy.act(out, np.random.default_rng(0), Clock(), greedy=True)
    np.testing.assert_array_equal(actions, out[:, :2])
    policy = tanh_normal()
    actions, _ = policy.act(out, np.random.default_rng(0), Clock(), greedy=True)
    np.testing.assert_allclose(actions, np.tanh(np.clip(out[:, :2], -2, 2)), rtol=1e-6)


def test_sac_draws_reparameterised_actions_through_the_features() -> None:
    """SAC's gSDE: tanh(clip(mean) + z @ W), its log-prob the latent Gaussian's with the tanh
    correction; the gradient reaches W's scale and, unlike PPO's, the features z."""
    policy = tanh_normal()
    out = torch.from_numpy(outputs(256)).requires_grad_(True)
    torch.manual_seed(0)
    actions, log_prob = policy.rsample(out)
    torch.manual_seed(0)
    weights = policy.sde.log_std.exp() * torch.randn(LATENT, 2)
    pre = out[:, :2].clamp(-2, 2) + out[:, 2:] @ weights
    torch.testing.assert_close(actions, torch.tanh(pre))
    expected = marginal(policy, out.detach(), clip=2.0).log_prob(pre.detach()).sum(1)
    expected -= torch.log(1 - torch.tanh(pre.detach()).pow(2)).sum(1)
    torch.testing.assert_close(log_prob.detach(), expected, rtol=1e-4, atol=1e-4)
    (actions.sum() + log_prob.sum()).backward()
    assert policy.sde.log_std.grad is not None
    assert policy.sde.log_std.grad.abs().sum() > 0
    assert out.grad is not None
    assert out.grad[:, 2:].abs().sum() > 0
    # PPO's reads z without a gradient: only the means learn from its log-probability.
    ppo = normal()
    out.grad = None
    ppo.log_prob(out, torch.randn(256, 2)).sum().backward()
    assert out.grad[:, 2:].abs().sum() == 0
    assert out.grad[:, :2].abs().sum() > 0


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("policy.sde_sample_freq=0", "policy.sde_sample_freq=0 is invalid"),
        ("policy.init_std=-1", "policy.init_std=-1.0"),
    ],
)
def test_bad_options_are_one_sentence(make_cfg, bad: str, says: str) -> None:
    cfg = make_cfg("env=pendulum", "update=ppo", "policy.use_sde=true", bad)
    with pytest.raises(ConfigError, match=says.replace(".", r"\.")):
        build_agent(cfg, PENDULUM.observation_space, PENDULUM.action_space, 1)


PENDULUM = gym.make("Pendulum-v1")


def test_gsde_needs_an_mlp(make_cfg) -> None:
    cfg = make_cfg("env=pendulum", "update=ppo", "policy.use_sde=true", "model=tilecoding")
    with pytest.raises(ConfigError, match=r"policy\.use_sde=true needs model=mlp"):
        build_agent(cfg, PENDULUM.observation_space, PENDULUM.action_space, 1)


def drive(agent, steps: int, seed: int) -> list[np.ndarray]:
    """``steps`` vector steps of made-up observations; the actions the agent took."""
    gen = np.random.default_rng(seed)
    n, taken = 2, []
    no = np.zeros(n, bool)
    for _ in range(steps):
        obs = gen.normal(size=(n, 3)).astype(np.float32)
        actions, _ = agent.step(obs, gen.normal(size=n), no, no, no)
        taken.append(actions)
    return taken


@pytest.mark.parametrize(
    ("rule", "policy"), [("ppo", "normal"), ("a2c", "normal"), ("sac", "tanh_normal")]
)
def test_a_resumed_agent_goes_on_with_the_same_noise_and_learns_its_scale(
    make_cfg, rule: str, policy: str
) -> None:
    overrides = [
        "env=pendulum",
        f"update={rule}",
        f"policy={policy}",
        "policy.use_sde=true",
        "policy.sde_sample_freq=4",
        "model.hidden_sizes=[16]",
        *{
            "ppo": ["update.n_steps=8", "update.num_minibatches=2"],
            "a2c": ["update.n_steps=8"],
            "sac": ["update.learning_starts=10", "update.batch_size=16"],
        }[rule],
    ]
    cfg = make_cfg(*overrides)

    def agent():
        torch.manual_seed(seeding.integer(cfg.seed, seeding.Stream.TORCH))
        made = build_agent(cfg, PENDULUM.observation_space, PENDULUM.action_space, 2)
        made.start(np.zeros((2, 3), np.float32))
        return made

    first = agent()
    assert first.model.latent_dim == 16
    scale = first.policy.sde.log_std.detach().clone()
    # Three rollouts of 8 vector steps and two steps more: the matrices drawn after the third
    # update have acted twice (a fresh agent's start() acts once: a count not restored would
    # show); the next 5 steps act with them (2) and new ones (sde_sample_freq 4), before the
    # fourth update (a rollout's partial storage is not saved: the runner restarts its envs).
    drive(first, 26, seed=0)
    assert not torch.equal(first.policy.sde.log_std.detach(), scale)  # the update learns it
    assert "policy/sde_std" in first.stats()
    saved, pending = copy.deepcopy(first.state_dict()), copy.deepcopy(first._prev)
    after = drive(first, 5, seed=1)  # mid-window: the kept matrices decide these actions
    resumed = agent()
    resumed.load_state_dict(saved)
    resumed._prev = pending  # the transition in flight (the runner restarts its envs instead)
    for a, b in zip(after, drive(resumed, 5, seed=1), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_mlp_appends_its_last_hidden_layer_in_numpy_and_torch() -> None:
    model = make(
        "model",
        "mlp",
        observation_space=PENDULUM.observation_space,
        num_outputs=1,
        hidden_sizes=[8, 6],
        latent_outputs=True,
    )
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    numpy_out = model.outputs(model.features(obs))
    with torch.no_grad():
        torch_out = model(torch.from_numpy(obs)).numpy()
    assert numpy_out.shape == (5, 1 + 6)
    assert model.latent_dim == 6
    np.testing.assert_allclose(numpy_out, torch_out, rtol=1e-5, atol=1e-6)
    assert np.abs(numpy_out[:, 1:]).max() <= 1.0  # the hidden layer's tanh features


def test_the_agent_binds_its_training_stream_so_the_noise_is_kept(make_cfg) -> None:
    """Within a window the agent's actions in one state repeat (the noise is kept); a policy
    the agent never bound would draw anew each step, as plain Gaussian noise."""
    cfg = make_cfg("env=pendulum", "update=ppo", "update.n_steps=64", "policy.sde_sample_freq=4")
    agent = build_agent(cfg, PENDULUM.observation_space, PENDULUM.action_space, 2)
    obs, no = np.ones((2, 3), np.float32), np.zeros(2, bool)
    first = agent.start(obs)
    for _ in range(3):
        np.testing.assert_array_equal(agent.step(obs, np.zeros(2), no, no, no)[0], first)
    assert not np.array_equal(agent.step(obs, np.zeros(2), no, no, no)[0], first)  # new window


def test_sac_acts_around_the_clipped_mean() -> None:
    """Acting clips the means to [-2, 2] as learning does (else the two disagree)."""
    policy = tanh_normal()
    out = outputs(3)
    out[:, :2] = [[5.0, -7.0], [0.5, 3.0], [-2.5, 1.0]]
    out[:, 2:] = 0.0  # no features, no noise
    rng = np.random.default_rng(0)
    policy.bind_exploration(rng)
    actions, _ = policy.act(out, rng, Clock())
    np.testing.assert_allclose(actions, np.tanh(np.clip(out[:, :2], -2, 2)), rtol=1e-6)


def test_a_fixed_scale_is_not_learned() -> None:
    policy = normal(learn_std=False)
    assert list(policy.parameters()) == []  # a buffer: no optimiser moves it
    assert "sde.log_std" in policy.state_dict()


def test_ppos_entropy_does_not_train_the_features() -> None:
    out = torch.from_numpy(outputs(16)).requires_grad_(True)
    normal().entropy(out).sum().backward()
    assert out.grad is None or out.grad.abs().sum() == 0


def test_tanh_normals_bad_scale_is_one_sentence() -> None:
    with pytest.raises(ConfigError, match=r"policy\.init_std=0 is invalid for policy=tanh_normal"):
        make("policy", "tanh_normal", action_space=BOX, use_sde=True, init_std=0)
