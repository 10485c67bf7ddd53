"""K REINFORCE learners of one structure trained as one: the learning step of a REINFORCE
population.

Built from K :class:`~twrl_exp.update.reinforce.Reinforce` learners, each made as a single run
would make it. Their policy networks become one :class:`~twrl_exp.model.stacked.StackedMLP` and
one :class:`StackedOptimizer` steps them; each member keeps its own ``lr`` and its schedule's
end, ``gamma``, ``ent_coef``, ``max_grad_norm`` and ``baseline_decay``.

Member ``m``'s update is the one its own learner makes on its own batch of whole episodes: its
returns and advantages come from its own learner (its time-dependent baseline is its own
state), and its batch holds as many steps as its episodes do, so members' batches differ in
length: each is padded to the longest, and every mean is taken over the member's own steps (a
mask). Members hand over their batches at different env steps (whole episodes); the population
makes a member that holds one wait until every member does (:mod:`twrl_exp.population`).

The structure is shared and checked: the network, ``baseline`` (``none`` or ``average``: a
learned value baseline has a network and optimiser of its own, not stacked),
``normalize_advantages``, the optimiser and its options, the schedule's shape. Categorical
policies only, as for PPO.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from twrl_exp.choices import Baseline
from twrl_exp.errors import ConfigError
from twrl_exp.model.mlp import MLP
from twrl_exp.model.stacked import StackedMLP
from twrl_exp.policy.gradient import Categorical
from twrl_exp.protocols import Clock, Metrics
from twrl_exp.storage import EpisodeBatch
from twrl_exp.update.reinforce import Reinforce
from twrl_exp.update.stacked_optim import StackedOptimizer, clip_grad_norms_, shared_structure

_SHARED = ("baseline", "normalize_advantages", "lr_schedule", "total_env_steps")


def _check(member: Reinforce) -> None:
    if not isinstance(member.policy, Categorical) or list(member.policy.parameters()):
        raise ConfigError(
            "a REINFORCE population needs policy=categorical (a Normal policy's log_std is "
            "not stacked yet)."
        )
    if not isinstance(member.model, MLP):
        raise ConfigError("a REINFORCE population needs model=mlp.")
    if member.baseline is Baseline.value:
        raise ConfigError(
            "a REINFORCE population takes update.baseline=none or average (a learned value "
            "baseline is not stacked yet)."
        )


class StackedReinforce:
    """``members`` (REINFORCE learners of one structure) as one learner over K batches."""

    def __init__(self, members: Sequence[Reinforce]) -> None:
        options = shared_structure(members, _SHARED)
        for member in members:
            _check(member)
        self.members = list(members)
        self.size = len(members)
        self.policy = members[0].policy
        self.actor = StackedMLP([m.model for m in members])  # type: ignore[misc]
        self.params = list(self.actor.parameters())
        name = type(members[0].optimizer).__name__.lower()
        self.optimizer = StackedOptimizer(name, self.params, [m.lr for m in members], 0.0, options)
        for m, member in enumerate(members):  # a resumed member goes on with its own state
            self.optimizer.import_member(m, member.optimizer)
        self.ent_coef = torch.tensor([m.ent_coef for m in members], dtype=torch.float32)
        self.max_grad_norm = torch.tensor(
            [float("inf") if m.max_grad_norm is None else m.max_grad_norm for m in members]
        )

    def replace(self, m: int, member: Reinforce) -> None:
        """Slot ``m`` trains ``member`` from now on (a refilled slot): its network, optimiser
        state and values."""
        others = [self.members[i] for i in range(self.size) if i != m][:1]
        shared_structure([*others, member], _SHARED)
        _check(member)
        self.members[m] = member
        self.actor.load_member(m, member.model)  # type: ignore[arg-type]
        self.optimizer.import_member(m, member.optimizer)
        self.ent_coef[m] = member.ent_coef
        self.max_grad_norm[m] = (
            float("inf") if member.max_grad_norm is None else member.max_grad_norm
        )

    def learn(
        self, batches: Sequence[EpisodeBatch | None], clocks: Sequence[Clock]
    ) -> list[Metrics | None]:
        """Member ``m`` learns from ``batches[m]`` at ``clocks[m]`` (one gradient step, as
        :meth:`Reinforce.learn`); its metrics, or ``None`` where it has no batch (parameters,
        optimiser state and clock untouched)."""
        k = self.size
        own: list[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]] | None] = []
        for member, batch in zip(self.members, batches, strict=True):
            if batch is None:
                own.append(None)
                continue
            advantages, stats = member.batch_advantages(batch)
            own.append((batch.obs, batch.actions, advantages, stats))
        counts = [0 if o is None else len(o[0]) for o in own]
        width = max(max(counts), 1)
        given = next(o for o in own if o is not None)
        obs = np.zeros((k, width, *given[0].shape[1:]), given[0].dtype)
        actions = np.zeros((k, width, *given[1].shape[1:]), given[1].dtype)
        advantages = np.zeros((k, width), np.float32)
        mask = np.zeros((k, width), np.float32)
        for m, found in enumerate(own):
            if found is not None:
                n = counts[m]
                obs[m, :n], actions[m, :n] = found[0], found[1]
                advantages[m, :n] = found[2]  # float32, as the single run's .float()
                mask[m, :n] = 1.0
        lrs = [member.lr_at(clock) for member, clock in zip(self.members, clocks, strict=True)]
        self.optimizer.lr = torch.tensor(lrs, dtype=torch.float64)
        active = torch.tensor([c > 0 for c in counts])
        weight = torch.from_numpy(mask)
        count = weight.sum(1).clamp(min=1.0)
        outputs = self.actor(torch.from_numpy(obs))
        flat = outputs.reshape(k * width, -1)
        log_prob = self.policy.log_prob(flat, torch.from_numpy(actions).reshape(k * width))
        log_prob = log_prob.view(k, width)
        policy_loss = -(log_prob * torch.from_numpy(advantages) * weight).sum(1) / count
        entropy = (self.policy.entropy(flat).view(k, width) * weight).sum(1) / count
        loss = policy_loss - self.ent_coef * entropy
        self.optimizer.zero_grad()
        (loss * active.float()).sum().backward()
        grad_norm = clip_grad_norms_(self.params, self.max_grad_norm)
        self.optimizer.step(active)
        losses, entropies, norms = loss.tolist(), entropy.tolist(), grad_norm.tolist()
        result: list[Metrics | None] = [None] * k
        for m, (member, batch, clock) in enumerate(zip(self.members, batches, clocks, strict=True)):
            found = own[m]
            if batch is None or found is None:
                continue
            clock.gradient_steps += 1
            result[m] = {
                "loss": losses[m],
                "policy/entropy": entropies[m],
                "grad_norm": norms[m],
                "lr": lrs[m],
                **found[3],
                **member.batch_metrics(batch, clock),
            }
        return result

    def write_back(self, *, with_state: bool) -> None:
        """Every member's network (what it acts with) and, ``with_state``, its optimiser state
        (what its checkpoint holds) into its own learner."""
        self.actor.write_back([m.model for m in self.members])  # type: ignore[misc]
        if with_state:
            for m in range(self.size):
                self.export_state(m)

    def export_state(self, m: int) -> None:
        """Member ``m``'s optimiser state into its own learner (its network is written back
        after every learn; its baseline state is its own learner's already)."""
        self.optimizer.export_member(m, self.members[m].optimizer)
