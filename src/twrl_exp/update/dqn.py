"""Deep Q-learning (Mnih et al. 2015) from a replay buffer, with its standard improvements.

The model outputs ``Q(s, .)`` (a dueling head with ``model.dueling=true``, Wang et al. 2016); a
frozen target copy gives the bootstrap, refreshed every ``target_update_interval`` env steps by
a hard copy (``tau = 1``) or Polyak averaging (``tau < 1``). The regression target of a stored
n-step transition ``(s, a, R, d, s')`` (:class:`ReplayStorage`) is

    y = R + d * Q_target(s', argmax_a Q(s', a))    (Double DQN, van Hasselt et al. 2016)
    y = R + d * max_a Q_target(s', a)              (double_q = false)

with the Huber (smooth L1) or squared loss. Exploration is the policy's (``policy=egreedy``, its
epsilon linear per env step with ``policy.exploration_fraction``).

``prioritized=true`` replays by priority (:class:`PrioritizedReplayStorage`, Schaul et al.
2016): each transition's loss is weighted by its importance-sampling weight, and after each
learn the learner tells the buffer every sampled transition's ``|y - Q(s, a)|``
(:meth:`DQN.feedback`), its new priority.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict, Unpack

import numpy as np
import torch
from torch import nn

from twrl_exp.choices import OptimizerName, QLoss, parse
from twrl_exp.devices import device_of, to_numpy, to_tensor
from twrl_exp.errors import ConfigError
from twrl_exp.protocols import (
    ActionValuePolicy,
    Clock,
    Metrics,
    Model,
    ModelFactory,
    Policy,
    State,
    Update,
    entry,
    integer,
)
from twrl_exp.storage import (
    PrioritizedReplayStorage,
    ReplayBatch,
    ReplaySettings,
    ReplayStorage,
)
from twrl_exp.update.checks import (
    check_range,
    feature_dtype,
    load_optimizer_state,
    make_optimizer,
    network,
)
from twrl_exp.update.targets import frozen_copy, soft_update


class DQNSettings(TypedDict):
    """:class:`DQN`'s settings (see ``update=dqn``'s schema for each)."""

    lr: float
    optimizer: OptimizerName | str
    optimizer_kwargs: Mapping[str, object]
    target_update_interval: int
    tau: float
    double_q: bool
    loss: QLoss | str
    max_grad_norm: float | None


def dqn(
    *,
    model: Model,
    policy: Policy,
    num_envs: int,
    make_model: ModelFactory,
    total_env_steps: int | None,
    seed: int,
    buffer_size: int,
    batch_size: int,
    learning_starts: int,
    train_freq: int,
    gradient_steps: int,
    n_step: int,
    gamma: float,
    prioritized: bool,
    priority_alpha: float,
    priority_beta: float,
    priority_eps: float,
    **settings: Unpack[DQNSettings],
) -> Update[ReplayBatch]:
    """``update=dqn``: a replay buffer (:class:`ReplayStorage`, or with ``prioritized``
    :class:`PrioritizedReplayStorage`) -> :class:`DQN`."""
    del make_model
    if policy.action_shape != () or not policy.num_outputs:
        raise ConfigError(
            "update=dqn needs Discrete actions (one Q-value per action); for Box actions use "
            "update=sac or update=td3."
        )
    learner = DQN(model=model, policy=policy, gamma=gamma, **settings)
    replay = ReplaySettings(
        num_envs=num_envs,
        feature_dim=learner.q.in_features,
        action_shape=(),
        action_dtype=np.dtype(np.int64),
        buffer_size=buffer_size,
        batch_size=batch_size,
        learning_starts=learning_starts,
        train_freq=train_freq,
        gradient_steps=gradient_steps,
        gamma=gamma,
        n_step=n_step,
        seed=seed,
        feature_dtype=feature_dtype(learner.q),
    )
    storage = (
        PrioritizedReplayStorage(
            **replay,
            priority_alpha=priority_alpha,
            priority_beta=priority_beta,
            priority_eps=priority_eps,
            total_env_steps=total_env_steps,
        )
        if prioritized
        else ReplayStorage(**replay)
    )
    return Update(storage=storage, learner=learner)


class DQN:
    """Q-learning on replayed minibatches, one gradient step per minibatch of a batch."""

    def __init__(
        self,
        *,
        model: Model,
        policy: Policy,
        gamma: float,
        lr: float,
        optimizer: OptimizerName | str,
        optimizer_kwargs: Mapping[str, object],
        target_update_interval: int,
        tau: float,
        double_q: bool,
        loss: QLoss | str,
        max_grad_norm: float | None,
    ) -> None:
        self.q = network("dqn", model, " (use update=td_lambda for tile coding)")
        if not isinstance(policy, ActionValuePolicy):
            raise ConfigError(
                "update=dqn learns action values: use policy=egreedy (or greedy, categorical), "
                f"not {type(policy).__name__}."
            )
        check_range("update.gamma", gamma, 0.0, 1.0)
        check_range("update.lr", lr, 0.0, None, low_open=True)
        check_range("update.tau", tau, 0.0, 1.0, low_open=True)
        check_range("update.target_update_interval", target_update_interval, 1, None)
        if max_grad_norm is not None:
            check_range("update.max_grad_norm", max_grad_norm, 0.0, None, low_open=True)
        self.loss = parse(QLoss, "update.loss", loss)
        self.target = frozen_copy(self.q)
        self.gamma, self.tau, self.double_q = gamma, tau, double_q
        self.target_update_interval = target_update_interval
        self.max_grad_norm = max_grad_norm
        self.optimizer = make_optimizer(
            optimizer, list(self.q.parameters()), lr, 0.0, optimizer_kwargs
        )
        self.env_steps_at_sync = 0
        self.td_errors = np.zeros((0, 0), np.float32)

    def learn(self, batch: ReplayBatch, clock: Clock) -> Metrics:
        """One gradient step per minibatch of ``batch``; the last one's figures."""
        metrics: Metrics = {}
        errors = []
        device = device_of(self.q)
        for g in range(batch.gradient_steps):
            metrics, error = self._gradient_step(
                to_tensor(batch.obs[g], device),
                to_tensor(batch.actions[g], device).long(),
                to_tensor(batch.rewards[g], device),
                to_tensor(batch.discounts[g], device),
                to_tensor(batch.next_obs[g], device),
                None if batch.weights is None else to_tensor(batch.weights[g], device),
            )
            errors.append(error)
            clock.gradient_steps += 1
            self._maybe_sync(clock)
        self.td_errors = np.stack(errors)
        metrics["target/syncs"] = float(clock.env_steps // self.target_update_interval)
        return metrics

    def feedback(self) -> np.ndarray:
        """``|y - Q(s, a)|`` of every transition of the last batch (``[G, B]``), each before
        its own gradient step: the priorities of prioritised replay."""
        return self.td_errors

    def _gradient_step(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        discounts: torch.Tensor,
        next_obs: torch.Tensor,
        weights: torch.Tensor | None,
    ) -> tuple[Metrics, np.ndarray]:
        with torch.no_grad():
            next_target = self.target(next_obs)
            if self.double_q:
                best = self.q(next_obs).argmax(dim=1, keepdim=True)
                bootstrap = next_target.gather(1, best).squeeze(1)
            else:
                bootstrap = next_target.max(dim=1).values
            targets = rewards + discounts * bootstrap
        q_taken = self.q(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
        reduction = "mean" if weights is None else "none"
        if self.loss is QLoss.huber:
            loss = nn.functional.smooth_l1_loss(q_taken, targets, reduction=reduction)
        else:
            loss = nn.functional.mse_loss(q_taken, targets, reduction=reduction)
        if weights is not None:  # importance sampling corrects a prioritised sample
            loss = (weights * loss).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        limit = self.max_grad_norm if self.max_grad_norm is not None else float("inf")
        grad_norm = float(nn.utils.clip_grad_norm_(self.q.parameters(), limit))
        self.optimizer.step()
        error = to_numpy((targets - q_taken.detach()).abs())
        return {"loss": loss.item(), "q/mean": q_taken.mean().item(), "grad_norm": grad_norm}, error

    def _maybe_sync(self, clock: Clock) -> None:
        """Refresh the target every ``target_update_interval`` env steps (``tau``: how much)."""
        if clock.env_steps - self.env_steps_at_sync >= self.target_update_interval:
            soft_update(self.target, self.q, self.tau)
            self.env_steps_at_sync = clock.env_steps

    def stats(self) -> Metrics:
        return {}

    def state_dict(self) -> State:
        return {
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "env_steps_at_sync": self.env_steps_at_sync,
        }

    def load_state_dict(self, state: State) -> None:
        self.target.load_state_dict(entry(state, "target", dict))
        load_optimizer_state(self.optimizer, entry(state, "optimizer", dict))
        self.env_steps_at_sync = integer(state, "env_steps_at_sync")
