"""One clock: env steps without the autoreset step, episodes, learner calls and gradient steps,
counted once by the agent and read by learners, policies and schedules."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from tests.envs import ChainEnv
from twrl_exp.agent import Agent
from twrl_exp.build import build, make_runner
from twrl_exp.config import make
from twrl_exp.protocols import Clock
from twrl_exp.runner import Runner


class CountedChain(ChainEnv):
    """The chain, counting the steps it really takes (a vector env resets it instead of
    stepping it on the autoreset step)."""

    steps = 0

    def step(self, action: Any):
        CountedChain.steps += 1
        return super().step(action)


gym.register("twrl_test/CountedChain-v0", entry_point=CountedChain, max_episode_steps=12)


def test_the_autoreset_step_is_counted_by_no_clock() -> None:
    """Random-ish behaviour on the chain ends episodes by termination and by truncation; every
    clock equals the steps the envs really took."""
    env = make("env", id="twrl_test/CountedChain-v0", num_envs=3, vectorization="sync")
    policy = make(
        "policy",
        "egreedy",
        action_space=env.single_action_space,
        total_env_steps=2000,
        epsilon=1.0,
        exploration_fraction=0.5,
        final_epsilon=0.5,
    )
    model = make("model", "table", observation_space=env.single_observation_space, num_outputs=2)
    update = make("update", "td_lambda", model=model, policy=policy, num_envs=3)
    agent = Agent(model=model, policy=policy, update=update, seed=1)
    CountedChain.steps = 0
    runner = Runner(env=env, agent=agent, seed=1, max_env_steps=2000)
    runner.run()
    h, clock = runner.history, agent.clock
    lengths = np.array(h.lengths)
    assert (lengths < 12).any()  # terminated
    assert (lengths == 12).any()  # truncated
    assert clock.env_steps == h.env_steps == CountedChain.steps >= 2000
    assert clock.episodes == h.episodes == len(lengths) > 50
    vector_steps = clock.updates  # TD(lambda) learns once per vector step
    autoresets = vector_steps * 3 - clock.env_steps  # one after each episode but the last few
    assert h.episodes - 3 <= autoresets <= h.episodes
    assert h.updates == clock.updates == h.gradient_steps == clock.gradient_steps
    assert policy.epsilon(clock) == 0.5  # the schedule read the same clock


def test_the_schedules_read_the_clock_the_agent_advanced() -> None:
    env = make("env", id="twrl_test/CountedChain-v0", num_envs=2, vectorization="sync")
    policy = make("policy", "categorical", action_space=env.single_action_space)
    model = make("model", "mlp", observation_space=env.single_observation_space, num_outputs=2)
    update = make(
        "update",
        "reinforce",
        model=model,
        policy=policy,
        num_envs=2,
        total_env_steps=600,
        steps_per_batch=50,
        lr_schedule="linear",
        lr_final_fraction=0.0,
    )
    agent = Agent(model=model, policy=policy, update=update, seed=0)
    CountedChain.steps = 0
    runner = Runner(env=env, agent=agent, seed=0, max_env_steps=600)
    runner.run()
    lr = update.learner.optimizer.param_groups[0]["lr"]
    assert agent.clock.env_steps == CountedChain.steps
    assert agent.clock.updates > 3
    # Set at the last batch, which came at most one batch before the end of the budget.
    progress_then = 1.0 - lr / update.learner.lr
    assert 0.8 < progress_then <= min(1.0, agent.clock.env_steps / 600)


RULES = {
    # option: (overrides, gradient steps per learner call)
    "reinforce": (["update=reinforce", "update.steps_per_batch=500"], 1),
    "a2c": (["update=a2c"], 1),
    "ppo": (
        [
            "update=ppo",
            "update.n_steps=32",
            "update.update_epochs=2",
            "update.num_minibatches=4",
            "update.target_kl=null",
        ],
        8,
    ),
    "dqn": (
        [
            "update=dqn",
            "model.hidden_sizes=[16]",
            "train.max_env_steps=1000",
            "update.learning_starts=500",
            "update.batch_size=32",
            "update.train_freq=4",
            "update.gradient_steps=4",
        ],
        4,
    ),
    "td_lambda": (["env=mountaincar", "update=td_lambda"], 1),
    "sac": (
        [
            "env=pendulum",
            "update=sac",
            "model.hidden_sizes=[16]",
            "update.learning_starts=200",
            "update.batch_size=32",
            "update.gradient_steps=2",
            "train.max_env_steps=600",
        ],
        2,
    ),
    "none": (["model=none", "policy=random", "update=none"], 0),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_updates_count_learner_calls_and_gradient_steps_count_gradient_steps(
    make_cfg, rule: str
) -> None:
    overrides, per_call = RULES[rule]
    cfg = make_cfg(
        "train.max_env_steps=2000",
        "monitor=none",
        "eval.every_steps=null",
        "eval.final=false",
        *overrides,
    )
    built = build(cfg, evaluation=False)
    runner = make_runner(cfg, built)
    runner.run()
    built.close()
    h, clock = runner.history, runner.agent.clock
    assert (h.env_steps, h.updates, h.gradient_steps) == (
        clock.env_steps,
        clock.updates,
        clock.gradient_steps,
    )
    assert clock.gradient_steps == per_call * clock.updates
    assert clock.updates > 0 or rule == "none"
    if rule == "td_lambda":  # every vector step, one env: each env step and each autoreset
        assert clock.env_steps < clock.updates <= clock.env_steps + clock.episodes


def test_a_clock_saves_and_loads_its_counts() -> None:
    clock = Clock(env_steps=7, episodes=2, updates=3, gradient_steps=12)
    again = Clock()
    again.load_state_dict(clock.state_dict())
    assert again == clock
    assert Clock(env_steps=500).progress(1000) == 0.5
    assert Clock(env_steps=5000).progress(1000) == 1.0
    assert Clock(env_steps=5000).progress(None) == 0.0
