"""A population's training loop (under construction: not yet reachable from ``train.py``, no
recording): K members, each an agent and a vector env built as a single run of its seed builds
them, stepping in lockstep; their learners trained as one stacked learner.

What keeps member ``m`` a copy of its single run:

- its env is its own vector env, reset with its own seed (its episodes are its single run's);
- its agent is its own: the same model call, policy, RNG streams, storage and clock;
- the order of events is the single run's. Within a vector step a single run's agent decides
  the next actions *before* its learner learns from the batch that step completed; here every
  member decides and hands its batch over, then all learn together, and the next decision of
  each reads the learned parameters (written back into its own networks, which its numpy
  acting path views);
- a member whose budget is spent stops stepping and learning; the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from twrl_exp import seeding
from twrl_exp.agent import Agent
from twrl_exp.errors import ConfigError
from twrl_exp.protocols import Clock, FeedbackStorage, Metrics, State, Update
from twrl_exp.storage import ReplayBatch, RolloutBatch
from twrl_exp.update.actor_critic import PPO
from twrl_exp.update.dqn import DQN
from twrl_exp.update.stacked_dqn import StackedDQN
from twrl_exp.update.stacked_ppo import StackedPPO


class _Deferred:
    """Stands in for a member's learner inside its agent: keeps the batch its storage hands
    over, for the population to learn from with every other member's after the vector step."""

    def __init__(self, learner: Any) -> None:
        self.learner = learner
        self.pending: tuple[Any, Clock] | None = None

    def learn(self, batch: Any, clock: Clock) -> Metrics | None:
        if self.pending is not None:
            raise RuntimeError("a member's storage handed over two batches in one vector step")
        self.pending = (batch, clock)
        return None

    def stats(self) -> Metrics:
        return dict(self.learner.stats())

    def state_dict(self) -> State:
        return dict(self.learner.state_dict())

    def load_state_dict(self, state: State) -> None:
        self.learner.load_state_dict(state)


@dataclass
class Member:
    """One member: what a single run of ``seed`` builds (its agent and its training env)."""

    seed: int
    agent: Agent[Any]
    env: Any
    max_env_steps: int
    generator: torch.Generator | None = None  # torch's state right after the build (PPO)
    returns: list[float] = field(default_factory=list)
    end_steps: list[int] = field(default_factory=list)
    metrics: list[Metrics] = field(default_factory=list)


class Population:
    """``members`` (PPO or DQN agents of one structure) trained together."""

    def __init__(self, members: Sequence[Member]) -> None:
        self.members = list(members)
        learners = [m.agent.update.learner for m in members]
        kinds = {type(learner) for learner in learners}
        if kinds == {PPO}:
            generators = [m.generator for m in members]
            if any(g is None for g in generators):
                raise ValueError("PPO members need torch's generator state after their build")
            self.stacked: StackedPPO | StackedDQN = StackedPPO(
                learners,  # type: ignore[arg-type]
                generators,  # type: ignore[arg-type]
            )
        elif kinds == {DQN}:
            self.stacked = StackedDQN(learners)  # type: ignore[arg-type]
        else:
            names = sorted(type(learner).__name__ for learner in learners)
            raise ConfigError(
                f"a population trains update=ppo or update=dqn members so far, not {names}."
            )
        self.deferred = [_Deferred(learner) for learner in learners]
        for member, deferred in zip(self.members, self.deferred, strict=True):
            member.agent.update = Update(storage=member.agent.update.storage, learner=deferred)
            member.agent.feedback = None  # told here, after the population has learned
        self.wall_time = 0.0

    def run(self) -> None:
        """Train every member to its budget (``max_env_steps``)."""
        started = time.perf_counter()
        members = self.members
        actions = []
        for member in members:
            obs, _ = member.env.reset(seed=seeding.integer(member.seed, seeding.Stream.ENV, 0))
            actions.append(member.agent.start(obs))
        n = members[0].env.num_envs
        ep_return = np.zeros((len(members), n))
        episode_start = np.zeros((len(members), n), bool)
        running = [True] * len(members)
        while any(running):
            for m, member in enumerate(members):
                if not running[m]:
                    continue
                obs, reward, terminated, truncated, _ = member.env.step(actions[m])
                live = ~episode_start[m]
                ep_return[m] += reward * live
                steps_before = member.agent.clock.env_steps
                actions[m], _ = member.agent.step(
                    obs, reward, terminated, truncated, episode_start[m]
                )
                episode_start[m] = terminated | truncated
                if np.count_nonzero(episode_start[m]):
                    ends = episode_start[m]
                    member.returns.extend(ep_return[m][ends].tolist())
                    member.end_steps.extend((steps_before + live.cumsum()[ends]).tolist())
                    ep_return[m][ends] = 0.0
            self._learn()
            for m, member in enumerate(members):
                running[m] = running[m] and member.agent.clock.env_steps < member.max_env_steps
        self.stacked.write_back(with_state=True)
        self.wall_time = time.perf_counter() - started

    def _learn(self) -> None:
        """Every member holding a batch learns from it, together."""
        pending = [d.pending for d in self.deferred]
        if all(p is None for p in pending):
            return
        for d in self.deferred:
            d.pending = None
        clocks = [m.agent.clock for m in self.members]
        batches = [None if p is None else p[0] for p in pending]
        if isinstance(self.stacked, StackedPPO):
            rollouts: list[RolloutBatch | None] = batches
            metrics = self.stacked.learn(rollouts, clocks)
        else:
            replayed: list[ReplayBatch | None] = batches
            metrics = self.stacked.learn(replayed, clocks)
        self.stacked.write_back(with_state=False)  # acting reads the members' own networks
        for member, held, learned in zip(self.members, pending, metrics, strict=True):
            if held is None:
                continue
            storage = member.agent.update.storage
            if isinstance(storage, FeedbackStorage) and isinstance(self.stacked, StackedDQN):
                storage.feedback(held[0], self.stacked.feedback(self.members.index(member)))
            if learned is not None:
                member.metrics.append(learned)
