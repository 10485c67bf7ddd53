"""A2C, PPO, DQN, SAC, TD3: exact pieces (log-probs, targets), tiny problems they must solve,
capability checks, evaluation randomness, and checkpoints that hold everything."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from gymnasium import spaces

from twrl_exp import serialization
from twrl_exp.build import build, make_runner
from twrl_exp.config import make
from twrl_exp.errors import ConfigError
from twrl_exp.policy import Categorical, TanhNormal
from twrl_exp.protocols import Clock, Step
from twrl_exp.storage import ReplayBatch
from twrl_exp.update.targets import frozen_copy, soft_update

ONE = spaces.Box(-1.0, 1.0, (1,), np.float32)


def mlp(**kwargs):
    """The model group's factory, as ``model=mlp model.hidden_sizes=[16]`` makes it."""
    return partial(make, "model", "mlp", hidden_sizes=[16], **kwargs)


def update(option: str, **kwargs):
    """``update=<option>`` with the schema's defaults, ``kwargs`` on top, and no step budget."""
    return make("update", option, total_env_steps=None, seed=0, **kwargs)


# ---------------------------------------------------------------------------- exact pieces


def test_the_log_prob_a_policy_records_is_the_one_learning_recomputes() -> None:
    rng = np.random.default_rng(0)
    cat = Categorical(action_space=spaces.Discrete(3))
    logits = rng.normal(size=(5, 3)).astype(np.float32)
    actions, extras = cat.act(logits, rng, Clock())
    recomputed = cat.log_prob(torch.from_numpy(logits), torch.from_numpy(actions))
    np.testing.assert_allclose(extras["log_prob"], recomputed.numpy(), rtol=1e-5, atol=1e-6)
    normal = make(
        "policy", "normal", action_space=spaces.Box(-1, 1, (2,), np.float32), init_std=0.6
    )
    means = rng.normal(size=(5, 2)).astype(np.float32)
    actions, extras = normal.act(means, rng, Clock())
    recomputed = normal.log_prob(torch.from_numpy(means), torch.from_numpy(actions))
    np.testing.assert_allclose(
        extras["log_prob"], recomputed.detach().numpy(), rtol=1e-5, atol=1e-5
    )


def test_tanh_normal_log_prob_has_the_change_of_variables_correction() -> None:
    policy = TanhNormal(action_space=spaces.Box(-2.0, 2.0, (2,), np.float32))
    torch.manual_seed(0)
    outputs = torch.randn(6, 4)
    action, log_prob = policy.rsample(outputs)
    mean, log_std = outputs[:, :2], outputs[:, 2:].clamp(-5, 2)
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()),
        [torch.distributions.TanhTransform()],
    )
    expected = dist.log_prob(action.clamp(-1 + 1e-6, 1 - 1e-6)).sum(1)
    torch.testing.assert_close(log_prob, expected, rtol=1e-3, atol=1e-3)
    assert policy.env_actions(np.array([[-1.0, 1.0]])).tolist() == [[-2.0, 2.0]]


def test_soft_update_is_polyak_averaging_and_tau_one_copies() -> None:
    source, target = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = [p.clone() for p in target.parameters()]
    soft_update(target, source, 0.25)
    for t, b, s in zip(target.parameters(), before, source.parameters(), strict=True):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * s)
    soft_update(target, source, 1.0)
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        torch.testing.assert_close(t, s)


@pytest.mark.parametrize("double_q", [False, True])
def test_dqn_regresses_on_the_max_or_double_q_target(double_q: bool) -> None:
    torch.manual_seed(0)
    obs_space = spaces.Box(-1, 1, (3,), np.float32)
    q = make(
        "model",
        "mlp",
        observation_space=obs_space,
        num_outputs=2,
        hidden_sizes=[8],
        output_gain=1.0,
    )
    learner = update(
        "dqn",
        model=q,
        make_model=None,
        policy=make("policy", "egreedy", action_space=spaces.Discrete(2)),
        num_envs=1,
        lr=0.1,
        optimizer="sgd",
        double_q=double_q,
        loss="mse",
        max_grad_norm=None,
    ).learner
    with torch.no_grad():  # make the online and target nets disagree
        for p in learner.target.parameters():
            p.add_(0.3)
    rng = np.random.default_rng(0)
    batch = {
        "obs": rng.normal(size=(5, 3)).astype(np.float32),
        "actions": np.array([0, 1, 1, 0, 1]),
        "rewards": np.ones(5, np.float32),
        "discounts": np.array([0.9, 0.9, 0.0, 0.9, 0.9], np.float32),
        "next_obs": rng.normal(size=(5, 3)).astype(np.float32),
    }
    online, target = frozen_copy(q), frozen_copy(learner.target)
    with torch.no_grad():
        nxt = torch.from_numpy(batch["next_obs"])
        if double_q:
            best = online(nxt).argmax(1, keepdim=True)
            boot = target(nxt).gather(1, best).squeeze(1)
        else:
            boot = target(nxt).max(1).values
        y = torch.from_numpy(batch["rewards"]) + torch.from_numpy(batch["discounts"]) * boot
    taken = online(torch.from_numpy(batch["obs"]))[torch.arange(5), torch.tensor(batch["actions"])]
    expected = torch.mean((taken - y) ** 2)
    one = ReplayBatch(**{key: value[None] for key, value in batch.items()})  # 1 minibatch
    clock = Clock()
    assert learner.learn(one, clock)["loss"] == pytest.approx(expected.item(), rel=1e-5)
    assert clock.gradient_steps == 1


# ---------------------------------------------------------------------------- tiny problems


def bandit_step(features, actions, extras, reward) -> Step:
    n = len(reward)
    return Step(
        features=features,
        actions=actions,
        extras=extras,
        reward=reward,
        terminated=np.ones(n, bool),
        truncated=np.zeros(n, bool),
        valid=np.ones(n, bool),
        next_features=features,
        next_outputs=np.zeros((n, 1)),
        next_actions=actions,
    )


@pytest.mark.parametrize("option", ["ppo", "a2c"])
def test_actor_critics_learn_a_two_armed_bandit(option: str) -> None:
    """One-step episodes: action 1 pays 1, action 0 pays 0; p(a=1) must rise."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    policy = Categorical(action_space=spaces.Discrete(2))
    make_model = mlp()
    model = make_model(observation_space=ONE, num_outputs=2)
    rule = update(
        option,
        model=model,
        make_model=make_model,
        policy=policy,
        num_envs=8,
        n_steps=4,
        lr=0.01,
        lr_schedule="constant",  # the values this check was validated with
        ent_coef=0.0,
    )
    obs = np.zeros((8, 1), np.float32)
    clock = Clock()
    for _ in range(150):
        actions, extras = policy.act(model.outputs(obs), rng, clock)
        rule.storage.add(bandit_step(obs, actions, extras, (actions == 1).astype(float)))
        clock.env_steps += len(obs)  # as the agent counts them
        for batch in rule.storage.batches(clock):
            rule.learner.learn(batch, clock)
    p1 = torch.softmax(model(torch.zeros(1, 1)), 1)[0, 1].item()
    assert p1 > 0.9


@pytest.mark.parametrize("option", ["sac", "td3"])
def test_off_policy_actor_critics_find_the_best_continuous_action(option: str) -> None:
    """One-step episodes with reward -(a - 0.5)^2: the greedy action must approach 0.5."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    policy = make("policy", "tanh_normal" if option == "sac" else "deterministic", action_space=ONE)
    make_model = mlp()
    model = make_model(observation_space=ONE, num_outputs=policy.num_outputs)
    rule = update(
        option,
        model=model,
        make_model=make_model,
        policy=policy,
        num_envs=4,
        buffer_size=2000,
        batch_size=64,
        learning_starts=64,
        train_freq=1,
        gradient_steps=1,
        lr=3e-3,
        q_lr=None,  # critics at lr too, as this check was validated
        **({"target_policy_noise": 0.05, "policy_delay": 1} if option == "td3" else {}),
    )
    obs = np.zeros((4, 1), np.float32)
    clock = Clock()
    for _ in range(400):
        actions, extras = policy.act(model.outputs(obs), rng, clock)
        reward = -((policy.env_actions(actions)[:, 0] - 0.5) ** 2)
        rule.storage.add(bandit_step(obs, actions, extras, reward))
        clock.env_steps += len(obs)  # as the agent counts them
        for batch in rule.storage.batches(clock):
            rule.learner.learn(batch, clock)
    greedy, _ = policy.act(model.outputs(obs[:1]), rng, clock, greedy=True)
    # SAC's entropy bonus keeps its greedy action off 0.5 (0.14 to 0.20 over seeds 0-5, before
    # and after the seed tree); both start at 0, 0.5 away.
    assert abs(float(policy.env_actions(greedy)[0, 0]) - 0.5) < (0.25 if option == "sac" else 0.15)


# ---------------------------------------------------------------------------- composition


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["env=pendulum", "policy=normal", "update=dqn"], "update=dqn needs Discrete actions"),
        (["env=cartpole", "update=sac"], "policy=tanh_normal needs a bounded, flat Box"),
        (["env=pendulum", "policy=normal", "update=sac"], "policy=tanh_normal (its default)"),
        (["env=pendulum", "policy=normal", "update=td3"], "policy=deterministic (its default)"),
        (
            ["env=mountaincar", "model=tilecoding", "policy=categorical", "update=ppo"],
            "update=ppo needs a differentiable",
        ),
        (["env=cartpole", "policy=egreedy", "update=a2c"], "policy=categorical (Discrete"),
        (["env=mountaincar", "model=mlp", "update=td_lambda"], "model=tilecoding or model=table"),
    ],
)
def test_incompatible_choices_are_refused_in_one_sentence(make_cfg, overrides, fragment) -> None:
    cfg = make_cfg(*overrides, "monitor=none")
    with pytest.raises(ConfigError) as caught:
        build(cfg, evaluation=False)
    assert fragment in str(caught.value)
    assert str(caught.value).count(". ") == 0


@pytest.mark.parametrize(
    ("overrides", "policy", "model"),
    [
        (["env=pendulum", "update=sac"], "tanh_normal", "mlp"),
        (["env=pendulum", "update=td3"], "deterministic", "mlp"),
        (["env=cartpole", "update=dqn"], "egreedy", "mlp"),
        (["env=cartpole", "update=ppo"], "categorical", "mlp"),
        (["env=pendulum", "update=ppo"], "normal", "mlp"),
        (["env=mountaincar", "update=td_lambda"], "egreedy", "tilecoding"),
    ],
)
def test_an_update_brings_its_usual_policy_and_model(make_cfg, overrides, policy, model) -> None:
    cfg = make_cfg(*overrides)
    assert (cfg.policy.name, cfg.model.name) == (policy, model)


# ---------------------------------------------------------------------------- randomness, state


def returns_with(make_cfg, *overrides: str) -> list[float]:
    cfg = make_cfg(
        "env=cliffwalking",
        "train.max_env_steps=null",
        "train.max_episodes=60",
        "monitor=none",
        *overrides,
    )
    built = build(cfg)
    runner = make_runner(cfg, built)
    runner.run()
    built.close()
    return runner.history.returns


def test_evaluating_does_not_change_what_is_trained(make_cfg) -> None:
    """Greedy evaluation breaks ties at random: it must draw from its own generator."""
    quiet = returns_with(make_cfg, "eval.every_steps=null", "eval.final=false")
    evaluated = returns_with(make_cfg, "eval.every_steps=500", "eval.episodes=3")
    assert len(quiet) > 20
    assert evaluated == quiet


def test_a_checkpoint_holds_replay_optimizer_targets_schedule_and_rngs(make_cfg, tmp_path) -> None:
    overrides = [
        "env=cartpole",
        "update=dqn",
        "update.learning_starts=200",
        "update.train_freq=50",
        "update.gradient_steps=5",
        "policy.epsilon=1.0",
        "policy.exploration_fraction=0.5",
        "train.max_env_steps=1500",
        "monitor=none",
        "eval.every_steps=null",
        "eval.final=false",
    ]
    cfg = make_cfg(*overrides)
    built = build(cfg)
    runner = make_runner(cfg, built)
    runner.run()
    path = serialization.save(runner.state_dict(), tmp_path / "last.pt")
    saved = runner.agent
    fresh = build(cfg)
    restored = make_runner(cfg, fresh)
    restored.load_state_dict(serialization.load(path))
    agent = restored.agent
    assert agent.update.storage.size == saved.update.storage.size > 0
    np.testing.assert_array_equal(
        agent.update.storage.obs[: saved.update.storage.size],
        saved.update.storage.obs[: saved.update.storage.size],
    )
    for a, b in zip(
        agent.update.learner.target.parameters(),
        saved.update.learner.target.parameters(),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
    assert agent.clock == saved.clock
    assert agent.clock.gradient_steps == 5 * agent.clock.updates > 0
    state = agent.update.learner.optimizer.state_dict()["state"]
    assert state[0]["step"] == saved.update.learner.optimizer.state_dict()["state"][0]["step"]
    assert agent.update.learner.env_steps_at_sync == saved.update.learner.env_steps_at_sync
    epsilon = agent.policy.epsilon(agent.clock)
    assert epsilon == pytest.approx(saved.policy.epsilon(saved.clock))
    assert not math.isclose(epsilon, 1.0)
    assert agent.rng.random() == saved.rng.random()  # the RNG continues where it was
    built.close()
    fresh.close()
