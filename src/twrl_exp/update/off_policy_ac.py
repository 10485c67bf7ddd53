"""Off-policy actor-critics for continuous actions, from a replay buffer: SAC and TD3.

Both keep twin critics ``Q1, Q2(s, a)`` (networks of the model group over ``[features, a]``,
``a`` in ``[-1, 1]``) with Polyak-averaged targets and bootstrap from the smaller target
(clipped double Q, Fujimoto et al. 2018). The actor is the model.

- **SAC** (Haarnoja et al. 2018, with the automatic temperature of their second paper):
  ``y = R + d * (min_i Q'_i(s', a') - alpha log pi(a'|s'))``, ``a' ~ pi(s')``; the actor
  minimises ``alpha log pi(a|s) - min_i Q_i(s, a)`` with reparameterised ``a``; ``alpha`` is
  tuned towards the target entropy ``-dim(A)`` (``ent_coef: auto``) or fixed.
- **TD3** (Fujimoto et al. 2018): ``y = R + d * min_i Q'_i(s', clip(mu'(s') + clip(eps, -c, c),
  -1, 1))``, ``eps ~ N(0, target_policy_noise^2)``; the actor maximises ``Q1(s, mu(s))`` every
  ``policy_delay`` critic updates, when the target networks (the actor's included) move too.
"""

from __future__ import annotations

import math
from typing import TypedDict, Unpack

import numpy as np
import torch
from gymnasium import spaces

from twrl_exp.devices import device_of, to_tensor
from twrl_exp.errors import ConfigError
from twrl_exp.model.cnn import CNN
from twrl_exp.protocols import (
    Clock,
    DeterministicPolicy,
    Differentiable,
    Metrics,
    Model,
    ModelFactory,
    NetworkModel,
    Policy,
    ReparameterizedPolicy,
    State,
    Update,
    entry,
)
from twrl_exp.storage import ReplayBatch, ReplayStorage
from twrl_exp.update.checks import check_range, load_optimizer_state, make_optimizer, network
from twrl_exp.update.targets import frozen_copy, soft_update


class SACSettings(TypedDict):
    """``update=sac``'s settings for :class:`SAC`."""

    tau: float
    lr: float
    q_lr: float | None
    ent_coef: str | float
    target_entropy: float | None
    policy_delay: int
    max_grad_norm: float | None


class TD3Settings(TypedDict):
    """``update=td3``'s settings for :class:`TD3`."""

    tau: float
    lr: float
    q_lr: float | None
    policy_delay: int
    target_policy_noise: float
    target_noise_clip: float
    max_grad_norm: float | None


class BufferSettings(TypedDict):
    """The replay buffer's size and cadence: the part of :class:`ReplaySettings` that is configured
    (the rest comes from the model, the policy and the env)."""

    buffer_size: int
    batch_size: int
    learning_starts: int
    train_freq: int
    gradient_steps: int


def _replay(
    actor: NetworkModel,
    policy: Policy,
    num_envs: int,
    seed: int,
    gamma: float,
    settings: BufferSettings,
) -> ReplayStorage:
    return ReplayStorage(
        num_envs=num_envs,
        feature_dim=actor.in_features,
        action_shape=policy.action_shape,
        action_dtype=np.dtype(np.float32),
        gamma=gamma,
        n_step=1,  # one-step targets: the critics bootstrap from the next state's action
        seed=seed,
        **settings,
    )


def twin_critics(
    model: NetworkModel, make_model: ModelFactory, action_dim: int
) -> list[Differentiable]:
    """``Q1, Q2(s, a)``: networks of the model group over ``[features, action]``."""
    if isinstance(model, CNN):
        raise ConfigError(
            "update=sac and update=td3 build their critics over [features, action], which "
            "model=cnn cannot read (it reads images); from images use update=ppo or update=a2c "
            "(policy=normal for Box actions)."
        )
    space = spaces.Box(-np.inf, np.inf, (model.in_features + action_dim,), np.float32)
    critics = [
        make_model(
            observation_space=space,
            num_outputs=1,
            hidden_sizes=model.critic_hidden_sizes or model.hidden_sizes,
            output_gain=1.0,
        )
        for _ in range(2)
    ]
    return [network("the critics of an off-policy actor-critic", q) for q in critics]


def sac(
    *,
    model: Model,
    make_model: ModelFactory,
    policy: Policy,
    num_envs: int,
    total_env_steps: int | None,
    seed: int,
    gamma: float,
    buffer_size: int,
    batch_size: int,
    learning_starts: int,
    train_freq: int,
    gradient_steps: int,
    random_start: bool,
    **settings: Unpack[SACSettings],
) -> Update[ReplayBatch]:
    """``update=sac``: a replay buffer -> :class:`SAC`."""
    del total_env_steps
    actor = network(SAC.name, model)
    if not isinstance(policy, ReparameterizedPolicy):
        raise ConfigError(SAC.needs_policy(policy))
    critics = twin_critics(actor, make_model, policy.action_shape[0])
    learner = SAC(model=actor, critics=critics, policy=policy, gamma=gamma, **settings)
    replay = _replay(
        actor,
        policy,
        num_envs,
        seed,
        gamma,
        BufferSettings(
            buffer_size=buffer_size,
            batch_size=batch_size,
            learning_starts=learning_starts,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
        ),
    )
    return Update(
        storage=replay, learner=learner, random_steps=learning_starts if random_start else 0
    )


def td3(
    *,
    model: Model,
    make_model: ModelFactory,
    policy: Policy,
    num_envs: int,
    total_env_steps: int | None,
    seed: int,
    gamma: float,
    buffer_size: int,
    batch_size: int,
    learning_starts: int,
    train_freq: int,
    gradient_steps: int,
    random_start: bool,
    **settings: Unpack[TD3Settings],
) -> Update[ReplayBatch]:
    """``update=td3``: a replay buffer -> :class:`TD3`."""
    del total_env_steps
    actor = network(TD3.name, model)
    if not isinstance(policy, DeterministicPolicy):
        raise ConfigError(TD3.needs_policy(policy))
    critics = twin_critics(actor, make_model, policy.action_shape[0])
    learner = TD3(model=actor, critics=critics, policy=policy, gamma=gamma, **settings)
    replay = _replay(
        actor,
        policy,
        num_envs,
        seed,
        gamma,
        BufferSettings(
            buffer_size=buffer_size,
            batch_size=batch_size,
            learning_starts=learning_starts,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
        ),
    )
    return Update(
        storage=replay, learner=learner, random_steps=learning_starts if random_start else 0
    )


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class _TwinCritics:
    """Twin critics, their targets and optimiser, shared by SAC and TD3: one gradient step per
    minibatch of a :class:`ReplayBatch`."""

    name = "off-policy actor-critic"

    def __init__(
        self,
        *,
        model: Model,
        critics: list[Differentiable],
        gamma: float,
        tau: float,
        q_lr: float,
        max_grad_norm: float | None,
    ) -> None:
        self.actor = network(self.name, model)
        check_range("update.gamma", gamma, 0.0, 1.0)
        check_range("update.tau", tau, 0.0, 1.0, low_open=True)
        check_range("update.q_lr", q_lr, 0.0, None, low_open=True)
        self.critics = critics
        self.critic_targets = [frozen_copy(q) for q in critics]
        self.gamma, self.tau, self.max_grad_norm = gamma, tau, max_grad_norm
        self.q_params = [p for q in critics for p in q.parameters()]
        self.q_optimizer = make_optimizer("adam", list(self.q_params), q_lr, 0.0, {})

    def learn(self, batch: ReplayBatch, clock: Clock) -> Metrics:
        """One gradient step per minibatch of ``batch``; the last one's figures."""
        metrics: Metrics = {}
        device = device_of(self.critics[0])
        for g in range(batch.gradient_steps):
            minibatch = (
                to_tensor(batch.obs[g], device),
                to_tensor(batch.actions[g], device).float(),
                to_tensor(batch.rewards[g], device),
                to_tensor(batch.discounts[g], device),
                to_tensor(batch.next_obs[g], device),
            )
            clock.gradient_steps += 1
            metrics = self._gradient_step(minibatch, clock.gradient_steps)
        return metrics

    def _gradient_step(self, minibatch: Batch, step: int) -> Metrics:
        """Step number ``step`` (from 1) on one minibatch ``(s, a, R, d, s')``."""
        raise NotImplementedError

    @staticmethod
    def q_values(
        nets: list[Differentiable], obs: torch.Tensor, action: torch.Tensor
    ) -> torch.Tensor:
        """``[2, B]`` values of ``(obs, action)`` under each net."""
        x = torch.cat([obs, action], dim=1)
        return torch.stack([net(x).squeeze(1) for net in nets])

    def _critic_step(
        self, obs: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor
    ) -> Metrics:
        q = self.q_values(self.critics, obs, actions)
        loss = (q - targets.unsqueeze(0)).pow(2).mean(dim=1).sum() * 0.5
        self.q_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.q_params, self.max_grad_norm)
        self.q_optimizer.step()
        return {"value/loss": loss.item(), "q/mean": q.mean().item()}

    def _move_targets(self) -> None:
        for target, critic in zip(self.critic_targets, self.critics, strict=True):
            soft_update(target, critic, self.tau)

    def stats(self) -> Metrics:
        return {}

    def _critic_state(self) -> State:
        return {
            "critics": [q.state_dict() for q in self.critics],
            "critic_targets": [q.state_dict() for q in self.critic_targets],
            "q_optimizer": self.q_optimizer.state_dict(),
        }

    def _load_critic_state(self, state: State) -> None:
        for net, saved in zip(self.critics, entry(state, "critics", list), strict=True):
            net.load_state_dict(saved)
        for net, saved in zip(
            self.critic_targets, entry(state, "critic_targets", list), strict=True
        ):
            net.load_state_dict(saved)
        load_optimizer_state(self.q_optimizer, entry(state, "q_optimizer", dict))


class SAC(_TwinCritics):
    name = "sac"

    @staticmethod
    def needs_policy(policy: object) -> str:
        return (
            "update=sac needs a reparameterisable squashed policy on Box actions: "
            f"policy=tanh_normal (its default), not {type(policy).__name__.lower()}."
        )

    def __init__(
        self,
        *,
        model: Model,
        critics: list[Differentiable],
        policy: Policy,
        gamma: float,
        tau: float,
        lr: float,
        q_lr: float | None,
        ent_coef: str | float,
        target_entropy: float | None,
        policy_delay: int,
        max_grad_norm: float | None,
    ) -> None:
        if not isinstance(policy, ReparameterizedPolicy):
            raise ConfigError(self.needs_policy(policy))
        check_range("update.lr", lr, 0.0, None, low_open=True)
        check_range("update.policy_delay", policy_delay, 1, None)
        super().__init__(
            model=model,
            critics=critics,
            gamma=gamma,
            tau=tau,
            q_lr=q_lr if q_lr is not None else lr,
            max_grad_norm=max_grad_norm,
        )
        self.policy, self.policy_delay = policy, policy_delay
        # The policy's own parameters (gSDE's noise scale) learn with the actor.
        actor_params = [*self.actor.parameters(), *getattr(policy, "parameters", list)()]
        self.actor_optimizer = make_optimizer("adam", actor_params, lr, 0.0, {})
        action_dim = int(np.prod(policy.action_shape))
        self.target_entropy = (
            float(-action_dim) if target_entropy is None else float(target_entropy)
        )
        self.auto_alpha = str(ent_coef) == "auto"
        if not self.auto_alpha:
            try:
                fixed = float(ent_coef)
            except ValueError as exc:
                raise ConfigError(
                    f"update.ent_coef={ent_coef} is invalid: use auto or a number >= 0."
                ) from exc
            check_range("update.ent_coef", fixed, 0.0, None)
        self.log_alpha = torch.zeros(1, requires_grad=True)
        if not self.auto_alpha:
            with torch.no_grad():
                self.log_alpha.fill_(math.log(max(fixed, 1e-12)))
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=q_lr or lr)

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    def _gradient_step(self, minibatch: Batch, step: int) -> Metrics:
        obs, actions, rewards, discounts, next_obs = minibatch
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_actions, next_log_prob = self.policy.rsample(self.actor(next_obs))
            next_q = self.q_values(self.critic_targets, next_obs, next_actions).min(dim=0).values
            targets = rewards + discounts * (next_q - alpha * next_log_prob)
        metrics = self._critic_step(obs, actions, targets)
        if step % self.policy_delay == 0:
            metrics.update(self._actor_step(obs, alpha))
        self._move_targets()
        metrics["alpha"] = self.alpha
        return metrics

    def _actor_step(self, obs: torch.Tensor, alpha: torch.Tensor) -> Metrics:
        new_actions, log_prob = self.policy.rsample(self.actor(obs))
        q = self.q_values(self.critics, obs, new_actions).min(dim=0).values
        loss = (alpha * log_prob - q).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_optimizer.step()
        figures = {"policy/loss": loss.item(), "policy/entropy": -log_prob.mean().item()}
        if self.auto_alpha:
            alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()
            figures["alpha/loss"] = alpha_loss.item()
        return figures

    def state_dict(self) -> State:
        return {
            **self._critic_state(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
        }

    def load_state_dict(self, state: State) -> None:
        self._load_critic_state(state)
        load_optimizer_state(self.actor_optimizer, entry(state, "actor_optimizer", dict))
        with torch.no_grad():
            self.log_alpha.copy_(entry(state, "log_alpha", torch.Tensor))
        load_optimizer_state(self.alpha_optimizer, entry(state, "alpha_optimizer", dict))


class TD3(_TwinCritics):
    name = "td3"

    @staticmethod
    def needs_policy(policy: object) -> str:
        return (
            "update=td3 needs a deterministic policy on Box actions: policy=deterministic "
            f"(its default), not {type(policy).__name__.lower()}."
        )

    def __init__(
        self,
        *,
        model: Model,
        critics: list[Differentiable],
        policy: Policy,
        gamma: float,
        tau: float,
        lr: float,
        q_lr: float | None,
        policy_delay: int,
        target_policy_noise: float,
        target_noise_clip: float,
        max_grad_norm: float | None,
    ) -> None:
        if not isinstance(policy, DeterministicPolicy):
            raise ConfigError(self.needs_policy(policy))
        check_range("update.lr", lr, 0.0, None, low_open=True)
        check_range("update.policy_delay", policy_delay, 1, None)
        check_range("update.target_policy_noise", target_policy_noise, 0.0, None)
        check_range("update.target_noise_clip", target_noise_clip, 0.0, None)
        super().__init__(
            model=model,
            critics=critics,
            gamma=gamma,
            tau=tau,
            q_lr=q_lr if q_lr is not None else lr,
            max_grad_norm=max_grad_norm,
        )
        self.policy, self.policy_delay = policy, policy_delay
        self.actor_target = frozen_copy(self.actor)
        self.actor_optimizer = make_optimizer("adam", list(self.actor.parameters()), lr, 0.0, {})
        self.noise, self.noise_clip = target_policy_noise, target_noise_clip

    def _gradient_step(self, minibatch: Batch, step: int) -> Metrics:
        obs, actions, rewards, discounts, next_obs = minibatch
        with torch.no_grad():
            target_action = self.policy.action(self.actor_target(next_obs))
            noise = (torch.randn_like(target_action) * self.noise).clamp(
                -self.noise_clip, self.noise_clip
            )
            next_actions = (target_action + noise).clamp(-1.0, 1.0)
            next_q = self.q_values(self.critic_targets, next_obs, next_actions).min(dim=0).values
            targets = rewards + discounts * next_q
        metrics = self._critic_step(obs, actions, targets)
        if step % self.policy_delay == 0:
            action = self.policy.action(self.actor(obs))
            loss = -self.q_values(self.critics[:1], obs, action)[0].mean()
            self.actor_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.actor_optimizer.step()
            metrics["policy/loss"] = loss.item()
            self._move_targets()
            soft_update(self.actor_target, self.actor, self.tau)
        return metrics

    def state_dict(self) -> State:
        return {
            **self._critic_state(),
            "actor_target": self.actor_target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
        }

    def load_state_dict(self, state: State) -> None:
        self._load_critic_state(state)
        self.actor_target.load_state_dict(entry(state, "actor_target", dict))
        load_optimizer_state(self.actor_optimizer, entry(state, "actor_optimizer", dict))
