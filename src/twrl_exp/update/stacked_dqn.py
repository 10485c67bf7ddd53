"""K DQN learners of one structure trained as one: the learning step of a DQN population.

Built from K :class:`~twrl_exp.update.dqn.DQN` learners, each made as a single run would make
it. Their Q-networks and target networks become :class:`~twrl_exp.model.stacked.StackedMLP` s
and one :class:`StackedOptimizer` steps them; each member keeps its own ``lr``, ``tau``,
``target_update_interval`` and ``max_grad_norm`` (``gamma`` and ``n_step`` live in its replay
storage's discounts). Member ``m``'s gradient steps are those its own DQN takes on its own
replayed minibatches (uniform or prioritised: the importance weights come with its batch), its
target network is refreshed on its own clock, and what it tells its storage (the TD errors that
prioritised replay turns into priorities) is its own.

Shared and checked: the network, ``double_q``, ``loss``, the optimiser and its options; the
minibatch size and the gradient steps per learn come from the storages (they are structural).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from twrl_exp.choices import QLoss
from twrl_exp.errors import ConfigError
from twrl_exp.model.mlp import MLP
from twrl_exp.model.stacked import StackedMLP
from twrl_exp.protocols import Clock, Metrics
from twrl_exp.storage import ReplayBatch
from twrl_exp.update.dqn import DQN
from twrl_exp.update.stacked_optim import StackedOptimizer, clip_grad_norms_, shared_structure

_SHARED = ("double_q", "loss")


def _rows(tensor: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """``tensor``'s rows ``rows`` (None: all of them)."""
    return tensor if rows is None else tensor.index_select(0, rows)


class StackedDQN:
    """``members`` (DQN learners of one structure) as one learner over K replayed batches."""

    def __init__(self, members: Sequence[DQN]) -> None:
        first = members[0]
        options = shared_structure(members, _SHARED)
        if not all(isinstance(member.q, MLP) for member in members):
            raise ConfigError("a DQN population needs model=mlp.")
        self.members = list(members)
        self.size = len(members)
        self.q = StackedMLP([m.q for m in members])  # type: ignore[misc]
        self.target = StackedMLP([m.target for m in members])  # type: ignore[misc]
        self.target.requires_grad_(False)
        self.optimizer = StackedOptimizer(
            type(first.optimizer).__name__.lower(),
            list(self.q.parameters()),
            [float(m.optimizer.param_groups[0]["lr"]) for m in members],
            0.0,
            options,
        )
        for m, member in enumerate(members):  # a resumed member goes on with its own state
            self.optimizer.import_member(m, member.optimizer)
        self.tau = torch.tensor([m.tau for m in members])
        self.max_grad_norm = torch.tensor(
            [float("inf") if m.max_grad_norm is None else m.max_grad_norm for m in members]
        )
        self.interval = [m.target_update_interval for m in members]
        self.synced_at = [m.env_steps_at_sync for m in members]
        self.td_errors: list[np.ndarray] = [np.zeros((0, 0), np.float32)] * self.size

    def replace(self, m: int, member: DQN) -> None:
        """Slot ``m`` trains ``member`` from now on (a refilled slot): its networks, target,
        optimiser state and values."""
        others = [self.members[i] for i in range(self.size) if i != m][:1]
        shared_structure([*others, member], _SHARED)
        self.members[m] = member
        self.q.load_member(m, member.q)  # type: ignore[arg-type]
        self.target.load_member(m, member.target)  # type: ignore[arg-type]
        self.optimizer.import_member(m, member.optimizer)
        self.tau[m] = member.tau
        self.max_grad_norm[m] = (
            float("inf") if member.max_grad_norm is None else member.max_grad_norm
        )
        self.interval[m] = member.target_update_interval
        self.synced_at[m] = member.env_steps_at_sync
        self.td_errors[m] = np.zeros((0, 0), np.float32)

    def learn(
        self, batches: Sequence[ReplayBatch | None], clocks: Sequence[Clock]
    ) -> list[Metrics | None]:
        """Member ``m`` learns from ``batches[m]`` at ``clocks[m]``; its metrics (those of its
        last gradient step, as :meth:`DQN.learn`), or ``None`` where it has no batch (it does
        not learn this time: parameters, optimiser, target and clock untouched).

        Members may hand over different numbers of minibatches (``gradient_steps=-1`` samples
        one per env step counted, and an autoreset step counts none): gradient step ``g``
        computes and moves only the members with a ``g``-th minibatch."""
        given = next(b for b in batches if b is not None)
        weighted = given.weights is not None
        counts = [0 if b is None else b.gradient_steps for b in batches]
        rows = [m for m in range(self.size) if counts[m]]  # the members with a batch
        filled = [b for b in batches if b is not None]
        longest = max(counts)

        def stack(name: str) -> torch.Tensor:  # [G, k, B, ...], zeros past a member's own G
            parts = []
            for b in filled:
                own = getattr(b, name)
                if len(own) < longest:
                    pad = np.zeros((longest - len(own), *own.shape[1:]), own.dtype)
                    own = np.concatenate([own, pad])
                parts.append(own)
            return torch.from_numpy(np.stack(parts, axis=1))

        obs, actions, rewards = stack("obs"), stack("actions").long(), stack("rewards")
        discounts, next_obs = stack("discounts"), stack("next_obs")
        weights = stack("weights") if weighted else None
        errors: list[list[np.ndarray]] = [[] for _ in range(self.size)]
        result: list[Metrics | None] = [None] * self.size
        for g in range(longest):
            # Only the members with a g-th minibatch are computed: a member without one keeps
            # its parameters, optimiser state, target and clock.
            stepping = [counts[m] > g for m in range(self.size)]
            members = [m for m in rows if stepping[m]]
            local = None
            if len(members) < len(rows):
                local = torch.tensor([rows.index(m) for m in members])
            active = None if len(members) == self.size else torch.tensor(stepping)
            subset = None if active is None else torch.tensor(members)

            figures, error = self._gradient_step(
                _rows(obs[g], local),
                _rows(actions[g], local),
                _rows(rewards[g], local),
                _rows(discounts[g], local),
                _rows(next_obs[g], local),
                None if weights is None else _rows(weights[g], local),
                active,
                subset,
            )
            for clock, steps in zip(clocks, stepping, strict=True):
                clock.gradient_steps += steps
            self._maybe_sync(clocks, stepping)
            values = {key: tensor.tolist() for key, tensor in figures.items()}
            for row, m in enumerate(members):
                errors[m].append(error[row])
                if g == counts[m] - 1:  # its last step: its metrics, as its single run's
                    result[m] = {
                        **{key: values[key][row] for key in values},
                        "target/syncs": float(clocks[m].env_steps // self.interval[m]),
                    }
        for m in rows:
            self.td_errors[m] = np.stack(errors[m])
        return result

    def feedback(self, m: int) -> np.ndarray:
        """Member ``m``'s ``|y - Q(s, a)|`` of its last batch (``[G, B]``), as
        :meth:`DQN.feedback`."""
        return self.td_errors[m]

    def _gradient_step(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        discounts: torch.Tensor,
        next_obs: torch.Tensor,
        weights: torch.Tensor | None,
        active: torch.Tensor | None,
        subset: torch.Tensor | None,
    ) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        """One gradient step of the members ``subset`` (all: None): tensors ``[k, B, ...]``,
        figures and errors ``[k, ...]``; ``active``: ``subset`` as a ``[K]`` mask."""
        with torch.no_grad():
            next_target = self.target(next_obs, subset)
            if self.members[0].double_q:
                best = self.q(next_obs, subset).argmax(dim=2, keepdim=True)
                bootstrap = next_target.gather(2, best).squeeze(2)
            else:
                bootstrap = next_target.max(dim=2).values
            targets = rewards + discounts * bootstrap
        q_taken = self.q(obs, subset).gather(2, actions.unsqueeze(2)).squeeze(2)
        if self.members[0].loss is QLoss.huber:
            per_row = nn.functional.smooth_l1_loss(q_taken, targets, reduction="none")
        else:
            per_row = nn.functional.mse_loss(q_taken, targets, reduction="none")
        if weights is not None:  # importance sampling corrects a prioritised sample
            per_row = weights * per_row
        loss = per_row.mean(dim=1)  # [k]: each member's own loss
        self.optimizer.zero_grad()
        loss.sum().backward()
        grad_norm = clip_grad_norms_(list(self.q.parameters()), self.max_grad_norm)
        self.optimizer.step(active)
        error = (targets - q_taken.detach()).abs().numpy()
        with torch.no_grad():
            q_mean = q_taken.mean(dim=1)
        norms = grad_norm if subset is None else grad_norm[subset]
        return {"loss": loss.detach(), "q/mean": q_mean, "grad_norm": norms}, error

    @torch.no_grad()
    def _maybe_sync(self, clocks: Sequence[Clock], learning: Sequence[bool]) -> None:
        """Each member's target refreshed every ``target_update_interval`` of its env steps."""
        due = [
            learning[m] and clock.env_steps - self.synced_at[m] >= self.interval[m]
            for m, clock in enumerate(clocks)
        ]
        if not any(due):
            return
        weight = torch.where(torch.tensor(due), self.tau, torch.zeros(()))
        for target, source in zip(self.target.parameters(), self.q.parameters(), strict=True):
            target.lerp_(source, weight.view(-1, *([1] * (target.dim() - 1))))
        for m, clock in enumerate(clocks):
            if due[m]:
                self.synced_at[m] = clock.env_steps

    def write_back(self, *, with_state: bool) -> None:
        """Every member's networks (what it acts with) and, ``with_state``, its optimiser
        state, target, sync step and last TD errors (what its checkpoint holds) into its own
        DQN."""
        self.q.write_back([m.q for m in self.members])  # type: ignore[misc]
        if with_state:
            for m in range(self.size):
                self.export_state(m)

    def export_state(self, m: int) -> None:
        """Member ``m``'s optimiser state, target network, sync step and last TD errors into
        its own DQN (its Q-network is written back after every learn)."""
        member = self.members[m]
        self.target.write_member(m, member.target)  # type: ignore[arg-type]
        self.optimizer.export_member(m, member.optimizer)
        member.env_steps_at_sync = self.synced_at[m]
        member.td_errors = self.td_errors[m]
