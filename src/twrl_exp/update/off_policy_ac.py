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
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from twrl_exp.errors import ConfigError
from twrl_exp.protocols import (
    DeterministicPolicy,
    ReparameterizedPolicy,
    Update,
    require,
)
from twrl_exp.storage import ReplayStorage
from twrl_exp.update.checks import check_range, require_differentiable
from twrl_exp.update.targets import frozen_copy, soft_update


def _replay(
    model: Any, policy: Any, num_envs: int, seed: int, gamma: float, settings: dict[str, Any]
) -> ReplayStorage:
    """The replay buffer, taking its settings out of ``settings`` (the rest are the learner's)."""
    keys = ("buffer_size", "batch_size", "learning_starts", "train_freq", "gradient_steps")
    return ReplayStorage(
        num_envs=num_envs,
        feature_dim=model.in_features,
        action_shape=policy.action_shape,
        action_dtype=np.float32,
        gamma=gamma,
        n_step=1,  # one-step targets: the critics bootstrap from the next state's action
        seed=seed,
        **{key: settings.pop(key) for key in keys},
    )


def twin_critics(model: Any, make_model: Any, action_dim: int) -> list[nn.Module]:
    """``Q1, Q2(s, a)``: networks of the model group over ``[features, action]``."""
    sizes = getattr(model, "critic_hidden_sizes", None) or model.hidden_sizes
    space = spaces.Box(-np.inf, np.inf, (model.in_features + action_dim,), np.float32)
    return [
        make_model(observation_space=space, num_outputs=1, hidden_sizes=sizes, output_gain=1.0)
        for _ in range(2)
    ]


def _twin_critic_update(
    learner: Any,  # SAC or TD3
    capability: type,
    *,
    model: Any,
    make_model: Any,
    policy: Any,
    num_envs: int,
    seed: int,
    gamma: float,
    settings: dict[str, Any],
) -> Update:
    require(policy, capability, learner.needs_policy(policy))
    require_differentiable(learner.name, model)
    storage = _replay(model, policy, num_envs, seed, gamma, settings)
    critics = twin_critics(model, make_model, policy.action_dim)
    return Update(
        storage=storage,
        learner=learner(model=model, critics=critics, policy=policy, gamma=gamma, **settings),
    )


def sac(
    *,
    model: Any,
    make_model: Any,
    policy: Any,
    num_envs: int,
    total_env_steps: int | None,
    seed: int,
    gamma: float,
    **settings: Any,
) -> Update:
    """``update=sac``: a replay buffer -> :class:`SAC`."""
    del total_env_steps
    return _twin_critic_update(
        SAC,
        ReparameterizedPolicy,
        model=model,
        make_model=make_model,
        policy=policy,
        num_envs=num_envs,
        seed=seed,
        gamma=gamma,
        settings=settings,
    )


def td3(
    *,
    model: Any,
    make_model: Any,
    policy: Any,
    num_envs: int,
    total_env_steps: int | None,
    seed: int,
    gamma: float,
    **settings: Any,
) -> Update:
    """``update=td3``: a replay buffer -> :class:`TD3`."""
    del total_env_steps
    return _twin_critic_update(
        TD3,
        DeterministicPolicy,
        model=model,
        make_model=make_model,
        policy=policy,
        num_envs=num_envs,
        seed=seed,
        gamma=gamma,
        settings=settings,
    )


class _TwinCritics:
    """Twin critics, their targets and optimiser, shared by SAC and TD3."""

    name = "off-policy actor-critic"

    def __init__(
        self,
        *,
        model: Any,
        critics: list[nn.Module],
        gamma: float,
        tau: float,
        q_lr: float,
        max_grad_norm: float | None,
    ) -> None:
        require_differentiable(self.name, model)
        check_range("update.gamma", gamma, 0.0, 1.0)
        check_range("update.tau", tau, 0.0, 1.0, low_open=True)
        check_range("update.q_lr", q_lr, 0.0, None, low_open=True)
        self.actor = model
        self.critics = critics
        self.critic_targets = [frozen_copy(q) for q in critics]
        self.gamma, self.tau, self.max_grad_norm = gamma, tau, max_grad_norm
        self.q_params = [p for q in critics for p in q.parameters()]
        self.q_optimizer = torch.optim.Adam(self.q_params, lr=q_lr)
        self.updates = 0

    @staticmethod
    def q_values(nets: list[nn.Module], obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``[2, B]`` values of ``(obs, action)`` under each net."""
        x = torch.cat([obs, action], dim=1)
        return torch.stack([net(x).squeeze(1) for net in nets])

    def _critic_step(
        self, obs: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor
    ) -> dict[str, float]:
        q = self.q_values(self.critics, obs, actions)
        loss = (q - targets.unsqueeze(0)).pow(2).mean(dim=1).sum() * 0.5
        self.q_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.q_params, self.max_grad_norm)
        self.q_optimizer.step()
        return {"value/loss": loss.item(), "q/mean": q.mean().item()}

    def _move_targets(self) -> None:
        for target, critic in zip(self.critic_targets, self.critics, strict=True):
            soft_update(target, critic, self.tau)

    @staticmethod
    def _tensors(batch: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
        return (
            torch.from_numpy(batch["obs"]),
            torch.from_numpy(batch["actions"]).float(),
            torch.from_numpy(batch["rewards"]),
            torch.from_numpy(batch["discounts"]),
            torch.from_numpy(batch["next_obs"]),
        )

    def stats(self) -> dict[str, float]:
        return {}

    def _critic_state(self) -> dict[str, Any]:
        return {
            "critics": [q.state_dict() for q in self.critics],
            "critic_targets": [q.state_dict() for q in self.critic_targets],
            "q_optimizer": self.q_optimizer.state_dict(),
            "updates": self.updates,
        }

    def _load_critic_state(self, state: dict[str, Any]) -> None:
        for net, saved in zip(self.critics, state["critics"], strict=True):
            net.load_state_dict(saved)
        for net, saved in zip(self.critic_targets, state["critic_targets"], strict=True):
            net.load_state_dict(saved)
        self.q_optimizer.load_state_dict(state["q_optimizer"])
        self.updates = int(state["updates"])


class SAC(_TwinCritics):
    name = "sac"

    @staticmethod
    def needs_policy(policy: Any) -> str:
        return (
            "update=sac needs a reparameterisable squashed policy on Box actions: "
            f"policy=tanh_normal (its default), not {type(policy).__name__.lower()}."
        )

    def __init__(
        self,
        *,
        model: Any,
        critics: list[nn.Module],
        policy: Any,
        gamma: float,
        tau: float,
        lr: float,
        q_lr: float | None,
        ent_coef: str | float,
        target_entropy: float | None,
        policy_delay: int,
        max_grad_norm: float | None,
    ) -> None:
        require(policy, ReparameterizedPolicy, self.needs_policy(policy))
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
        self.actor_optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        self.target_entropy = (
            float(-policy.action_dim) if target_entropy is None else float(target_entropy)
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

    def learn(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        obs, actions, rewards, discounts, next_obs = self._tensors(batch)
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_actions, next_log_prob = self.policy.rsample(self.actor(next_obs))
            next_q = self.q_values(self.critic_targets, next_obs, next_actions).min(dim=0).values
            targets = rewards + discounts * (next_q - alpha * next_log_prob)
        metrics = self._critic_step(obs, actions, targets)
        self.updates += 1
        if self.updates % self.policy_delay == 0:
            metrics.update(self._actor_step(obs, alpha))
        self._move_targets()
        metrics["alpha"] = self.alpha
        return metrics

    def _actor_step(self, obs: torch.Tensor, alpha: torch.Tensor) -> dict[str, float]:
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

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._critic_state(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_critic_state(state)
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])


class TD3(_TwinCritics):
    name = "td3"

    @staticmethod
    def needs_policy(policy: Any) -> str:
        return (
            "update=td3 needs a deterministic policy on Box actions: policy=deterministic "
            f"(its default), not {type(policy).__name__.lower()}."
        )

    def __init__(
        self,
        *,
        model: Any,
        critics: list[nn.Module],
        policy: Any,
        gamma: float,
        tau: float,
        lr: float,
        q_lr: float | None,
        policy_delay: int,
        target_policy_noise: float,
        target_noise_clip: float,
        max_grad_norm: float | None,
    ) -> None:
        require(policy, DeterministicPolicy, self.needs_policy(policy))
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
        self.actor_target = frozen_copy(model)
        self.actor_optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        self.noise, self.noise_clip = target_policy_noise, target_noise_clip

    def learn(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        obs, actions, rewards, discounts, next_obs = self._tensors(batch)
        with torch.no_grad():
            target_action = self.policy.action(self.actor_target(next_obs))
            noise = (torch.randn_like(target_action) * self.noise).clamp(
                -self.noise_clip, self.noise_clip
            )
            next_actions = (target_action + noise).clamp(-1.0, 1.0)
            next_q = self.q_values(self.critic_targets, next_obs, next_actions).min(dim=0).values
            targets = rewards + discounts * next_q
        metrics = self._critic_step(obs, actions, targets)
        self.updates += 1
        if self.updates % self.policy_delay == 0:
            action = self.policy.action(self.actor(obs))
            loss = -self.q_values(self.critics[:1], obs, action)[0].mean()
            self.actor_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.actor_optimizer.step()
            metrics["policy/loss"] = loss.item()
            self._move_targets()
            soft_update(self.actor_target, self.actor, self.tau)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._critic_state(),
            "actor_target": self.actor_target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_critic_state(state)
        self.actor_target.load_state_dict(state["actor_target"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
