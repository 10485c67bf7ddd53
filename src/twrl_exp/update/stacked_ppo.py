"""K PPO (or A2C) learners of one structure trained as one: the learning step of a PPO or A2C
population.

Built from K :class:`~twrl_exp.update.actor_critic.PPO` learners, each made as a single run
would make it (its seed's networks, its own settings). Their actors and critics become
:class:`~twrl_exp.model.stacked.StackedMLP` s and one :class:`StackedOptimizer` steps them all;
each member keeps its own vectorisable values (``lr`` and its schedule's end, ``gamma``,
``gae_lambda``, ``clip_coef``, ``clip_vloss_coef``, ``ent_coef``, ``vf_coef``,
``max_grad_norm``, ``target_kl``) and its own torch generator for the minibatch order.

Member ``m``'s update is the update its own PPO makes on its own rollout:

- its advantages are computed from its rollout alone (GAE or V-trace with its ``gamma`` and
  ``gae_lambda``) over its valid rows only, so members whose rollouts hold different numbers of
  valid rows (autoreset steps are not transitions) have minibatches of different sizes: each
  is padded to the largest and every mean is taken over the member's own rows (a mask);
- its minibatch order is drawn from its generator as the single run draws it from torch's;
- a member that stops early (``target_kl``) or has no valid row takes no optimiser step (its
  parameters and optimiser state are frozen, as :class:`StackedOptimizer` does).

A2C members are PPO members with one epoch of one minibatch, taken in order (no draw), the
plain policy-gradient loss ``-(A log pi)`` and an unclipped value loss: what
:meth:`A2C.learn <twrl_exp.update.actor_critic.A2C.learn>` computes, with its metrics.

The structure is shared and checked: networks, ``update_epochs``, ``num_minibatches``,
``clip_vloss``, ``normalize_advantages``, the value estimator, the optimiser and its options,
the schedules' shapes. Categorical policies only, so far (a Normal policy's ``log_std`` would
need its own stack).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from twrl_exp.choices import Schedule, ValueEstimator
from twrl_exp.errors import ConfigError
from twrl_exp.model.mlp import MLP
from twrl_exp.model.stacked import StackedMLP
from twrl_exp.policy.gradient import Categorical
from twrl_exp.protocols import Clock, Metrics
from twrl_exp.returns import gae, vtrace
from twrl_exp.storage import RolloutBatch
from twrl_exp.update.actor_critic import A2C, PPO
from twrl_exp.update.checks import linear_lr
from twrl_exp.update.stacked_optim import StackedOptimizer, clip_grad_norms_, shared_structure

_SHARED = (
    "update_epochs",
    "num_minibatches",
    "clip_vloss",
    "normalize_advantages",
    "value_estimator",
    "lr_schedule",
    "clip_schedule",
    "total_env_steps",
)
_SHARED_A2C = ("normalize_advantages", "value_estimator", "lr_schedule", "total_env_steps")
_PPO_ONLY = ("approx_kl", "clip_fraction", "clip_coef", "early_stop")


class StackedPPO:
    """``members`` (PPO learners of one structure) as one learner over K rollouts."""

    def __init__(self, members: Sequence[PPO | A2C], generators: Sequence[torch.Generator]) -> None:
        if len(generators) != len(members):
            raise ValueError("one generator per member")
        first = members[0]
        self.a2c = isinstance(first, A2C)
        if len({type(m) for m in members}) != 1:
            raise ConfigError("a population's members share their rule (all ppo or all a2c).")
        options = shared_structure(members, _SHARED_A2C if self.a2c else _SHARED)
        for member in members:
            if not isinstance(member.policy, Categorical) or list(member.policy.parameters()):
                raise ConfigError(
                    "a PPO population needs policy=categorical (a Normal policy's log_std is "
                    "not stacked yet)."
                )
            if not isinstance(member.model, MLP) or not isinstance(member.critic, MLP):
                raise ConfigError("a PPO population needs model=mlp.")
        self.members = list(members)
        self.generators = list(generators)
        self.size = len(members)
        self.policy = first.policy
        self.actor = StackedMLP([m.model for m in members])  # type: ignore[misc]
        self.critic = StackedMLP([m.critic for m in members])  # type: ignore[misc]
        name = type(first.optimizer).__name__.lower()
        self.params = [*self.actor.parameters(), *self.critic.parameters()]
        self.optimizer = StackedOptimizer(name, self.params, [m.lr for m in members], 0.0, options)
        for m, member in enumerate(members):  # a resumed member goes on with its own state
            self.optimizer.import_member(m, member.optimizer)

        def vector(values: Sequence[float | None], missing: float) -> torch.Tensor:
            return torch.tensor([missing if v is None else v for v in values], dtype=torch.float64)

        self.clip_coef = vector([getattr(m, "clip_coef", None) for m in members], 0.0)
        self.clip_vloss_coef = vector([getattr(m, "clip_vloss_coef", None) for m in members], 0.0)
        self.ent_coef = vector([m.ent_coef for m in members], 0.0).float()
        self.vf_coef = vector([m.vf_coef for m in members], 0.0).float()
        self.max_grad_norm = vector([m.max_grad_norm for m in members], float("inf"))
        self.target_kl = [getattr(m, "target_kl", None) for m in members]
        # A2C: one epoch of one minibatch, in order; PPO: the members' own settings.
        self.epochs = 1 if self.a2c else int(first.update_epochs)  # type: ignore[union-attr]
        self.minibatches = 1 if self.a2c else int(first.num_minibatches)  # type: ignore[union-attr]

    def replace(self, m: int, member: PPO | A2C, generator: torch.Generator) -> None:
        """Slot ``m`` trains ``member`` from now on (a refilled slot): its networks, optimiser
        state, values and generator."""
        if type(member) is not type(self.members[0]):
            raise ConfigError("a population's members share their rule (all ppo or all a2c).")
        others = [self.members[i] for i in range(self.size) if i != m][:1]
        shared_structure([*others, member], _SHARED_A2C if self.a2c else _SHARED)
        self.members[m], self.generators[m] = member, generator
        self.actor.load_member(m, member.model)  # type: ignore[arg-type]
        self.critic.load_member(m, member.critic)  # type: ignore[arg-type]
        self.optimizer.import_member(m, member.optimizer)
        clip_coef = getattr(member, "clip_coef", None)
        self.clip_coef[m] = 0.0 if clip_coef is None else clip_coef
        clip_vloss_coef = getattr(member, "clip_vloss_coef", None)
        self.clip_vloss_coef[m] = 0.0 if clip_vloss_coef is None else clip_vloss_coef
        self.ent_coef[m] = 0.0 if member.ent_coef is None else member.ent_coef
        self.vf_coef[m] = 0.0 if member.vf_coef is None else member.vf_coef
        self.max_grad_norm[m] = (
            float("inf") if member.max_grad_norm is None else member.max_grad_norm
        )
        self.target_kl[m] = getattr(member, "target_kl", None)

    # -- the learning step -----------------------------------------------------------------

    def learn(
        self, batches: Sequence[RolloutBatch | None], clocks: Sequence[Clock]
    ) -> list[Metrics | None]:
        """Member ``m`` learns from ``batches[m]`` at ``clocks[m]``; its metrics, or ``None``
        where its rollout held no transition (as :meth:`PPO.learn`) or it has no batch (it
        does not learn this time: parameters, optimiser, generator and clock untouched)."""
        given = next(b for b in batches if b is not None)
        empty = RolloutBatch(
            **{name: np.zeros_like(getattr(given, name)) for name in given.__dataclass_fields__}
        )
        data, counts = self._advantages([empty if b is None else b for b in batches])
        k = self.size
        first = self.members[0]
        progress = torch.tensor([c.progress(first.total_env_steps) for c in clocks])
        lrs = [
            linear_lr(m.lr, m.lr_final_fraction, float(p))
            if first.lr_schedule is Schedule.linear
            else m.lr
            for m, p in zip(self.members, progress, strict=True)
        ]
        self.optimizer.lr = torch.tensor(lrs, dtype=torch.float64)
        linear_clip = getattr(first, "clip_schedule", None) is Schedule.linear
        clip = self.clip_coef * (1.0 - progress.double() if linear_clip else 1.0)
        clip = clip.clamp(min=1e-8)
        minibatch = [max(1, int(c) // self.minibatches) for c in counts]
        steps = [
            (int(c) - mb) // mb + 1 if c else 0 for c, mb in zip(counts, minibatch, strict=True)
        ]
        width = max(minibatch)
        learning = torch.tensor([bool(c) for c in counts])
        stopped = torch.zeros(k, dtype=torch.bool)
        totals: list[dict[str, list[float]]] = [{} for _ in range(k)]
        for _ in range(self.epochs):
            # Drawn only by members still learning: a member that stopped early draws no more
            # orders, as its single run's loop does not. A2C draws none: its rows in order.
            orders = [
                (torch.arange(c) if self.a2c else torch.randperm(c, generator=g)).numpy()
                if c and not done
                else np.zeros(0, dtype=np.int64)
                for c, g, done in zip(counts, self.generators, stopped.tolist(), strict=True)
            ]
            last: list[dict[str, float] | None] = [None] * k
            for j in range(max(steps)):
                # Built as numpy, one tensor each: per-member tensor writes cost ~5 us apiece.
                index = np.zeros((k, width), dtype=np.int64)
                mask = np.zeros((k, width), dtype=bool)
                live = (learning & ~stopped).tolist()
                for m in range(k):
                    if j >= steps[m] or not live[m]:
                        live[m] = False
                        continue
                    rows = orders[m][j * minibatch[m] : (j + 1) * minibatch[m]]
                    index[m, : len(rows)] = rows
                    mask[m, : len(rows)] = True
                active = torch.tensor(live)
                figures = self._minibatch(
                    data, torch.from_numpy(index), torch.from_numpy(mask), active, clip
                )
                for m in range(k):
                    if live[m]:
                        member_figures = {key: values[m] for key, values in figures.items()}
                        clocks[m].gradient_steps += 1
                        last[m] = member_figures
                        for key, value in member_figures.items():
                            totals[m].setdefault(key, []).append(value)
            for m, limit in enumerate(self.target_kl):
                figures_m = last[m]
                if limit is not None and figures_m is not None and figures_m["approx_kl"] > limit:
                    stopped[m] = True
        return [
            self._metrics(m, totals[m], lrs[m], float(clip[m]), bool(stopped[m]), data, counts)
            if counts[m]
            else None
            for m in range(k)
        ]

    def _advantages(
        self, batches: Sequence[RolloutBatch]
    ) -> tuple[dict[str, torch.Tensor], list[int]]:
        """Every member's valid rows, padded to the longest: ``[K, S, ...]`` tensors."""
        t, n = batches[0].rewards.shape
        obs = torch.from_numpy(np.stack([b.obs.reshape(t * n, -1) for b in batches]))
        next_obs = torch.from_numpy(np.stack([b.next_obs.reshape(t * n, -1) for b in batches]))
        with torch.no_grad():
            values = self.critic(obs).view(self.size, t, n).double().numpy()
            next_values = self.critic(next_obs).view(self.size, t, n).double().numpy()
            log_rhos = None
            if self.members[0].value_estimator is ValueEstimator.vtrace:
                log_rhos = self._log_rhos(obs, batches)
        counts = [int(b.valid.sum()) for b in batches]
        width = max(max(counts), 1)
        rows: dict[str, list[torch.Tensor]] = {}
        for m, (member, batch) in enumerate(zip(self.members, batches, strict=True)):
            common = (
                batch.rewards,
                values[m],
                next_values[m],
                batch.terminated,
                batch.ends,
                member.gamma,
                member.gae_lambda,
            )
            if log_rhos is not None:
                advantages, returns = vtrace(*common, log_rhos[m])
            else:
                advantages, returns = gae(*common)
            valid = batch.valid.reshape(-1)
            for key, array in (
                ("obs", batch.obs),
                ("actions", batch.actions),
                ("log_prob", batch.log_prob),
                ("advantages", advantages),
                ("returns", returns),
                ("values", values[m]),
            ):
                flat = np.ascontiguousarray(array.reshape(t * n, *array.shape[2:])[valid])
                tensor = torch.from_numpy(flat)
                if key not in ("obs", "actions"):
                    tensor = tensor.float()
                padded = tensor.new_zeros((width, *tensor.shape[1:]))
                padded[: len(tensor)] = tensor
                rows.setdefault(key, []).append(padded)
        return {key: torch.stack(parts) for key, parts in rows.items()}, counts

    def _log_rhos(self, obs: torch.Tensor, batches: Sequence[RolloutBatch]) -> list[np.ndarray]:
        t, n = batches[0].rewards.shape
        outputs = self.actor(obs)
        result = []
        for m, batch in enumerate(batches):
            actions = torch.from_numpy(batch.actions.reshape(t * n, *batch.actions.shape[2:]))
            log_prob = self.policy.log_prob(outputs[m], actions).view(t, n).double().numpy()
            result.append(np.where(batch.valid, log_prob - batch.log_prob, 0.0))
        return result

    def _minibatch(
        self,
        data: dict[str, torch.Tensor],
        index: torch.Tensor,
        mask: torch.Tensor,
        active: torch.Tensor,
        clip: torch.Tensor,
    ) -> dict[str, list[float]]:
        """One gradient step of every active member on its rows ``index[m][mask[m]]``."""
        k, width = index.shape
        members = torch.arange(k).unsqueeze(1)
        weight = mask.float()
        count = weight.sum(1).clamp(min=1.0)

        def mean(x: torch.Tensor) -> torch.Tensor:  # [K, W] -> [K], over each member's rows
            return (x * weight).sum(1) / count

        obs, actions = data["obs"][members, index], data["actions"][members, index]
        advantages = data["advantages"][members, index]
        if self.members[0].normalize_advantages:
            centred = (advantages - mean(advantages).unsqueeze(1)) * weight
            spread = ((centred.pow(2)).sum(1) / (count - 1).clamp(min=1.0)).sqrt()
            normalised = centred / (spread.unsqueeze(1) + 1e-8)
            advantages = torch.where((count > 1).unsqueeze(1), normalised, advantages)
        outputs = self.actor(obs)
        flat_outputs = outputs.reshape(k * width, -1)
        log_prob = self.policy.log_prob(flat_outputs, actions.reshape(k * width)).view(k, width)
        entropy = mean(self.policy.entropy(flat_outputs).view(k, width))
        values = self.critic(obs).squeeze(2)
        returns, old_values = data["returns"][members, index], data["values"][members, index]
        if self.a2c:
            return self._a2c_step(advantages, log_prob, entropy, values, returns, active, mean)
        log_ratio = log_prob - data["log_prob"][members, index]
        ratio = log_ratio.exp()
        # clip: [K] float64, as the single run's Python float, rounded once to float32
        low, high = (1.0 - clip).float().unsqueeze(1), (1.0 + clip).float().unsqueeze(1)
        policy_loss = mean(
            torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, low, high))
        )
        if self.members[0].clip_vloss:  # type: ignore[union-attr]
            step = self.clip_vloss_coef.float().unsqueeze(1)  # constant: never annealed
            clipped = old_values + torch.clamp(values - old_values, -step, step)
            squared = torch.max((values - returns).pow(2), (clipped - returns).pow(2))
        else:
            squared = (values - returns).pow(2)
        value_loss = 0.5 * mean(squared)
        loss = policy_loss - self.ent_coef * entropy + self.vf_coef * value_loss
        self.optimizer.zero_grad()
        (loss * active.float()).sum().backward()
        grad_norm = clip_grad_norms_(self.params, self.max_grad_norm.float())
        self.optimizer.step(active)
        with torch.no_grad():
            approx_kl = mean((ratio - 1.0) - log_ratio)
            clip_fraction = mean(((ratio - 1.0).abs() > clip.float().unsqueeze(1)).float())
        return {
            "loss": loss.tolist(),
            "policy/loss": policy_loss.tolist(),
            "value/loss": value_loss.tolist(),
            "policy/entropy": entropy.tolist(),
            "approx_kl": approx_kl.tolist(),
            "clip_fraction": clip_fraction.tolist(),
            "grad_norm": grad_norm.tolist(),
        }

    def _a2c_step(
        self,
        advantages: torch.Tensor,
        log_prob: torch.Tensor,
        entropy: torch.Tensor,
        values: torch.Tensor,
        returns: torch.Tensor,
        active: torch.Tensor,
        mean: Callable[[torch.Tensor], torch.Tensor],
    ) -> dict[str, list[float]]:
        """A2C's gradient step (:meth:`A2C.learn`) of every active member."""
        policy_loss = mean(-(advantages * log_prob))
        value_loss = 0.5 * mean((returns - values).pow(2))
        loss = policy_loss + self.vf_coef * value_loss - self.ent_coef * entropy
        self.optimizer.zero_grad()
        (loss * active.float()).sum().backward()
        grad_norm = clip_grad_norms_(self.params, self.max_grad_norm.float())
        self.optimizer.step(active)
        return {
            "loss": loss.tolist(),
            "policy/loss": policy_loss.tolist(),
            "value/loss": value_loss.tolist(),
            "policy/entropy": entropy.tolist(),
            "grad_norm": grad_norm.tolist(),
        }

    def _metrics(
        self,
        m: int,
        totals: dict[str, list[float]],
        lr: float,
        clip: float,
        stopped: bool,
        data: dict[str, torch.Tensor],
        counts: list[int],
    ) -> Metrics:
        metrics = {key: float(np.mean(values)) for key, values in totals.items()}
        predicted, target = data["values"][m, : counts[m]], data["returns"][m, : counts[m]]
        variance = float(target.var()) if counts[m] > 1 else 0.0
        explained = (
            float("nan") if variance == 0 else 1.0 - float((target - predicted).var()) / variance
        )
        metrics.update(
            {
                "lr": lr,
                "clip_coef": clip,
                "early_stop": 1.0 if stopped else 0.0,
            }
        )
        if not math.isnan(explained):  # undefined where the returns do not vary (as one run)
            metrics["explained_variance"] = explained
        if self.a2c:
            for key in _PPO_ONLY:
                metrics.pop(key, None)
        return metrics

    def write_back(self, *, with_state: bool) -> None:
        """Every member's networks (what it acts with) and, ``with_state``, its optimiser
        state (what its checkpoint holds) into its own PPO learner."""
        self.actor.write_back([m.model for m in self.members])  # type: ignore[misc]
        self.critic.write_back([m.critic for m in self.members])  # type: ignore[misc]
        if with_state:
            for m in range(self.size):
                self.export_state(m)

    def export_state(self, m: int) -> None:
        """Member ``m``'s optimiser state into its own PPO learner (its networks are written
        back after every learn)."""
        self.optimizer.export_member(m, self.members[m].optimizer)
