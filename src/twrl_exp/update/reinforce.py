"""REINFORCE (Williams 1992) on whole episodes from a vector env, with optional baselines.

The gradient estimate is ``mean_i[ grad log pi(a_i|s_i) * A_i ] + c * grad H`` over every step of
the complete episodes in a batch, with ``A_i = G_i - b(s_i, t_i)`` (Sutton & Barto 2018, sec.
13.3-13.4). Steps are stored time-major in ``[rows, num_envs]`` arrays; an episode in flight when
an update happens is kept whole and used by the next one, so no sample is discarded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict, Unpack

import numpy as np
import torch
from torch import nn

from twrl_exp.choices import Baseline, OptimizerName, Schedule, parse
from twrl_exp.devices import device_of, to_numpy, to_tensor
from twrl_exp.errors import ConfigError
from twrl_exp.model.mlp import MLP
from twrl_exp.protocols import (
    Clock,
    LogProbPolicy,
    Metrics,
    Model,
    ModelFactory,
    Policy,
    State,
    Update,
    entry,
)
from twrl_exp.returns import discounted_returns, normalize, update_time_baseline
from twrl_exp.storage import EpisodeBatch, EpisodeStorage
from twrl_exp.update.checks import (
    check_range,
    feature_dtype,
    linear_lr,
    load_optimizer_state,
    make_optimizer,
    network,
)


class ReinforceSettings(TypedDict):
    """``update=reinforce``'s settings for :class:`Reinforce` (see its schema for each)."""

    gamma: float
    baseline: Baseline | str
    baseline_decay: float
    value_lr: float
    value_epochs: int
    normalize_advantages: bool
    ent_coef: float
    max_grad_norm: float | None
    optimizer: OptimizerName | str
    lr: float
    weight_decay: float
    optimizer_kwargs: Mapping[str, object]
    lr_schedule: Schedule | str
    lr_final_fraction: float


def reinforce(
    *,
    model: Model,
    policy: Policy,
    num_envs: int,
    total_env_steps: int | None,
    steps_per_batch: int,
    make_model: ModelFactory | None = None,
    seed: int = 0,
    **settings: Unpack[ReinforceSettings],
) -> Update[EpisodeBatch]:
    """``update=reinforce``: whole episodes (:class:`EpisodeStorage`) -> :class:`Reinforce`."""
    del make_model, seed
    check_range("update.steps_per_batch", steps_per_batch, 1, None)
    learner = Reinforce(model=model, policy=policy, total_env_steps=total_env_steps, **settings)
    storage = EpisodeStorage(
        num_envs=num_envs,
        feature_dim=learner.model.in_features,
        action_shape=learner.policy.action_shape,
        action_dtype=learner.policy.action_dtype,
        steps_per_batch=steps_per_batch,
        feature_dtype=feature_dtype(learner.model),
    )
    return Update(storage=storage, learner=learner)


class Reinforce:
    """Monte-Carlo policy gradient with none / time-dependent average / learned value baseline."""

    def __init__(
        self,
        *,
        model: Model,
        policy: Policy,
        total_env_steps: int | None,
        gamma: float,
        baseline: Baseline | str,
        baseline_decay: float,
        value_lr: float,
        value_epochs: int,
        normalize_advantages: bool,
        ent_coef: float,
        max_grad_norm: float | None,
        optimizer: OptimizerName | str,
        lr: float,
        weight_decay: float,
        optimizer_kwargs: Mapping[str, object],
        lr_schedule: Schedule | str,
        lr_final_fraction: float,
    ) -> None:
        self.model = network("reinforce", model)
        if not isinstance(policy, LogProbPolicy):
            raise ConfigError(
                "update=reinforce needs a stochastic policy with log-probabilities "
                f"(policy=categorical or policy=normal), not {type(policy).__name__}."
            )
        self.policy = policy
        check_range("update.gamma", gamma, 0.0, 1.0)
        check_range("update.lr", lr, 0.0, None, low_open=True)
        check_range("update.value_lr", value_lr, 0.0, None, low_open=True)
        check_range("update.baseline_decay", baseline_decay, 0.0, 1.0, high_open=True)
        check_range("update.ent_coef", ent_coef, 0.0, None)
        check_range("update.lr_final_fraction", lr_final_fraction, 0.0, 1.0)
        check_range("update.value_epochs", value_epochs, 1, None)
        if max_grad_norm is not None:
            check_range("update.max_grad_norm", max_grad_norm, 0.0, None, low_open=True)
        self.lr_schedule = parse(Schedule, "update.lr_schedule", lr_schedule)
        if self.lr_schedule is Schedule.linear and not total_env_steps:
            raise ConfigError(
                "update.lr_schedule=linear needs a step budget: set train.max_env_steps."
            )
        self.gamma = gamma
        self.baseline = parse(Baseline, "update.baseline", baseline)
        self.baseline_decay = baseline_decay
        self.normalize_advantages = normalize_advantages
        self.ent_coef, self.max_grad_norm = ent_coef, max_grad_norm
        self.lr, self.lr_final_fraction = lr, lr_final_fraction
        self.total_env_steps = total_env_steps
        self.params = list(self.model.parameters()) + list(policy.parameters())
        kwargs = dict(optimizer_kwargs)
        if not kwargs.get("fused"):  # one multi-tensor step, not one per parameter: same numbers
            kwargs.setdefault("foreach", True)
        self.optimizer = make_optimizer(optimizer, self.params, lr, weight_decay, kwargs)
        self.time_baseline = np.zeros(0)
        self.time_seen = np.zeros(0, bool)
        self.value_net: MLP | None = None
        self.value_epochs = value_epochs
        if self.baseline is Baseline.value:
            self.value_net = MLP(
                observation_space=self.model.observation_space,
                num_outputs=1,
                hidden_sizes=self.model.hidden_sizes,
                activation=self.model.activation,
                critic_hidden_sizes=None,
                dueling=False,
                ortho_init=getattr(self.model, "ortho_init", True),
                output_gain=1.0,
            )
            self.value_optimizer = torch.optim.Adam(self.value_net.parameters(), lr=value_lr)

    def _bootstrap(self, batch: EpisodeBatch) -> np.ndarray | None:
        """``[T, N]`` values of the final observations of truncated episodes; None (zeros)
        without a learned value baseline."""
        if self.value_net is None:
            return None
        boot = np.zeros(batch.rewards.shape)
        truncated = batch.end & ~batch.terminated & batch.mask
        if truncated.any():
            with torch.no_grad():
                final = to_tensor(batch.final_obs[truncated], device_of(self.value_net)).float()
                values = self.value_net(final)
            boot[truncated] = to_numpy(values.squeeze(1))
        return boot

    def _advantages(
        self, returns: np.ndarray, time_index: np.ndarray, obs: torch.Tensor
    ) -> tuple[np.ndarray, dict[str, float]]:
        stats: dict[str, float] = {}
        if self.baseline is Baseline.average:
            base = self._time_baseline(returns, time_index)
        elif self.value_net is not None:
            with torch.no_grad():
                base = to_numpy(self.value_net(obs.float()).squeeze(1).double())
            stats["value/loss"] = self._fit_value(obs, returns)
        else:
            base = np.zeros_like(returns)
        stats["baseline/mean"] = float(base.mean())
        advantages = returns - base
        if self.normalize_advantages:
            advantages = normalize(advantages)
        return advantages, stats

    def _time_baseline(self, returns: np.ndarray, time_index: np.ndarray) -> np.ndarray:
        """``b_t`` from earlier batches; a step index seen for the first time uses this batch."""
        old, old_seen = self.time_baseline, self.time_seen
        self.time_baseline, self.time_seen = update_time_baseline(
            old, old_seen, time_index, returns, self.baseline_decay
        )
        prior = self.time_baseline.copy()
        prior[: old.size][old_seen] = old[old_seen]
        return prior[time_index]

    def _fit_value(self, obs: torch.Tensor, returns: np.ndarray) -> float:
        assert self.value_net is not None
        target = to_tensor(returns, obs.device).float()
        loss = torch.zeros((), device=obs.device)
        for _ in range(self.value_epochs):
            loss = (self.value_net(obs.float()).squeeze(1) - target).pow(2).mean()
            self.value_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.value_optimizer.step()
        return loss.item()

    def batch_advantages(self, batch: EpisodeBatch) -> tuple[np.ndarray, dict[str, float]]:
        """The advantages of ``batch``'s closed steps (in ``batch.index`` order) and the
        baseline's figures; the baseline learns from the batch (its state moves on)."""
        all_returns = discounted_returns(
            batch.rewards, batch.end, self.gamma, self._bootstrap(batch)
        )
        returns = all_returns.reshape(-1)[batch.index]  # the closed steps of the [T * N] arrays
        obs = to_tensor(batch.obs, device_of(self.model))
        return self._advantages(returns, batch.time_index, obs)

    def lr_at(self, clock: Clock) -> float:
        """The learning rate of an update at ``clock`` (its schedule's value)."""
        if self.lr_schedule is Schedule.constant:
            return self.lr
        return linear_lr(self.lr, self.lr_final_fraction, clock.progress(self.total_env_steps))

    def batch_metrics(self, batch: EpisodeBatch, clock: Clock) -> Metrics:
        """What an update reports of ``batch`` besides its loss figures."""
        return {
            "batch/steps": float(len(batch.index)),
            "batch/episodes": float(np.count_nonzero(batch.end.reshape(-1)[batch.index])),
            **self.policy.stats(clock),
        }

    def learn(self, batch: EpisodeBatch, clock: Clock) -> Metrics:
        """One policy-gradient step on the closed episodes of ``batch``."""
        device = device_of(self.model)
        obs = to_tensor(batch.obs, device)  # the closed steps only, in index order
        actions = to_tensor(batch.actions, device)
        advantages, stats = self.batch_advantages(batch)
        self._set_lr(clock)
        outputs = self.model(obs)
        log_prob = self.policy.log_prob(outputs, actions)
        adv = to_tensor(advantages, device).float()
        loss = -(log_prob * adv).mean()
        if self.ent_coef:
            entropy = self.policy.entropy(outputs).mean()
            loss = loss - self.ent_coef * entropy
        else:  # only reported: no backward pass through it
            entropy = self.policy.entropy(outputs.detach()).mean()
        for param in self.params:  # zero_grad(set_to_none=True) without its profiler hook
            param.grad = None
        loss.backward()
        grad_norm = self._grad_norm()
        self.optimizer.step()
        clock.gradient_steps += 1
        return {
            "loss": loss.item(),
            "policy/entropy": entropy.item(),
            "grad_norm": float(grad_norm),
            "lr": self.optimizer.param_groups[0]["lr"],
            **stats,
            **self.batch_metrics(batch, clock),
        }

    def _grad_norm(self) -> torch.Tensor:
        """Total gradient norm, after clipping to ``max_grad_norm`` if set (only measured if not:
        scaling by a clip coefficient of 1 would change nothing)."""
        if self.max_grad_norm is not None:
            return nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        return nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])

    def _set_lr(self, clock: Clock) -> None:
        if self.lr_schedule is Schedule.constant:
            return
        lr = self.lr_at(clock)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def stats(self) -> Metrics:
        return {}

    def state_dict(self) -> State:
        state: State = {
            "optimizer": self.optimizer.state_dict(),
            "time_baseline": self.time_baseline,
            "time_seen": self.time_seen,
        }
        if self.value_net is not None:
            state["value_net"] = self.value_net.state_dict()
            state["value_optimizer"] = self.value_optimizer.state_dict()
        return state

    def load_state_dict(self, state: State) -> None:
        load_optimizer_state(self.optimizer, entry(state, "optimizer", dict))
        self.time_baseline = entry(state, "time_baseline", np.ndarray)
        self.time_seen = entry(state, "time_seen", np.ndarray)
        if self.value_net is not None:
            self.value_net.load_state_dict(entry(state, "value_net", dict))
            load_optimizer_state(self.value_optimizer, entry(state, "value_optimizer", dict))
