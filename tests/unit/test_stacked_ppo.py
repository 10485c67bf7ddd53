"""A PPO population's learning step: member m learns what its own PPO learns from its own
rollout (the learners built from the CLI's config, each with its own seed and values)."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from twrl_exp import seeding
from twrl_exp.build import build_agent
from twrl_exp.errors import ConfigError
from twrl_exp.protocols import Clock
from twrl_exp.storage import RolloutBatch
from twrl_exp.update.stacked_ppo import StackedPPO

SPACES = gym.make("CartPole-v1")
MEMBERS = [  # seed, then each member's own vectorisable values
    (0, ["update.lr=0.001", "update.clip_coef=0.2", "update.ent_coef=0.0"]),
    (1, ["update.lr=0.003", "update.clip_coef=0.1", "update.ent_coef=0.01", "update.gamma=0.9"]),
    (2, ["update.lr=0.0003", "update.gae_lambda=0.5", "update.target_kl=1e-7"]),
    (
        3,
        [
            "update.vf_coef=1.0",
            "update.max_grad_norm=0.1",
            "update.lr_final_fraction=0.5",
            "update.clip_vloss_coef=0.5",  # its own value clip range (with clip_vloss)
        ],
    ),
]
STRUCTURES = {
    "preset": [],  # the tuned CartPole preset: one minibatch of 256, 20 epochs, linear schedules
    "minibatches": [
        "update.num_minibatches=4",
        "update.update_epochs=3",
        "update.clip_vloss=true",
        "update.normalize_advantages=true",
        "update.clip_schedule=constant",
    ],
    "vtrace": ["update.value_estimator=vtrace", "update.update_epochs=2"],
    # value clipping under a linear clip schedule: the value range stays the members' own
    "value_clip": ["update.clip_vloss=true", "update.num_minibatches=2", "update.update_epochs=2"],
}


def member(make_cfg, seed: int, *overrides: str):
    """The learner a single run of this config builds, and torch's generator right after."""
    cfg = make_cfg("env=cartpole", "update=ppo", "policy=categorical", f"seed={seed}", *overrides)
    torch.manual_seed(seeding.integer(seed, seeding.Stream.TORCH))
    agent = build_agent(cfg, SPACES.observation_space, SPACES.action_space, cfg.env.num_envs)
    generator = torch.Generator()
    generator.set_state(torch.get_rng_state())
    return agent.update.learner, generator, cfg


def rollout(learner, t: int, n: int, rng: np.random.Generator) -> RolloutBatch:
    """A rollout with the member's own autoreset rows (``valid`` False) and episode ends."""
    obs = rng.normal(size=(t + 1, n, 4)).astype(np.float32)
    with torch.no_grad():
        logits = learner.model(torch.from_numpy(obs[:-1].reshape(t * n, 4)))
        actions = torch.distributions.Categorical(logits=logits).sample()
        log_prob = learner.policy.log_prob(logits, actions).view(t, n).double().numpy()
    valid = rng.random((t, n)) > 0.06
    terminated = (rng.random((t, n)) < 0.05) & valid
    truncated = (rng.random((t, n)) < 0.02) & valid
    return RolloutBatch(
        obs=obs[:-1],
        next_obs=obs[1:],
        actions=actions.view(t, n).numpy(),
        log_prob=log_prob,
        rewards=np.where(valid, rng.normal(1.0, 0.5, (t, n)), 0.0),
        terminated=terminated,
        ends=terminated | truncated | ~valid,
        valid=valid,
    )


@pytest.mark.parametrize("structure", list(STRUCTURES))
def test_each_member_learns_what_its_own_ppo_learns(make_cfg, structure: str) -> None:
    shared = STRUCTURES[structure]
    alone = [member(make_cfg, seed, *values, *shared) for seed, values in MEMBERS]
    together = [member(make_cfg, seed, *values, *shared) for seed, values in MEMBERS]
    t, n = together[0][2]["update"]["n_steps"], together[0][2].env.num_envs
    rng = np.random.default_rng(0)
    rollouts = [[rollout(learner, t, n, rng) for learner, _, _ in alone] for _ in range(2)]
    stacked = StackedPPO([m[0] for m in together], [m[1] for m in together])
    start = [5_000, 30_000, 61_000, 90_000]  # members at different points of their budgets

    single_metrics = []
    single_clocks = []
    for m, (learner, generator, _) in enumerate(alone):
        torch.set_rng_state(generator.get_state())
        clock = Clock(env_steps=start[m])
        single_metrics.append([learner.learn(r[m], clock) for r in rollouts])
        single_clocks.append(clock)
    clocks = [Clock(env_steps=s) for s in start]
    stacked_metrics = [stacked.learn(r, clocks) for r in rollouts]
    stacked.write_back(with_state=True)

    for m, (learner, _, _) in enumerate(alone):
        mine = together[m][0]
        for a, b in zip(learner.params, mine.params, strict=True):
            torch.testing.assert_close(
                b, a, rtol=0, atol=1e-5, msg=lambda text, m=m: f"member {m}: {text}"
            )
        assert clocks[m].gradient_steps == single_clocks[m].gradient_steps
        for j in range(2):
            expected, got = single_metrics[m][j], stacked_metrics[j][m]
            assert got is not None
            assert expected is not None
            assert set(got) == set(expected)
            for key in expected:
                assert got[key] == pytest.approx(expected[key], rel=1e-3, abs=1e-5), (m, j, key)
    untrained = member(make_cfg, 0, *MEMBERS[0][1], *shared)[0].params
    changed = [not torch.equal(a, b) for a, b in zip(alone[0][0].params, untrained, strict=True)]
    assert any(changed)  # the members did learn
    if structure == "preset":
        early = [metrics[0]["early_stop"] for metrics in single_metrics]
        assert early == [0.0, 0.0, 1.0, 0.0]  # target_kl stopped member 2 alone


def test_the_optimiser_state_moves_back_to_each_member(make_cfg) -> None:
    """After write_back, a member's own torch.optim state continues as the stack would."""
    together = [member(make_cfg, seed, *values) for seed, values in MEMBERS[:2]]
    stacked = StackedPPO([m[0] for m in together], [m[1] for m in together])
    rng = np.random.default_rng(1)
    batches = [rollout(m[0], 32, 8, rng) for m in together]
    stacked.learn(batches, [Clock(), Clock()])
    stacked.write_back(with_state=True)
    state = together[1][0].optimizer.state_dict()["state"]
    assert int(state[0]["step"]) == 20  # 20 epochs of one minibatch
    torch.testing.assert_close(
        state[0]["exp_avg"], stacked.optimizer.state[0]["exp_avg"][1], rtol=0, atol=0
    )


def test_structural_differences_are_refused_in_one_sentence(make_cfg) -> None:
    a = member(make_cfg, 0)
    b = member(make_cfg, 1, "update.update_epochs=3")
    with pytest.raises(ConfigError, match=r"member 1 has update\.update_epochs=3, member 0 20"):
        StackedPPO([a[0], b[0]], [a[1], b[1]])
    c = member(make_cfg, 1, "model.hidden_sizes=[32]")
    with pytest.raises(ConfigError, match="member 1 has the network"):
        StackedPPO([a[0], c[0]], [a[1], c[1]])
    d = copy.deepcopy(a)
    e = member(make_cfg, 2, "update.optimizer_kwargs.eps=1e-8")
    with pytest.raises(ConfigError, match="another optimiser"):
        StackedPPO([d[0], e[0]], [d[1], e[1]])
