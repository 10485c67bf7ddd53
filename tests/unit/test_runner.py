"""The env loop: next-step autoreset, episode accounting, budgets, evaluation, solve criteria."""

from __future__ import annotations

import numpy as np
import pytest

from twrl_exp.agent import Agent
from twrl_exp.config import make
from twrl_exp.errors import ConfigError
from twrl_exp.model import NoModel
from twrl_exp.policy import Greedy, RandomPolicy
from twrl_exp.protocols import Step, Update
from twrl_exp.runner import History, MonitorBase, Runner
from twrl_exp.update import NoLearning, no_update

CHAIN = "twrl_test/Chain-v0"  # 5 states, action 1 moves right, terminal at 4, truncation at 20


class Recorder:
    """A storage that records the flags of every step it is given, and never asks to learn."""

    def __init__(self) -> None:
        self.calls: list[dict[str, np.ndarray]] = []

    def add(self, step: Step) -> None:
        self.calls.append(
            {
                "terminated": step.terminated.copy(),
                "truncated": step.truncated.copy(),
                "episode_start": ~step.valid,
            }
        )

    def batches(self, clock):
        return iter(())

    def state_dict(self) -> dict:
        return {}


def chain_agent(env, best_action: int) -> tuple[Agent, Recorder]:
    policy = Greedy(action_space=env.single_action_space)
    model = make("model", "table", observation_space=env.single_observation_space, num_outputs=2)
    model.weights[:, best_action] = 1.0
    recorder = Recorder()
    update = Update(storage=recorder, learner=NoLearning())
    return Agent(model=model, policy=policy, update=update), recorder


def test_episode_accounting_skips_the_autoreset_step() -> None:
    env = make("env", id=CHAIN, num_envs=2)
    agent, _ = chain_agent(env, best_action=1)
    runner = Runner(env=env, agent=agent, seed=0, max_episodes=6)
    summary = runner.run()
    h = runner.history
    assert h.returns == [4.0] * 6
    assert h.lengths == [4] * 6
    assert h.env_steps == 24  # phantom reset steps are not env steps
    assert summary["best_mean_return"] == 4.0


def test_update_sees_truncation_terminated_and_episode_start_flags() -> None:
    env = make("env", id=CHAIN, num_envs=1)
    agent, recorder = chain_agent(env, best_action=0)  # never moves: truncated at 20
    Runner(env=env, agent=agent, seed=0, max_env_steps=21).run()
    calls = recorder.calls
    assert calls[19]["truncated"].tolist() == [True]
    assert calls[19]["terminated"].tolist() == [False]
    assert not calls[18]["truncated"].any()
    assert calls[20]["episode_start"].tolist() == [True]  # the reset step that follows
    assert not any(c["episode_start"].any() for c in calls[:20])


def test_solved_at_the_first_full_window_reaching_the_threshold() -> None:
    env = make("env", id=CHAIN, num_envs=1)
    agent, _ = chain_agent(env, best_action=1)
    runner = Runner(
        env=env,
        agent=agent,
        seed=0,
        max_episodes=50,
        reward_threshold=4.0,
        solve_window=10,
        stop_when_solved=True,
    )
    summary = runner.run()
    assert summary["episodes_to_solve"] == 10
    assert summary["env_steps_to_solve"] == 40
    assert runner.history.episodes == 10  # stopped once solved


def test_evaluation_runs_exactly_the_requested_episodes_greedily() -> None:
    env = make("env", id=CHAIN, num_envs=2)
    eval_env = make("env", id=CHAIN, num_envs=3)
    agent, _ = chain_agent(env, best_action=1)
    runner = Runner(
        env=env,
        agent=agent,
        eval_env=eval_env,
        seed=0,
        max_env_steps=40,
        eval_every_steps=20,
        eval_episodes=7,
    )
    runner.run()
    h = runner.history
    assert h.eval_steps == [20, 40]
    assert h.eval_means == [4.0, 4.0]


def test_seeded_random_runs_repeat_exactly() -> None:
    def returns() -> list[float]:
        env = make("env", id="CartPole-v1", num_envs=4)
        policy = RandomPolicy(action_space=env.single_action_space)
        model = NoModel(observation_space=env.single_observation_space, num_outputs=0)
        agent = Agent(model=model, policy=policy, update=no_update(), seed=3)
        runner = Runner(env=env, agent=agent, seed=3, max_episodes=20)
        runner.run()
        return runner.history.returns

    first = returns()
    assert first == returns()
    assert len(set(first)) > 1


def test_a_run_without_budget_is_refused() -> None:
    env = make("env", id=CHAIN, num_envs=1)
    agent, _ = chain_agent(env, best_action=1)
    with pytest.raises(ConfigError, match=r"train\.max_env_steps or train\.max_episodes"):
        Runner(env=env, agent=agent, seed=0)


def test_history_summary_uses_full_windows_once_available() -> None:
    h = History(returns=list(range(5)), trailing=[0.0, 0.5, 1.0, 2.0, 3.0])
    assert h.summary(window=3)["best_mean_return"] == 3.0
    assert h.summary(window=10)["best_mean_return"] == 3.0  # fewer episodes than a window


def test_a_stop_request_ends_the_run_at_a_step_boundary() -> None:
    env = make("env", id=CHAIN, num_envs=1)
    agent, _ = chain_agent(env, best_action=1)

    class StopAfterTwoEpisodes(MonitorBase):
        def episodes(self, runner: Runner, first: int) -> None:
            if runner.history.episodes >= 2:
                runner.stop_requested = True

    runner = Runner(
        env=env, agent=agent, seed=0, max_episodes=100, monitors=[StopAfterTwoEpisodes()]
    )
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert runner.history.episodes == 2
    assert runner.history.env_steps == 8
