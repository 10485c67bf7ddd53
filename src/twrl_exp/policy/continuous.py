"""Policies for off-policy actor-critics on Box actions, both acting in ``[-1, 1]`` and scaled to
the env's bounds on the way out (the critics see the ``[-1, 1]`` actions):

- ``TanhNormal`` (SAC, Haarnoja et al. 2018): a tanh-squashed Gaussian whose mean and log-std the
  model outputs; ``rsample`` draws reparameterised actions with their log-probability, with the
  change-of-variables correction ``- sum log(1 - tanh(u)^2)`` (Haarnoja et al. 2018, app. C).
- ``Deterministic`` (TD3, Fujimoto et al. 2018): ``tanh`` of the model's outputs, explored with
  Gaussian noise of standard deviation ``exploration_noise`` (in ``[-1, 1]`` units).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from twrl_exp.errors import ConfigError, describe_space
from twrl_exp.policy import sde
from twrl_exp.protocols import Clock, Metrics

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # CleanRL's bounds for SAC's log-std (SB3's: -20, 2)
CLIP_MEAN = 2.0  # gSDE: the means before the tanh lie in [-2, 2] (SB3's clip_mean)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _bounded_box(action_space: spaces.Space[Any], name: str, update: str) -> spaces.Box:
    if (
        not isinstance(action_space, spaces.Box)
        or len(action_space.shape) != 1
        or not action_space.is_bounded()
    ):
        raise ConfigError(
            f"policy={name} needs a bounded, flat Box action space, but the env's is "
            f"{describe_space(action_space)}; {update} acts on continuous actions only "
            "(for Discrete actions use policy=egreedy with update=dqn, or categorical with "
            "ppo/a2c/reinforce)."
        )
    return action_space


class _Scaled:
    """Maps ``[-1, 1]`` actions to the env's ``[low, high]``."""

    def _init_bounds(self, space: spaces.Box) -> None:
        self.low = space.low.astype(np.float64)
        self.high = space.high.astype(np.float64)
        self.action_dim = int(space.shape[0])
        self.action_shape = (self.action_dim,)
        self.action_dtype = np.dtype(np.float32)

    def random_actions(
        self, n: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``n`` uniformly random actions in ``[-1, 1]`` (the exploration of off-policy rules
        before they learn) and what :meth:`act` would record of them."""
        actions = rng.uniform(-1.0, 1.0, (n, self.action_dim)).astype(np.float32)
        return actions, self._extras_of(actions)

    def _extras_of(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        del actions
        return {}

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        unit = np.clip(actions, -1.0, 1.0)
        return (self.low + (unit + 1.0) * 0.5 * (self.high - self.low)).astype(np.float32)

    def stats(self, clock: Clock) -> Metrics:
        del clock
        return {}


class TanhNormal(_Scaled, sde.StateDependentPolicy, nn.Module):
    """``a = tanh(u)``, ``u ~ N(mean(s), std(s))``; the model outputs ``[mean, log_std]``.

    With ``use_sde`` (gSDE, :mod:`twrl_exp.policy.sde`) the model outputs the means and appends
    its last hidden layer ``z``; ``u = clip(mean, -2, 2) + z @ W`` with ``W``'s scale learned by
    the actor's optimiser, and ``z`` learned through the noise too (SB3's SAC settings).
    """

    def __init__(
        self,
        *,
        action_space: spaces.Space[Any],
        total_env_steps: int | None = None,
        use_sde: bool,
        sde_sample_freq: int,
        init_std: float,
    ) -> None:
        del total_env_steps
        nn.Module.__init__(self)
        self._init_bounds(_bounded_box(action_space, "tanh_normal", "update=sac"))
        sde.check_options("tanh_normal", sde_sample_freq, init_std)
        self.latent_outputs = bool(use_sde)
        self.sde: sde.StateDependentNoise | None = None
        self.num_outputs = 2 * self.action_dim
        if use_sde:
            self.num_outputs = self.action_dim
            self.sde = sde.StateDependentNoise(
                action_dim=self.action_dim,
                init_std=init_std,
                learn_std=True,
                min_std=math.exp(LOG_STD_MIN),
                sample_freq=sde_sample_freq,
                learn_features=True,
            )

    def _split(self, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, log_std = outputs[:, : self.action_dim], outputs[:, self.action_dim :]
        return mean, np.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, outputs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mean, log_std = self._split(outputs)
        return np.tanh(mean + np.exp(log_std) * rng.standard_normal(mean.shape))

    def greedy(self, outputs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        del rng
        if self.sde is not None:
            return np.tanh(np.clip(outputs[:, : self.action_dim], -CLIP_MEAN, CLIP_MEAN))
        return np.tanh(self._split(outputs)[0])

    def act(
        self, outputs: np.ndarray, rng: np.random.Generator, clock: Clock, *, greedy: bool = False
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if greedy:
            return self.greedy(outputs, rng).astype(np.float32), {}
        if self.sde is not None:
            mean, latent = sde.split(outputs, self.action_dim)
            mean = np.clip(mean, -CLIP_MEAN, CLIP_MEAN)
            pre_squash = mean + self.sde.noise_numpy(latent, rng, clock)
        else:
            mean, log_std = self._split(outputs)
            pre_squash = mean + np.exp(log_std) * rng.standard_normal(mean.shape)
        return np.tanh(pre_squash).astype(np.float32), {"pre_squash": pre_squash}

    def _extras_of(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        bound = 1.0 - 1e-6  # atanh(+-1) is infinite
        return {"pre_squash": np.arctanh(np.clip(actions.astype(np.float64), -bound, bound))}

    def rsample(
        self, outputs: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised ``[..., A]`` actions in ``[-1, 1]`` and their ``[...]`` log-probs
        (``outputs: [..., 2A]``: ``[B, 2A]`` for one run, ``[K, B, 2A]`` for a population);
        ``noise``: the standard normal draws to use (a population member's, drawn from its own
        generator), else drawn from torch's global RNG. With gSDE (``outputs: [B, A + L]``), one
        noise matrix drawn for the batch."""
        if self.sde is not None:
            mean, latent = sde.split(outputs, self.action_dim)
            mean = mean.clamp(-CLIP_MEAN, CLIP_MEAN)
            pre_squash = mean + self.sde.rsample_noise(latent)
            log_prob = self.sde.log_prob(mean, latent, pre_squash)
        else:
            mean, log_std = outputs[..., : self.action_dim], outputs[..., self.action_dim :]
            log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
            if noise is None:
                noise = torch.randn_like(mean)
            pre_squash = mean + log_std.exp() * noise
            log_prob = (-0.5 * noise.pow(2) - log_std - _LOG_SQRT_2PI).sum(dim=-1)
        action = torch.tanh(pre_squash)
        # log(1 - tanh(u)^2), written stably as 2 * (log 2 - u - softplus(-2u))
        correction = 2.0 * (math.log(2.0) - pre_squash - nn.functional.softplus(-2.0 * pre_squash))
        return action, log_prob - correction.sum(dim=-1)

    def stats(self, clock: Clock) -> Metrics:
        del clock
        return self.sde_stats()


class Deterministic(_Scaled, nn.Module):
    """``a = tanh(model(s))``, explored with ``N(0, exploration_noise^2)`` noise."""

    def __init__(
        self,
        *,
        action_space: spaces.Space[Any],
        total_env_steps: int | None = None,
        exploration_noise: float,
    ) -> None:
        del total_env_steps
        nn.Module.__init__(self)
        self._init_bounds(_bounded_box(action_space, "deterministic", "update=td3"))
        if not math.isfinite(exploration_noise) or exploration_noise < 0:
            raise ConfigError(
                f"policy.exploration_noise={exploration_noise} is invalid: it must be >= 0."
            )
        self.num_outputs = self.action_dim
        self.exploration_noise = exploration_noise

    def greedy(self, outputs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        del rng
        return np.tanh(outputs)

    def sample(self, outputs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = self.exploration_noise * rng.standard_normal(outputs.shape)
        return np.clip(np.tanh(outputs) + noise, -1.0, 1.0)

    def act(
        self, outputs: np.ndarray, rng: np.random.Generator, clock: Clock, *, greedy: bool = False
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        del clock
        actions = self.greedy(outputs, rng) if greedy else self.sample(outputs, rng)
        return actions.astype(np.float32), {}

    def action(self, outputs: torch.Tensor) -> torch.Tensor:
        """The deterministic ``[B, A]`` action in ``[-1, 1]``, differentiable."""
        return torch.tanh(outputs)
