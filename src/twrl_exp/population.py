"""A population's training loop: K members, each a single run's :class:`Runner` (its agent,
its envs, its monitors: an ordinary run's record), stepping together, their learners trained
as one stacked learner.

What keeps member ``m`` a copy of its single run:

- its env is its own vector env, reset with its own seed (its episodes are its single run's);
- its agent is its own: the same model call, policy, RNG streams (torch's included: its own
  generator continues the global state its single run would draw from), storage and clock;
- the order of events is the single run's. Within a vector step a single run's agent decides
  the next actions *before* its learner learns from the batch that step completed; here every
  member decides and hands its batch over, then all learn together, and the next decision of
  each reads the learned parameters (written back into its own networks, which its numpy
  acting path views). The learner's metrics then reach the member's runner as they would have
  within its step (:meth:`Runner.after_step`);
- members learn in step: a member whose storage handed over a batch steps no further (its env
  paused, its step not yet ended) until every member still training holds one, then all learn
  as one. Members reach their learns at different vector steps (an autoreset step counts no
  env step, so ``train_freq`` counters drift apart with episodes of different lengths); a
  learn for each would cost K rows each time. Waiting changes nothing a member computes;
- a member ends alone: its budget spent, stopped (pruned), diverged or failed. Its error is kept
  (``Member.error``); it stops stepping and its rows of the stacked learner stop learning; the
  others go on. An interruption (Ctrl-C) ends them all.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch

from twrl_exp.agent import Agent
from twrl_exp.errors import ConfigError
from twrl_exp.protocols import Clock, FeedbackStorage, Metrics, State
from twrl_exp.runner import History, Runner
from twrl_exp.storage import EpisodeBatch, ReplayBatch, RolloutBatch
from twrl_exp.update.actor_critic import A2C, PPO
from twrl_exp.update.dqn import DQN
from twrl_exp.update.off_policy_ac import SAC, TD3
from twrl_exp.update.reinforce import Reinforce
from twrl_exp.update.stacked_dqn import StackedDQN
from twrl_exp.update.stacked_off_policy import StackedSAC, StackedTD3
from twrl_exp.update.stacked_ppo import StackedPPO
from twrl_exp.update.stacked_reinforce import StackedReinforce
from twrl_exp.update.stacked_td import StackedTdLambda
from twrl_exp.update.td_lambda import TdLambda

Stacked = StackedPPO | StackedDQN | StackedSAC | StackedTD3 | StackedReinforce | StackedTdLambda

# What members of one population may differ in, besides ``seed`` and the policy's values (each
# member acts with its own policy): the values its rows of the stacked learner hold per member.
# Everything else of the config is the population's structure, shared by all its members.
VECTORISABLE: dict[str, frozenset[str]] = {
    "reinforce": frozenset(
        {"lr", "lr_final_fraction", "gamma", "ent_coef", "max_grad_norm", "baseline_decay"}
    ),
    "ppo": frozenset(
        {
            "lr",
            "lr_final_fraction",
            "gamma",
            "gae_lambda",
            "clip_coef",
            "clip_vloss_coef",
            "ent_coef",
            "vf_coef",
            "max_grad_norm",
            "target_kl",
        }
    ),
    "a2c": frozenset(
        {
            "lr",
            "lr_final_fraction",
            "gamma",
            "gae_lambda",
            "ent_coef",
            "vf_coef",
            "max_grad_norm",
        }
    ),
    "dqn": frozenset(
        {
            "lr",
            "gamma",
            "tau",
            "target_update_interval",
            "max_grad_norm",
            "priority_alpha",
            "priority_beta",
            "priority_eps",
        }
    ),
    "sac": frozenset({"lr", "q_lr", "gamma", "tau", "target_entropy", "max_grad_norm"}),
    "td3": frozenset(
        {
            "lr",
            "q_lr",
            "gamma",
            "tau",
            "target_policy_noise",
            "target_noise_clip",
            "max_grad_norm",
        }
    ),
    # Each member keeps its own learner (float64, bit-identical to its single run).
    "td_lambda": frozenset({"alpha", "lam", "gamma"}),
}
# The models and policies each rule's stacked learner takes.
_MODELS = {"td_lambda": frozenset({"tilecoding", "table"})}
_MLP = frozenset({"mlp"})
_POLICIES = {
    "reinforce": "categorical",
    "ppo": "categorical",
    "a2c": "categorical",
    "dqn": "egreedy",
    "sac": "tanh_normal",
    "td3": "deterministic",
    "td_lambda": "egreedy",
}


def alone_because(config: Mapping[str, Any]) -> str | None:
    """Why a run (its config as plain data) cannot join a population, in words; None where it
    can."""
    update = dict(config.get("update") or {})
    rule = str(update.get("name"))
    if rule not in VECTORISABLE:
        return f"update={rule} has no population form"
    model = (config.get("model") or {}).get("name")
    policy = (config.get("policy") or {}).get("name")
    if model not in _MODELS.get(rule, _MLP) or policy != _POLICIES[rule]:
        return f"update={rule} with model={model} and policy={policy} has no population form"
    if rule == "reinforce" and str(update.get("baseline")) == "value":
        return "update.baseline=value trains a value network of its own"
    if (config.get("policy") or {}).get("use_sde"):
        return "policy.use_sde=true keeps noise matrices per run and env"
    device = str(config.get("device", "cpu"))
    if device != "cpu" and not (device == "auto" and not torch.cuda.is_available()):
        return f"device={device}: populations train on the CPU"
    return None


def structure_key(config: Mapping[str, Any]) -> str | None:
    """What a run (its config as plain data) shares with the other members of a population it
    can join: its config without its seed, its policy's values and its rule's vectorisable
    values (:data:`VECTORISABLE`). None where it cannot join one (:func:`alone_because`)."""
    if alone_because(config) is not None:
        return None
    update = dict(config.get("update") or {})
    rule = str(update.get("name"))
    policy = (config.get("policy") or {}).get("name")
    own = ("seed", "policy", "update", "resume", "rerun")  # a member's own, or the run it goes on
    shared = {k: v for k, v in config.items() if k not in own}
    shared["policy"] = policy
    shared["update"] = {k: v for k, v in update.items() if k not in VECTORISABLE[rule]}
    return json.dumps(shared, sort_keys=True, default=str)


def varies_only_members(rule: str, keys: Sequence[str]) -> bool:
    """Whether configs of ``rule`` that differ only in ``keys`` (dotted, as a sweep names them)
    share a structure: a sweep over them can refill one population's slots."""
    if rule not in VECTORISABLE:
        return False
    for key in keys:
        group, _, name = key.lstrip("+~").partition(".")
        if key == "seed" or (group == "policy" and not name.startswith(("use_sde", "sde_"))):
            continue
        if group != "update" or name not in VECTORISABLE[rule]:
            return False
    return True


def _storage_shape(storage: Any) -> tuple[object, ...]:
    """What a storage's batches look like: a stacked learner takes members' batches of one
    shape (a rollout's ``[n_steps, num_envs, ...]``, a replay's minibatches)."""
    obs = getattr(storage, "obs", None)
    return (
        type(storage).__name__,
        tuple(obs.shape) if obs is not None and hasattr(storage, "n_steps") else None,
        getattr(storage, "batch_size", None),
        getattr(storage, "gradient_steps", None),
    )


class _Deferred:
    """Stands in for a member's learner inside its agent: keeps the batch its storage hands
    over, for the population to learn from with every other member's after the vector step.
    Its state is the member's own learner's, brought up to date from the stacked learner."""

    defers = True  # its agent decides again only once the population has learned

    def __init__(self, learner: Any) -> None:
        self.learner = learner
        self.pending: tuple[Any, Clock] | None = None
        self.sync: Callable[[], None] = lambda: None

    def learn(self, batch: Any, clock: Clock) -> Metrics | None:
        if self.pending is not None:
            raise RuntimeError("a member's storage handed over two batches in one vector step")
        self.pending = (batch, clock)
        return None

    def stats(self) -> Metrics:
        return dict(self.learner.stats())

    def state_dict(self) -> State:
        self.sync()
        return dict(self.learner.state_dict())

    def load_state_dict(self, state: State) -> None:
        self.learner.load_state_dict(state)


@dataclass(eq=False)
class Member:
    """One member: its single run's runner, and torch's RNG state right after its build (what
    its single run would go on drawing from)."""

    runner: Runner
    generator: torch.Generator
    summary: dict[str, float] | None = None  # set when it ended normally
    error: Exception | None = None  # what ended it otherwise
    metrics: list[Metrics] = field(default_factory=list)  # its learner's, in order
    ended: bool = False
    told: bool = False  # whether the population's ``on_end`` has heard it ended

    @property
    def agent(self) -> Agent[Any]:
        return self.runner.agent

    @property
    def history(self) -> History:
        return self.runner.history

    @staticmethod
    def after_build(runner: Runner) -> Member:
        """``runner``'s member, built just now (torch's global RNG is its build's)."""
        generator = torch.Generator()
        generator.set_state(torch.get_rng_state())
        runner.agent.torch_rng = generator
        return Member(runner=runner, generator=generator)


class Population:
    """``members`` (REINFORCE, PPO, A2C, DQN, SAC, TD3 or TD(lambda) agents of one structure)
    trained together."""

    def __init__(self, members: Sequence[Member]) -> None:
        self.members = list(members)
        shapes = {_storage_shape(m.agent.update.storage) for m in members}
        if len(shapes) > 1:
            raise ConfigError(
                f"population members differ in what their storages hand over ({sorted(shapes)}): "
                "members share n_steps, num_envs, batch_size and gradient_steps."
            )
        learners = [m.agent.update.learner for m in members]
        kinds = {type(learner) for learner in learners}
        if kinds in ({PPO}, {A2C}):
            self.stacked: Stacked = StackedPPO(
                learners,  # type: ignore[arg-type]
                [m.generator for m in members],
            )
        elif kinds == {SAC}:
            self.stacked = StackedSAC(learners, [m.generator for m in members])  # type: ignore[arg-type]
        elif kinds == {TD3}:
            self.stacked = StackedTD3(learners, [m.generator for m in members])  # type: ignore[arg-type]
        elif kinds == {DQN}:
            self.stacked = StackedDQN(learners)  # type: ignore[arg-type]
        elif kinds == {Reinforce}:
            self.stacked = StackedReinforce(learners)  # type: ignore[arg-type]
        elif kinds == {TdLambda}:
            self.stacked = StackedTdLambda(learners)  # type: ignore[arg-type]
        else:
            names = sorted(type(learner).__name__ for learner in learners)
            raise ConfigError(
                "a population trains update=reinforce, ppo, a2c, dqn, sac, td3 or td_lambda "
                "members, "
                f"not {names}."
            )
        self.deferred = [_Deferred(learner) for learner in learners]
        for m, member in enumerate(self.members):
            self._enlist(m, member, self.deferred[m])
        self.wall_time = 0.0

    def _enlist(self, m: int, member: Member, deferred: _Deferred) -> None:
        """``member``'s agent hands its batches to the population, slot ``m``."""
        member.agent.update = dataclasses.replace(member.agent.update, learner=deferred)
        member.agent.feedback = None  # told here, after the population has learned
        deferred.sync = partial(self.stacked.export_state, m)

    def replace(self, m: int, member: Member) -> None:
        """Slot ``m`` (its member ended) trains ``member`` from now on: a new run, its own
        networks, optimiser state, values, generator, env and clock."""
        learner = member.agent.update.learner
        takes = {
            StackedPPO: (PPO, A2C),
            StackedSAC: (SAC,),
            StackedTD3: (TD3,),
            StackedDQN: (DQN,),
            StackedReinforce: (Reinforce,),
            StackedTdLambda: (TdLambda,),
        }
        if not isinstance(learner, takes[type(self.stacked)]):
            raise ConfigError(
                f"a {type(self.stacked.members[0]).__name__} population cannot take a "
                f"{type(learner).__name__} member."
            )
        if isinstance(self.stacked, StackedDQN | StackedReinforce | StackedTdLambda):
            self.stacked.replace(m, learner)  # type: ignore[arg-type]
        else:
            self.stacked.replace(m, learner, member.generator)  # type: ignore[arg-type]
        self.members[m], self.deferred[m] = member, _Deferred(learner)
        self._enlist(m, member, self.deferred[m])

    def stop(self) -> None:
        """Stop every member at its next step (Ctrl-C): :meth:`run` raises KeyboardInterrupt."""
        for member in self.members:
            member.runner.stop_requested = True

    def run(self, on_end: Callable[[int, Member], Member | None] | None = None) -> None:
        """Train every member until it ends (see the module's docstring). ``on_end(m,
        member)`` hears of each member as soon as it ends and may give the member that takes
        its slot (a new run, not yet begun: it begins at once, and the others, holding their
        batches, wait for its first one, so that every learn serves every slot)."""
        started = time.perf_counter()
        if isinstance(self.stacked, StackedTdLambda):
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self._run_in_turn(on_end)
            self.wall_time = time.perf_counter() - started
            return
        held: set[int] = set()  # members whose batch waits for the others' (one learn)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for m in range(len(self.members)):
                self._begin(m)
            self._refill(on_end)
            while True:
                live = self._live()
                if not live:
                    break
                acting = [m for m in live if m not in held]
                for m in acting:
                    member = self.members[m]
                    self._guarded(member, member.runner.act_step)
                    if not member.ended and self.deferred[m].pending is not None:
                        held.add(m)
                for m in acting:
                    member = self.members[m]
                    if m not in held and not member.ended:
                        self._guarded(member, partial(member.runner.after_step, None))
                        self._end_if_spent(member)
                # A member holding a batch steps no further until every live member holds
                # one (or ended): then all learn as one, each at its own clock.
                if held and held.issuperset(self._live()):
                    learned = self._learn()
                    for m in sorted(held):
                        member = self.members[m]
                        if not member.ended:
                            self._guarded(member, member.runner.decide_again)
                            self._guarded(member, partial(member.runner.after_step, learned[m]))
                            self._end_if_spent(member)
                    held.clear()
                self._refill(on_end)
        self.wall_time = time.perf_counter() - started

    def _run_in_turn(self, on_end: Callable[[int, Member], Member | None] | None) -> None:
        """Members whose learns share no computation (TD(lambda)) train one after another,
        each from its first step to its end, and the member that takes its slot right after.
        Interleaving their steps would gain nothing and cost their tables the cache: measured,
        an 8 x 8 alpha x lambda grid of MountainCar took 83 s interleaved, 73 s in turn."""
        for m in range(len(self.members)):
            self._begin(m)
            while True:
                member = self.members[m]
                while not member.ended:
                    self._guarded(member, member.runner.act_step)
                    if member.ended:
                        break
                    learned = None
                    if self.deferred[m].pending is not None:
                        learned = self._learn_one(m)
                        self._guarded(member, member.runner.decide_again)
                    self._guarded(member, partial(member.runner.after_step, learned))
                    self._end_if_spent(member)
                self._refill(on_end)  # a successor in slot m begins at once
                if self.members[m] is member:
                    break

    def _learn_one(self, m: int) -> Metrics | None:
        """Member ``m`` learns from its batch alone, with its own learner (in turn)."""
        deferred = self.deferred[m]
        assert deferred.pending is not None
        (batch, clock), deferred.pending = deferred.pending, None
        result: Metrics | None = deferred.learner.learn(batch, clock)
        if result is not None:
            self.members[m].metrics.append(result)
        return result

    def _live(self) -> list[int]:
        """The slots whose member still trains."""
        return [m for m, member in enumerate(self.members) if not member.ended]

    def _begin(self, m: int) -> None:
        member = self.members[m]
        self._guarded(member, member.runner.begin)
        self._end_if_spent(member)

    def _refill(self, on_end: Callable[[int, Member], Member | None] | None) -> None:
        """Tell ``on_end`` of every member that ended since, and put the members it gives in
        their slots, begun now."""
        for m in range(len(self.members)):
            while (member := self.members[m]).ended and not member.told:
                member.told = True
                self.deferred[m].sync = lambda: None  # its own learner holds its final state
                successor = on_end(m, member) if on_end is not None else None
                if successor is None:
                    break
                self.replace(m, successor)
                self._begin(m)

    def _guarded(self, member: Member, call: Callable[[], Any]) -> None:
        """``call`` of one member; an error ends that member alone (Ctrl-C ends them all)."""
        if member.ended:
            return
        try:
            call()
        except Exception as exc:
            m = self.members.index(member)
            member.error, member.ended = exc, True
            self.deferred[m].pending = None
            self.stacked.export_state(m)

    def _end_if_spent(self, member: Member) -> None:
        if member.ended or not member.runner.spent():
            return
        m = self.members.index(member)
        self.stacked.export_state(m)
        try:
            member.summary = member.runner.end()
        except Exception as exc:
            member.error = exc
        member.ended = True

    def _learn(self) -> list[Metrics | None]:
        """Every member holding a batch learns from it, together; each slot's metrics."""
        learned: list[Metrics | None] = [None] * len(self.members)
        pending = [d.pending for d in self.deferred]
        for d in self.deferred:
            d.pending = None
        clocks = [m.agent.clock for m in self.members]
        batches = [None if p is None else p[0] for p in pending]
        if isinstance(self.stacked, StackedPPO):
            rollouts: list[RolloutBatch | None] = batches
            metrics = self.stacked.learn(rollouts, clocks)
        elif isinstance(self.stacked, StackedReinforce):
            episodes: list[EpisodeBatch | None] = batches
            metrics = self.stacked.learn(episodes, clocks)
        elif isinstance(self.stacked, StackedTdLambda):  # (its members learn in turn)
            raise RuntimeError("TD(lambda) members learn in turn, one by one (_learn_one)")
        else:
            replayed: list[ReplayBatch | None] = batches
            metrics = self.stacked.learn(replayed, clocks)
        self.stacked.write_back(with_state=False)  # acting reads the members' own networks
        for m, (member, held, result) in enumerate(
            zip(self.members, pending, metrics, strict=True)
        ):
            if held is None:
                continue
            storage = member.agent.update.storage
            # (the cheap check first: a Protocol's isinstance costs microseconds, per member
            # and learn, which TD(lambda)'s learn of every step would pay)
            if isinstance(self.stacked, StackedDQN) and isinstance(storage, FeedbackStorage):
                storage.feedback(held[0], self.stacked.feedback(m))
            if result is not None:
                member.metrics.append(result)
                learned[m] = result
        return learned
