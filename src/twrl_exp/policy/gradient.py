"""Differentiable stochastic policies over an MLP's outputs, for policy-gradient updates.

Acting runs in numpy on outputs computed without gradients (one model call per vector step);
``log_prob`` and ``entropy`` recompute the same distribution in torch for the update.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from twrl_exp.devices import to_numpy
from twrl_exp.errors import ConfigError, describe_space
from twrl_exp.policy import sde
from twrl_exp.protocols import Clock, Metrics

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
# Up to this many actions, acting works on columns (faster: a reduction over a short axis pays
# one inner-loop call per row). numpy adds fewer than 8 numbers along an axis in order, so the
# column sums equal its row reductions bit for bit.
_COLUMNWISE_ACTIONS = 5


class _LogProb(Mapping[str, np.ndarray]):
    """``{"log_prob": log pi(a|s)}`` of a categorical draw, worked out when first read: it takes
    several array operations every vector step, and a storage of whole episodes never reads it."""

    __slots__ = ("_parts", "_value")

    def __init__(self, shifted: np.ndarray, actions: np.ndarray, total: np.ndarray) -> None:
        self._parts = (shifted, actions, total)  # logits - max, the actions, sum(exp(shifted))
        self._value: np.ndarray | None = None

    def __getitem__(self, key: str) -> np.ndarray:
        if key != "log_prob":
            raise KeyError(key)
        if self._value is None:
            shifted, actions, total = self._parts
            self._value = shifted[np.arange(len(actions)), actions] - np.log(total)
        return self._value

    def __iter__(self) -> Iterator[str]:
        return iter(("log_prob",))

    def __len__(self) -> int:
        return 1


class Categorical(nn.Module):
    """Softmax policy over ``n`` discrete actions; the model outputs the logits ``[N, n]``."""

    def __init__(
        self, *, action_space: spaces.Space[Any], total_env_steps: int | None = None
    ) -> None:
        del total_env_steps
        super().__init__()
        if not isinstance(action_space, spaces.Discrete):
            raise ConfigError(
                f"policy=categorical needs a Discrete action space, but the env's is "
                f"{describe_space(action_space)}; use policy=normal for continuous (Box) actions."
            )
        self.num_outputs = int(action_space.n)
        self.start = int(action_space.start)
        self.action_shape: tuple[int, ...] = ()
        self.action_dtype = np.dtype(np.int64)

    def sample(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Inverse-CDF sampling from ``softmax(logits)``: ``[N, n]`` -> ``[N]`` int64."""
        return self._draw(np.exp(logits - logits.max(axis=1, keepdims=True)), rng)

    def _draw(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Inverse-CDF draw from unnormalised probabilities ``z``: ``[N, n]`` -> ``[N]``."""
        cdf = np.cumsum(z, axis=1)
        u = rng.random((len(z), 1)) * cdf[:, -1:]
        return np.minimum((cdf < u).sum(axis=1), self.num_outputs - 1)

    def greedy(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        del rng
        return logits.argmax(axis=1)

    def act(
        self, logits: np.ndarray, rng: np.random.Generator, clock: Clock, *, greedy: bool = False
    ) -> tuple[np.ndarray, Mapping[str, np.ndarray]]:
        """Actions ``[N]`` and what learning needs of them: ``log_prob`` ``[N]``."""
        del clock
        if not greedy and self.num_outputs <= _COLUMNWISE_ACTIONS:
            return self._act_by_columns(logits, rng)
        shifted = logits - logits.max(axis=1, keepdims=True)
        z = np.exp(shifted)  # once for the draw and the log-probability
        actions = self.greedy(logits, rng) if greedy else self._draw(z, rng)
        return actions, _LogProb(shifted, actions, z.sum(axis=1))

    def _act_by_columns(
        self, logits: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, Mapping[str, np.ndarray]]:
        """:meth:`act` for a few actions in operations on columns (it runs every vector step):
        the same draws and log-probabilities as :meth:`sample` and :meth:`act`, bit for bit."""
        top = functools.reduce(np.maximum, logits.T)
        shifted = logits - top[:, None]
        cdf = list(itertools.accumulate(np.exp(shifted).T, np.add))
        u = rng.random(len(logits))
        u *= cdf[-1]
        # The count of cdf < u over all n columns, capped at n - 1.
        actions = (cdf[0] < u).astype(np.int64)
        for bound in cdf[1:-1]:
            actions += bound < u
        return actions, _LogProb(shifted, actions, cdf[-1])

    def probabilities(self, logits: np.ndarray, clock: Clock) -> np.ndarray:
        """``softmax(logits)``: ``[N, n]`` (Boltzmann action selection over action values)."""
        del clock
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        return actions + self.start if self.start else actions

    def log_prob(self, logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``log pi(a|s)``: ``[B, n]``, ``[B]`` -> ``[B]``."""
        log_p = torch.log_softmax(logits, dim=1)
        return log_p.gather(1, actions.long().unsqueeze(1)).squeeze(1)

    def entropy(self, logits: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(logits, dim=1)
        return -(log_p.exp() * log_p).sum(dim=1)

    def stats(self, clock: Clock) -> Metrics:
        del clock
        return {}


class Normal(sde.StateDependentPolicy, nn.Module):
    """Diagonal Gaussian policy; the model outputs the means ``[N, action_dim]``.

    The standard deviation is state-independent: a learned parameter (``learn_std``) or fixed;
    or, with ``use_sde``, the noise is state-dependent (gSDE, :mod:`twrl_exp.policy.sde`: the
    model then appends its last hidden layer to the means). Samples are kept unclipped for
    ``log_prob``; the env receives them clipped to its bounds.
    """

    def __init__(
        self,
        *,
        action_space: spaces.Space[Any],
        total_env_steps: int | None = None,
        init_std: float,
        learn_std: bool,
        min_std: float,
        use_sde: bool,
        sde_sample_freq: int,
    ) -> None:
        super().__init__()
        if not isinstance(action_space, spaces.Box) or len(action_space.shape) != 1:
            raise ConfigError(
                f"policy=normal needs a flat Box action space, but the env's is "
                f"{describe_space(action_space)}; "
                "use policy=categorical or policy=egreedy for Discrete actions."
            )
        if init_std <= 0 or min_std <= 0:
            raise ConfigError(
                f"policy.init_std={init_std} and policy.min_std={min_std} must be positive."
            )
        sde.check_options("normal", sde_sample_freq, init_std)
        self.num_outputs = int(action_space.shape[0])
        self.action_shape = (self.num_outputs,)
        self.action_dtype = np.dtype(np.float32)
        self.low = action_space.low.astype(np.float64)
        self.high = action_space.high.astype(np.float64)
        self.min_std = min_std
        del total_env_steps
        # gSDE: the model appends its last hidden layer to the means (build asks it to).
        self.latent_outputs = bool(use_sde)
        self.sde: sde.StateDependentNoise | None = None
        if use_sde:  # PPO's gSDE reads the features without a gradient (SB3's default)
            self.sde = sde.StateDependentNoise(
                action_dim=self.num_outputs,
                init_std=init_std,
                learn_std=learn_std,
                min_std=min_std,
                sample_freq=sde_sample_freq,
                learn_features=False,
            )
            return
        log_std = torch.full((self.num_outputs,), math.log(init_std))
        if learn_std:
            self.log_std = nn.Parameter(log_std)
        else:
            self.register_buffer("log_std", log_std)

    def _std(self) -> np.ndarray:
        return np.maximum(np.exp(to_numpy(self.log_std)), self.min_std)

    def sample(self, means: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Independent Gaussian draws around ``means`` (without gSDE)."""
        noise = rng.standard_normal(means.shape).astype(np.float32)
        return means + self._std().astype(np.float32) * noise

    def greedy(self, means: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        del rng
        return means[:, : self.num_outputs]

    def act(
        self, means: np.ndarray, rng: np.random.Generator, clock: Clock, *, greedy: bool = False
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Unclipped actions ``[N, A]`` (the env gets them clipped) and their ``log_prob``."""
        if self.sde is not None:
            return self._act_sde(means, rng, clock, greedy)
        actions = self.greedy(means, rng) if greedy else self.sample(means, rng)
        std = self._std()
        z = (actions - means) / std
        log_prob = (-0.5 * z**2 - np.log(std) - _LOG_SQRT_2PI).sum(axis=1)
        return actions, {"log_prob": log_prob}

    def _act_sde(
        self, outputs: np.ndarray, rng: np.random.Generator, clock: Clock, greedy: bool
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        assert self.sde is not None
        means, latent = sde.split(outputs, self.num_outputs)
        if greedy:
            actions = means.astype(np.float32)
        else:
            actions = (means + self.sde.noise_numpy(latent, rng, clock)).astype(np.float32)
        return actions, {"log_prob": self.sde.log_prob_numpy(means, latent, actions)}

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        return np.clip(actions, self.low, self.high).astype(np.float32)

    def _log_std(self) -> torch.Tensor:
        return self.log_std.clamp(min=math.log(self.min_std))

    def log_prob(self, means: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self.sde is not None:
            mean, latent = sde.split(means, self.num_outputs)
            return self.sde.log_prob(mean, latent, actions)
        log_std = self._log_std()
        z = (actions - means) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - _LOG_SQRT_2PI).sum(dim=1)

    def entropy(self, means: torch.Tensor) -> torch.Tensor:
        if self.sde is not None:
            return self.sde.entropy(sde.split(means, self.num_outputs)[1])
        per_dim = 0.5 + _LOG_SQRT_2PI + self._log_std()
        return per_dim.sum().expand(means.shape[0])

    def stats(self, clock: Clock) -> Metrics:
        del clock
        if self.sde is not None:
            return self.sde_stats()
        return {"policy/std": float(self._std().mean())}
