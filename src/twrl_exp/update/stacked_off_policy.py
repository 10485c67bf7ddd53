"""K SAC or K TD3 learners of one structure trained as one: the learning step of an
off-policy actor-critic population.

Built from K :class:`~twrl_exp.update.off_policy_ac.SAC` (or ``TD3``) learners, each made as a
single run would make it. Their actors, twin critics and targets become
:class:`~twrl_exp.model.stacked.StackedMLP` s (SAC's temperatures one ``[K, 1]`` tensor), and
:class:`StackedOptimizer` s step them (critics, actor, SAC's temperature); each member keeps its
own ``lr``, ``q_lr``, ``tau``, ``max_grad_norm`` (SAC: ``target_entropy``; TD3:
``target_policy_noise``, ``target_noise_clip``; ``gamma`` lives in its replay storage's
discounts) and its own torch generator.

Member ``m``'s gradient step is the one its own learner takes on its own replayed minibatch: the
same losses, reduced over its own rows; its torch draws (SAC's reparameterised actions, TD3's
target policy noise) come from its own generator, in its single run's order and shapes; its
actor steps every ``policy_delay`` of its own gradient steps, and its targets move by its own
``tau`` when its single run's move. A member without a batch (before ``learning_starts``, or at
its autoreset step) does not learn: parameters, optimiser state, generator and clock untouched.

Shared and checked: the networks, ``policy_delay``, SAC's learnt or fixed temperature
(``ent_coef: auto`` or a number); the optimisers are Adam with torch's defaults, as SAC and TD3
build them; the minibatch size comes from the storages (it is structural).

Every gradient step computes all K members' rows (those without a minibatch masked): members
learn in step when they learn every env step (``train_freq`` 1, the default); with a larger
``train_freq`` and episodes of different lengths they drift apart (an autoreset step counts no
env step), and each member's learn then pays for K rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from twrl_exp.errors import ConfigError
from twrl_exp.model.mlp import MLP
from twrl_exp.model.stacked import StackedMLP
from twrl_exp.protocols import Clock, DeterministicPolicy, Metrics, ReparameterizedPolicy
from twrl_exp.storage import ReplayBatch
from twrl_exp.update.off_policy_ac import SAC, TD3
from twrl_exp.update.stacked_optim import StackedOptimizer, clip_grad_norms_, options_of

_ACTOR_FIGURES = ("policy/loss", "policy/entropy", "alpha/loss")


def _mlp(net: object) -> MLP:
    if not isinstance(net, MLP):
        raise ConfigError("an off-policy actor-critic population needs model=mlp.")
    return net


class _StackedTwinCritics:
    """What SAC and TD3 populations share: the actor, twin critics, their targets, the
    critics' step, the targets' move, the learn loop and the members' own learners."""

    rule: type[SAC] | type[TD3]
    shared: tuple[str, ...] = ("policy_delay",)

    def __init__(self, members: Sequence[SAC | TD3], generators: Sequence[torch.Generator]) -> None:
        if len(generators) != len(members):
            raise ValueError("one generator per member")
        for member in members:
            if not isinstance(member, self.rule):
                raise ConfigError(
                    f"a population's members share their rule (all {self.rule.name})."
                )
            if not isinstance(member.actor, MLP) or not all(
                isinstance(q, MLP) for q in member.critics
            ):
                raise ConfigError(f"a {self.rule.name.upper()} population needs model=mlp.")
        self._check_shared(members)
        first = members[0]
        self.members = list(members)
        self.generators = list(generators)
        self.size = len(members)
        self.action_dim = int(np.prod(first.policy.action_shape))
        self.delay = int(first.policy_delay)
        self.actor = StackedMLP([_mlp(m.actor) for m in members])
        self.critics = [StackedMLP([_mlp(m.critics[i]) for m in members]) for i in range(2)]
        self.targets = [StackedMLP([_mlp(m.critic_targets[i]) for m in members]) for i in range(2)]
        for target in self.targets:
            target.requires_grad_(False)
        self.q_params = [p for q in self.critics for p in q.parameters()]
        self.q_optimizer = self._stacked(self.q_params, "q_optimizer")
        self.actor_optimizer = self._stacked(list(self.actor.parameters()), "actor_optimizer")
        self.tau = torch.zeros(self.size)
        self.max_grad_norm = torch.zeros(self.size)
        self.clip = False

    def _check_shared(self, members: Sequence[SAC | TD3]) -> None:
        first = members[0]
        for m, member in enumerate(members):
            for name in self.shared:
                if getattr(member, name) != getattr(first, name):
                    raise ConfigError(
                        f"population member {m} has {name}={getattr(member, name)}, member 0 "
                        f"{getattr(first, name)}: members share the structural settings and "
                        "differ only in seed and vectorisable values."
                    )

    def _stacked(self, params: Sequence[torch.Tensor], of: str) -> StackedOptimizer:
        own = [getattr(m, of) for m in self.members]
        lrs = [float(o.param_groups[0]["lr"]) for o in own]
        optimizer = StackedOptimizer("adam", params, lrs, 0.0, options_of(own[0]))
        for m, member_optimizer in enumerate(own):  # a resumed member goes on as it was
            optimizer.import_member(m, member_optimizer)
        return optimizer

    def _values(self, m: int, member: SAC | TD3) -> None:
        """Member ``m``'s own values (its rows of the per-member tensors)."""
        self.tau[m] = member.tau
        self.max_grad_norm[m] = (
            float("inf") if member.max_grad_norm is None else member.max_grad_norm
        )
        self.clip = any(s.max_grad_norm is not None for s in self.members)

    def replace(self, m: int, member: SAC | TD3, generator: torch.Generator) -> None:
        """Slot ``m`` trains ``member`` from now on (a refilled slot): its networks, targets,
        optimiser states, values and generator."""
        if not isinstance(member, self.rule):
            raise ConfigError(f"a population's members share their rule (all {self.rule.name}).")
        self._check_shared([self.members[0], member])
        self.members[m], self.generators[m] = member, generator
        self.actor.load_member(m, _mlp(member.actor))
        for i in range(2):
            self.critics[i].load_member(m, _mlp(member.critics[i]))
            self.targets[i].load_member(m, _mlp(member.critic_targets[i]))
        self.q_optimizer.import_member(m, member.q_optimizer)
        self.actor_optimizer.import_member(m, member.actor_optimizer)
        self._values(m, member)

    # -- the learning step -----------------------------------------------------------------

    def learn(
        self, batches: Sequence[ReplayBatch | None], clocks: Sequence[Clock]
    ) -> list[Metrics | None]:
        """Member ``m`` learns from ``batches[m]`` at ``clocks[m]``; its metrics (those of its
        last gradient step, as its own learner's ``learn``), or ``None`` where it has no
        batch. Members may hand over different numbers of minibatches (``gradient_steps=-1``
        samples one per env step counted, and an autoreset step counts none): gradient step
        ``g`` moves only the members with a ``g``-th minibatch."""
        given = next(b for b in batches if b is not None)
        counts = [0 if b is None else b.gradient_steps for b in batches]

        def stack(name: str) -> torch.Tensor:  # [G, K, B, ...], zeros past a member's own G
            filler = np.zeros_like(getattr(given, name)[:1])
            parts = []
            for b, count in zip(batches, counts, strict=True):
                own = filler[:0] if b is None else getattr(b, name)
                rest = np.repeat(filler, max(counts) - count, axis=0)
                parts.append(np.concatenate([own, rest]) if len(rest) else own)
            return torch.from_numpy(np.stack(parts, axis=1))

        obs, actions, rewards = stack("obs"), stack("actions").float(), stack("rewards")
        discounts, next_obs = stack("discounts"), stack("next_obs")
        result: list[Metrics | None] = [None] * self.size
        for g in range(max(counts)):
            stepping = [g < count for count in counts]
            for clock, steps in zip(clocks, stepping, strict=True):
                clock.gradient_steps += steps
            active = torch.tensor(stepping)
            numbers = torch.tensor([c.gradient_steps for c in clocks])
            due = active & (numbers % self.delay == 0)
            figures = self._gradient_step(
                obs[g], actions[g], rewards[g], discounts[g], next_obs[g], active, due
            )
            for m in range(self.size):
                if g == counts[m] - 1:  # its last step: its metrics, as its single run's
                    metrics = {"value/loss": float(figures["value/loss"][m])}
                    metrics["q/mean"] = float(figures["q/mean"][m])
                    if due[m]:
                        metrics.update(
                            {k: float(figures[k][m]) for k in _ACTOR_FIGURES if k in figures}
                        )
                    result[m] = metrics
        for m, learnt in enumerate(result):
            if learnt is not None:
                learnt.update(self._extra(m))
        return result

    def _extra(self, m: int) -> Metrics:
        del m
        return {}

    def _gradient_step(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        discounts: torch.Tensor,
        next_obs: torch.Tensor,
        active: torch.Tensor,
        due: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _noise(self, like: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
        """Standard normal draws ``[K, B, A]`` for the ``members`` (a ``[K]`` mask), each from
        its own generator as its single run draws them (``randn_like`` of ``[B, A]``); zeros
        for the others, which draw nothing."""
        k, b = like.shape[0], like.shape[1]
        noise = torch.zeros(k, b, self.action_dim, dtype=like.dtype)
        for m in torch.nonzero(members).flatten().tolist():
            noise[m] = torch.randn(
                b, self.action_dim, dtype=like.dtype, generator=self.generators[m]
            )
        return noise

    @staticmethod
    def _q(nets: list[StackedMLP], obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``[len(nets), K, B]`` values of ``(obs, action)`` under each stacked net."""
        x = torch.cat([obs, action], dim=-1)
        return torch.stack([net(x).squeeze(-1) for net in nets])

    def _critic_step(
        self, obs: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor, active: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        q = self._q(self.critics, obs, actions)
        loss = (q - targets.unsqueeze(0)).pow(2).mean(dim=2).sum(dim=0) * 0.5  # [K]
        self.q_optimizer.zero_grad()
        (loss * active).sum().backward()
        if self.clip:
            clip_grad_norms_(self.q_params, self.max_grad_norm)
        self.q_optimizer.step(active)
        return {"value/loss": loss.detach(), "q/mean": q.detach().mean(dim=(0, 2))}

    @torch.no_grad()
    def _move(self, pairs: list[tuple[StackedMLP, StackedMLP]], moving: torch.Tensor) -> None:
        """Each ``moving`` member's targets towards their sources by its ``tau``."""
        weight = torch.where(moving, self.tau, torch.zeros(()))
        for target, source in pairs:
            for t, s in zip(target.parameters(), source.parameters(), strict=True):
                t.lerp_(s, weight.view(-1, *([1] * (t.dim() - 1))))

    # -- members' own learners ---------------------------------------------------------------

    def write_back(self, *, with_state: bool) -> None:
        """Every member's actor (what it acts with) and, ``with_state``, the rest of its state
        (what its checkpoint holds) into its own learner."""
        self.actor.write_back([_mlp(m.actor) for m in self.members])
        if with_state:
            for m in range(self.size):
                self.export_state(m)

    def export_state(self, m: int) -> None:
        """Member ``m``'s critics, targets and optimiser states into its own learner (its
        actor is written back after every learn)."""
        member = self.members[m]
        for i in range(2):
            self.critics[i].write_member(m, _mlp(member.critics[i]))
            self.targets[i].write_member(m, _mlp(member.critic_targets[i]))
        self.q_optimizer.export_member(m, member.q_optimizer)
        self.actor_optimizer.export_member(m, member.actor_optimizer)


class StackedSAC(_StackedTwinCritics):
    """``members`` (SAC learners of one structure) as one learner over K replayed batches."""

    rule = SAC
    shared = ("policy_delay", "auto_alpha")

    def __init__(self, members: Sequence[SAC], generators: Sequence[torch.Generator]) -> None:
        super().__init__(members, generators)
        sampler = members[0].policy
        assert isinstance(sampler, ReparameterizedPolicy)  # SAC checked it
        self.sampler: ReparameterizedPolicy = sampler
        self.log_alpha = nn.Parameter(torch.stack([m.log_alpha.detach() for m in members]))
        self.alpha_optimizer = self._stacked([self.log_alpha], "alpha_optimizer")
        self.auto_alpha = members[0].auto_alpha
        self.target_entropy = torch.zeros(self.size, 1)
        for m, member in enumerate(members):
            self._values(m, member)

    def _values(self, m: int, member: SAC | TD3) -> None:
        super()._values(m, member)
        assert isinstance(member, SAC)
        self.target_entropy[m] = member.target_entropy

    def replace(self, m: int, member: SAC | TD3, generator: torch.Generator) -> None:
        super().replace(m, member, generator)
        assert isinstance(member, SAC)
        with torch.no_grad():
            self.log_alpha[m] = member.log_alpha.detach()
        self.alpha_optimizer.import_member(m, member.alpha_optimizer)

    def _extra(self, m: int) -> Metrics:
        return {"alpha": float(self.log_alpha.detach()[m].exp())}

    def _gradient_step(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        discounts: torch.Tensor,
        next_obs: torch.Tensor,
        active: torch.Tensor,
        due: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        alpha = self.log_alpha.exp().detach()  # [K, 1]
        with torch.no_grad():
            outputs = self.actor(next_obs)
            next_actions, next_log_prob = self.sampler.rsample(
                outputs, self._noise(outputs, active)
            )
            next_q = self._q(self.targets, next_obs, next_actions).min(dim=0).values
            targets = rewards + discounts * (next_q - alpha * next_log_prob)
        figures = self._critic_step(obs, actions, targets, active)
        if bool(due.any()):
            figures.update(self._actor_step(obs, alpha, due))
        self._move(list(zip(self.targets, self.critics, strict=True)), active)
        return figures

    def _actor_step(
        self, obs: torch.Tensor, alpha: torch.Tensor, due: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        outputs = self.actor(obs)
        new_actions, log_prob = self.sampler.rsample(outputs, self._noise(outputs, due))
        q = self._q(self.critics, obs, new_actions).min(dim=0).values
        loss = (alpha * log_prob - q).mean(dim=1)  # [K]
        self.actor_optimizer.zero_grad()
        (loss * due).sum().backward()
        self.actor_optimizer.step(due)
        figures = {"policy/loss": loss.detach(), "policy/entropy": -log_prob.detach().mean(dim=1)}
        if self.auto_alpha:
            entropy_gap = log_prob.detach() + self.target_entropy
            alpha_loss = -(self.log_alpha * entropy_gap).mean(dim=1)  # [K]
            self.alpha_optimizer.zero_grad()
            (alpha_loss * due).sum().backward()
            self.alpha_optimizer.step(due)
            figures["alpha/loss"] = alpha_loss.detach()
        return figures

    def export_state(self, m: int) -> None:
        """Member ``m``'s critics, targets, temperature and optimiser states into its own SAC."""
        super().export_state(m)
        member = self.members[m]
        assert isinstance(member, SAC)
        with torch.no_grad():
            member.log_alpha.copy_(self.log_alpha[m])
        self.alpha_optimizer.export_member(m, member.alpha_optimizer)


class StackedTD3(_StackedTwinCritics):
    """``members`` (TD3 learners of one structure) as one learner over K replayed batches."""

    rule = TD3

    def __init__(self, members: Sequence[TD3], generators: Sequence[torch.Generator]) -> None:
        super().__init__(members, generators)
        deterministic = members[0].policy
        assert isinstance(deterministic, DeterministicPolicy)  # TD3 checked it
        self.deterministic: DeterministicPolicy = deterministic
        self.actor_target = StackedMLP([_mlp(m.actor_target) for m in members])
        self.actor_target.requires_grad_(False)
        self.noise = torch.zeros(self.size, 1, 1)
        self.noise_clip = torch.zeros(self.size, 1, 1)
        for m, member in enumerate(members):
            self._values(m, member)

    def _values(self, m: int, member: SAC | TD3) -> None:
        super()._values(m, member)
        assert isinstance(member, TD3)
        self.noise[m] = member.noise
        self.noise_clip[m] = member.noise_clip

    def replace(self, m: int, member: SAC | TD3, generator: torch.Generator) -> None:
        super().replace(m, member, generator)
        assert isinstance(member, TD3)
        self.actor_target.load_member(m, _mlp(member.actor_target))

    def _gradient_step(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        discounts: torch.Tensor,
        next_obs: torch.Tensor,
        active: torch.Tensor,
        due: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            target_action = self.deterministic.action(self.actor_target(next_obs))
            noise = (self._noise(target_action, active) * self.noise).clamp(
                -self.noise_clip, self.noise_clip
            )
            next_actions = (target_action + noise).clamp(-1.0, 1.0)
            next_q = self._q(self.targets, next_obs, next_actions).min(dim=0).values
            targets = rewards + discounts * next_q
        figures = self._critic_step(obs, actions, targets, active)
        if bool(due.any()):
            action = self.deterministic.action(self.actor(obs))
            loss = -self._q(self.critics[:1], obs, action)[0].mean(dim=1)  # [K]
            self.actor_optimizer.zero_grad()
            (loss * due).sum().backward()
            self.actor_optimizer.step(due)
            figures["policy/loss"] = loss.detach()
            pairs = [*zip(self.targets, self.critics, strict=True), (self.actor_target, self.actor)]
            self._move(pairs, due)
        return figures

    def export_state(self, m: int) -> None:
        """Member ``m``'s critics, targets (its actor's too) and optimiser states into its own
        TD3."""
        super().export_state(m)
        member = self.members[m]
        assert isinstance(member, TD3)
        self.actor_target.write_member(m, _mlp(member.actor_target))
