"""On-policy actor-critics on fixed-length rollouts: A2C and PPO.

Both learn from a rollout of ``n_steps`` x ``num_envs`` (:class:`RolloutStorage`) with
generalized advantage estimation (:func:`~twrl_exp.returns.gae`), or with
``value_estimator=vtrace`` V-trace targets and advantages (:func:`~twrl_exp.returns.vtrace`,
Espeholt et al. 2018; importance ratios of the policy at learning time over the one that acted,
1 for a fresh rollout, so its targets are GAE's lambda-returns): the actor is the model (logits
or means for the policy), the critic a second network from the model group. Critic values are
computed for the whole rollout at once, when it is complete (the parameters have not changed
while it was collected, so they equal the values at collection time, for one batched call
instead of one per step).

- **A2C** (Mnih et al. 2016; SB3's defaults): one gradient step per rollout on
  ``-A log pi + vf_coef * (V - R)^2 / 2 - ent_coef * H``.
- **PPO** (Schulman et al. 2017; CleanRL's ``ppo.py``): ``update_epochs`` passes over
  ``num_minibatches`` minibatches of the clipped surrogate
  ``max(-A r, -A clip(r, 1-eps, 1+eps))`` with ``r = pi/pi_old``, optional value clipping,
  per-minibatch advantage normalisation, early stop at ``target_kl``, and linear annealing of
  the learning rate and the clip range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypedDict, Unpack

import numpy as np
import torch
from torch import nn

from twrl_exp.choices import OptimizerName, Schedule, ValueEstimator, parse
from twrl_exp.devices import device_of, to_numpy, to_tensor
from twrl_exp.errors import ConfigError
from twrl_exp.protocols import (
    Clock,
    Differentiable,
    LogProbPolicy,
    Metrics,
    Model,
    ModelFactory,
    NetworkModel,
    Policy,
    State,
    Update,
    entry,
)
from twrl_exp.returns import gae, vtrace
from twrl_exp.storage import RolloutBatch, RolloutStorage
from twrl_exp.update.checks import (
    check_range,
    feature_dtype,
    linear_lr,
    load_optimizer_state,
    make_optimizer,
    network,
)


class ActorCriticSettings(TypedDict):
    """What A2C and PPO share (see their schemas for each)."""

    gamma: float
    gae_lambda: float
    value_estimator: ValueEstimator | str
    vf_coef: float
    ent_coef: float
    max_grad_norm: float | None
    optimizer: OptimizerName | str
    lr: float
    optimizer_kwargs: Mapping[str, object]
    lr_schedule: Schedule | str
    lr_final_fraction: float
    normalize_advantages: bool


class PPOSettings(ActorCriticSettings):
    """PPO's own settings, besides the shared ones."""

    update_epochs: int
    num_minibatches: int
    clip_coef: float
    clip_schedule: Schedule | str
    clip_vloss: bool
    clip_vloss_coef: float | None
    target_kl: float | None


def _rollout(model: NetworkModel, policy: Policy, num_envs: int, n_steps: int) -> RolloutStorage:
    check_range("update.n_steps", n_steps, 1, None)
    return RolloutStorage(
        n_steps=n_steps,
        num_envs=num_envs,
        feature_dim=model.in_features,
        action_shape=policy.action_shape,
        action_dtype=policy.action_dtype,
        feature_dtype=feature_dtype(model),
    )


def ppo(
    *,
    model: Model,
    make_model: ModelFactory,
    policy: Policy,
    num_envs: int,
    total_env_steps: int | None,
    seed: int,
    n_steps: int,
    **settings: Unpack[PPOSettings],
) -> Update[RolloutBatch]:
    """``update=ppo``: rollouts of ``n_steps`` x ``num_envs`` -> :class:`PPO`."""
    del seed
    actor, actor_policy = _check_parts("ppo", model, policy)
    learner = PPO(
        model=actor,
        critic=critic_for(actor, make_model),
        policy=actor_policy,
        total_env_steps=total_env_steps,
        batch_steps=n_steps * num_envs,
        **settings,
    )
    return Update(storage=_rollout(actor, actor_policy, num_envs, n_steps), learner=learner)


def a2c(
    *,
    model: Model,
    make_model: ModelFactory,
    policy: Policy,
    num_envs: int,
    total_env_steps: int | None,
    seed: int,
    n_steps: int,
    **settings: Unpack[ActorCriticSettings],
) -> Update[RolloutBatch]:
    """``update=a2c``: rollouts of ``n_steps`` x ``num_envs`` -> :class:`A2C`."""
    del seed
    actor, actor_policy = _check_parts("a2c", model, policy)
    learner = A2C(
        model=actor,
        critic=critic_for(actor, make_model),
        policy=actor_policy,
        total_env_steps=total_env_steps,
        **settings,
    )
    return Update(storage=_rollout(actor, actor_policy, num_envs, n_steps), learner=learner)


def critic_for(model: NetworkModel, make_model: ModelFactory) -> Differentiable:
    """``V(s)``: a network of the model group, with the model's critic sizes."""
    critic = make_model(
        observation_space=model.observation_space,
        num_outputs=1,
        hidden_sizes=model.critic_hidden_sizes or model.hidden_sizes,
        output_gain=1.0,
    )
    return network("the critic of an actor-critic", critic)


def _check_parts(name: str, model: Model, policy: Policy) -> tuple[NetworkModel, LogProbPolicy]:
    actor = network(name, model)
    if not isinstance(policy, LogProbPolicy):
        raise ConfigError(
            f"update={name} needs a stochastic policy with log-probabilities: policy=categorical "
            f"(Discrete actions) or policy=normal (Box actions), not {type(policy).__name__}."
        )
    return actor, policy


class _ActorCritic:
    """What A2C and PPO share: parameters, optimiser, GAE on a rollout, schedules, state."""

    name = "actor-critic"

    def __init__(
        self,
        *,
        model: Model,
        critic: Differentiable,
        policy: Policy,
        total_env_steps: int | None,
        gamma: float,
        gae_lambda: float,
        value_estimator: ValueEstimator | str,
        vf_coef: float,
        ent_coef: float,
        max_grad_norm: float | None,
        optimizer: OptimizerName | str,
        lr: float,
        optimizer_kwargs: Mapping[str, object],
        lr_schedule: Schedule | str,
        lr_final_fraction: float,
        normalize_advantages: bool,
    ) -> None:
        self.model, self.policy = _check_parts(self.name, model, policy)
        check_range("update.gamma", gamma, 0.0, 1.0)
        check_range("update.gae_lambda", gae_lambda, 0.0, 1.0)
        check_range("update.vf_coef", vf_coef, 0.0, None)
        check_range("update.ent_coef", ent_coef, 0.0, None)
        check_range("update.lr", lr, 0.0, None, low_open=True)
        check_range("update.lr_final_fraction", lr_final_fraction, 0.0, 1.0)
        if max_grad_norm is not None:
            check_range("update.max_grad_norm", max_grad_norm, 0.0, None, low_open=True)
        self.lr_schedule = parse(Schedule, "update.lr_schedule", lr_schedule)
        self.value_estimator = parse(ValueEstimator, "update.value_estimator", value_estimator)
        if self.lr_schedule is Schedule.linear and not total_env_steps:
            raise ConfigError(
                "update.lr_schedule=linear needs a step budget: set train.max_env_steps."
            )
        self.critic = critic
        self.gamma, self.gae_lambda = gamma, gae_lambda
        self.vf_coef, self.ent_coef, self.max_grad_norm = vf_coef, ent_coef, max_grad_norm
        self.lr, self.lr_final_fraction = lr, lr_final_fraction
        self.normalize_advantages = normalize_advantages
        self.total_env_steps = total_env_steps
        self.params = [
            *self.model.parameters(),
            *self.policy.parameters(),
            *critic.parameters(),
        ]
        self.optimizer = make_optimizer(optimizer, self.params, lr, 0.0, optimizer_kwargs)

    def _set_lr(self, clock: Clock) -> float:
        lr = self.lr
        if self.lr_schedule is Schedule.linear:
            lr = linear_lr(self.lr, self.lr_final_fraction, clock.progress(self.total_env_steps))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _advantages(self, batch: RolloutBatch) -> dict[str, torch.Tensor]:
        """The rollout flattened to its valid steps, with advantages, returns and old values."""
        t, n = batch.rewards.shape
        device = device_of(self.critic)
        with torch.no_grad():
            values = self.critic(to_tensor(batch.obs.reshape(t * n, -1), device))
            next_values = self.critic(to_tensor(batch.next_obs.reshape(t * n, -1), device))
        values_np = to_numpy(values.view(t, n).double())
        next_values_np = to_numpy(next_values.view(t, n).double())
        common = (
            batch.rewards,
            values_np,
            next_values_np,
            batch.terminated,
            batch.ends,
            self.gamma,
            self.gae_lambda,
        )
        if self.value_estimator is ValueEstimator.vtrace:
            advantages, returns = vtrace(*common, self._log_rhos(batch))
        else:
            advantages, returns = gae(*common)
        valid = batch.valid.reshape(-1)

        def flat(array: np.ndarray) -> torch.Tensor:
            return to_tensor(array.reshape(t * n, *array.shape[2:])[valid], device)

        return {
            "obs": flat(batch.obs),
            "actions": flat(batch.actions),
            "log_prob": flat(batch.log_prob).float(),
            "advantages": flat(advantages).float(),
            "returns": flat(returns).float(),
            "values": flat(values_np).float(),
        }

    def _log_rhos(self, batch: RolloutBatch) -> np.ndarray:
        """``log pi(a|s) - log mu(a|s)`` of every row: the policy now over the one that acted
        (0 at autoreset rows, which carry no weight)."""
        t, n = batch.rewards.shape
        device = device_of(self.model)
        with torch.no_grad():
            outputs = self.model(to_tensor(batch.obs.reshape(t * n, -1), device))
            actions = to_tensor(batch.actions.reshape(t * n, *batch.actions.shape[2:]), device)
            log_prob = to_numpy(self.policy.log_prob(outputs, actions).view(t, n).double())
        return np.where(batch.valid, log_prob - batch.log_prob, 0.0)

    def _step(self, loss: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        limit = self.max_grad_norm if self.max_grad_norm is not None else float("inf")
        grad_norm = float(nn.utils.clip_grad_norm_(self.params, limit))
        self.optimizer.step()
        return grad_norm

    def stats(self) -> Metrics:
        return {}

    def state_dict(self) -> State:
        return {"critic": self.critic.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: State) -> None:
        self.critic.load_state_dict(entry(state, "critic", dict))
        load_optimizer_state(self.optimizer, entry(state, "optimizer", dict))


def explained_variance_metric(predicted: torch.Tensor, target: torch.Tensor) -> Metrics:
    """``{"explained_variance": ...}``, or nothing where it is undefined (returns that do not
    vary: a short rollout of unrewarded steps, as MinAtar's often are), which is no divergence."""
    value = explained_variance(predicted, target)
    return {} if math.isnan(value) else {"explained_variance": value}


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """``1 - Var[target - predicted] / Var[target]`` (1: perfect, 0: no better than the mean)."""
    variance = float(target.var()) if target.numel() > 1 else 0.0
    return float("nan") if variance == 0 else 1.0 - float((target - predicted).var()) / variance


class A2C(_ActorCritic):
    """One gradient step per rollout; every setting is :class:`_ActorCritic`'s."""

    name = "a2c"

    def learn(self, batch: RolloutBatch, clock: Clock) -> Metrics | None:
        data = self._advantages(batch)
        if len(data["obs"]) == 0:
            return None
        lr = self._set_lr(clock)
        advantages = data["advantages"]
        if self.normalize_advantages and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        outputs = self.model(data["obs"])
        log_prob = self.policy.log_prob(outputs, data["actions"])
        entropy = self.policy.entropy(outputs).mean()
        values = self.critic(data["obs"]).squeeze(1)
        policy_loss = -(advantages * log_prob).mean()
        value_loss = 0.5 * (data["returns"] - values).pow(2).mean()
        loss = policy_loss + self.vf_coef * value_loss - self.ent_coef * entropy
        grad_norm = self._step(loss)
        clock.gradient_steps += 1
        return {
            "loss": loss.item(),
            "policy/loss": policy_loss.item(),
            "value/loss": value_loss.item(),
            "policy/entropy": entropy.item(),
            "grad_norm": grad_norm,
            "lr": lr,
            **explained_variance_metric(data["values"], data["returns"]),
            **self.policy.stats(clock),
        }


class PPO(_ActorCritic):
    name = "ppo"

    def __init__(
        self,
        *,
        model: Model,
        critic: Differentiable,
        policy: Policy,
        total_env_steps: int | None,
        batch_steps: int,
        update_epochs: int,
        num_minibatches: int,
        clip_coef: float,
        clip_schedule: Schedule | str,
        clip_vloss: bool,
        clip_vloss_coef: float | None,
        target_kl: float | None,
        **shared: Unpack[ActorCriticSettings],
    ) -> None:
        super().__init__(
            model=model, critic=critic, policy=policy, total_env_steps=total_env_steps, **shared
        )
        check_range("update.update_epochs", update_epochs, 1, None)
        check_range("update.num_minibatches", num_minibatches, 1, batch_steps)
        check_range("update.clip_coef", clip_coef, 0.0, None, low_open=True)
        if target_kl is not None:
            check_range("update.target_kl", target_kl, 0.0, None, low_open=True)
        self.update_epochs, self.num_minibatches = update_epochs, num_minibatches
        self.clip_coef, self.clip_vloss, self.target_kl = clip_coef, clip_vloss, target_kl
        if clip_vloss_coef is not None:
            check_range("update.clip_vloss_coef", clip_vloss_coef, 0.0, None, low_open=True)
        # The value clip range: its own, constant (an annealed clip_coef would freeze the
        # critic near the end of a linear clip schedule).
        self.clip_vloss_coef = clip_coef if clip_vloss_coef is None else clip_vloss_coef
        self.clip_schedule = parse(Schedule, "update.clip_schedule", clip_schedule)

    def learn(self, batch: RolloutBatch, clock: Clock) -> Metrics | None:
        data = self._advantages(batch)
        size = len(data["obs"])
        if size == 0:
            return None
        linear = self.clip_schedule is Schedule.linear
        clip = self.clip_coef * (1.0 - clock.progress(self.total_env_steps) if linear else 1.0)
        clip = max(clip, 1e-8)
        lr = self._set_lr(clock)
        minibatch = max(1, size // self.num_minibatches)
        totals: dict[str, list[float]] = {}
        stopped_early = 0.0
        for _ in range(self.update_epochs):
            order = torch.randperm(size).to(data["obs"].device)  # the CPU generator, as ever
            for start in range(0, size - minibatch + 1, minibatch):
                figures = self._minibatch(data, order[start : start + minibatch], clip)
                clock.gradient_steps += 1
                for key, value in figures.items():
                    totals.setdefault(key, []).append(value)
            if self.target_kl is not None and totals["approx_kl"][-1] > self.target_kl:
                stopped_early = 1.0
                break
        metrics = {key: float(np.mean(values)) for key, values in totals.items()}
        metrics.update(
            {
                "lr": lr,
                "clip_coef": clip,
                "early_stop": stopped_early,
                **explained_variance_metric(data["values"], data["returns"]),
                **self.policy.stats(clock),
            }
        )
        return metrics

    def _minibatch(
        self, data: dict[str, torch.Tensor], index: torch.Tensor, clip: float
    ) -> dict[str, float]:
        obs, actions = data["obs"][index], data["actions"][index]
        advantages = data["advantages"][index]
        if self.normalize_advantages and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        outputs = self.model(obs)
        log_prob = self.policy.log_prob(outputs, actions)
        entropy = self.policy.entropy(outputs).mean()
        log_ratio = log_prob - data["log_prob"][index]
        ratio = log_ratio.exp()
        policy_loss = torch.max(
            -advantages * ratio, -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
        ).mean()
        values = self.critic(obs).squeeze(1)
        returns, old_values = data["returns"][index], data["values"][index]
        if self.clip_vloss:
            step = self.clip_vloss_coef
            clipped = old_values + (values - old_values).clamp(-step, step)
            value_loss = (
                0.5 * torch.max((values - returns).pow(2), (clipped - returns).pow(2)).mean()
            )
        else:
            value_loss = 0.5 * (values - returns).pow(2).mean()
        loss = policy_loss - self.ent_coef * entropy + self.vf_coef * value_loss
        grad_norm = self._step(loss)
        with torch.no_grad():
            approx_kl = ((ratio - 1.0) - log_ratio).mean().item()
            clip_fraction = ((ratio - 1.0).abs() > clip).float().mean().item()
        return {
            "loss": loss.item(),
            "policy/loss": policy_loss.item(),
            "value/loss": value_loss.item(),
            "policy/entropy": entropy.item(),
            "approx_kl": approx_kl,
            "clip_fraction": clip_fraction,
            "grad_norm": grad_norm,
        }
