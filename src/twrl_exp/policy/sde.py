"""Generalised state-dependent exploration (gSDE; Raffin, Kober and Stulp 2022, "Smooth
exploration for robotic reinforcement learning", CoRL 2021), an option of the Gaussian policies
(``policy.use_sde=true`` on ``normal`` for PPO/A2C/REINFORCE and ``tanh_normal`` for SAC).

Instead of fresh noise at every step, the noise is a linear function of the actor's last hidden
layer ``z(s)`` (the model appends it to its outputs: ``[head, z]``)::

    eps(s) = z(s) @ W,    W[l, a] ~ N(0, sigma[l, a]^2),    sigma = exp(log_std)  ([L, A])

``W`` is drawn for each env from the policy's RNG and kept for ``sde_sample_freq`` vector steps,
and drawn anew after every learning update (``sde_sample_freq=-1``: only then, once per rollout
as in SB3). Within that window the same state gets the same noise and nearby states similar
noise: smooth exploration, which matters on robots. Given ``z(s)``, the pre-squash action is
Gaussian with variance ``z(s)^2 @ sigma^2 + 1e-6`` per action: what ``log_prob``, ``entropy`` and
SAC's reparameterised draws use, as SB3's ``StateDependentNoiseDistribution`` does.

Two choices follow SB3's defaults: PPO's noise reads ``z`` without a gradient (the features are
learned by the mean only: ``learn_features=False``), SAC's with it (``learn_features=True``);
and SAC's means are clipped to ``[-2, 2]`` before the tanh (its ``clip_mean``), which keeps the
noise from saturating the squash.

Only the training stream's draws (the RNG :meth:`StateDependentNoise.bind` names: the agent's
policy stream) keep and resample ``W``; a stochastic evaluation (``eval.deterministic=false``)
draws its own matrices at every step from its RNG and leaves training's untouched. The kept
matrices and when they were drawn are part of the policy's state, so a resumed run goes on
with the same noise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from twrl_exp.devices import to_numpy
from twrl_exp.errors import ConfigError
from twrl_exp.protocols import Clock

EPSILON = 1e-6  # added to each action's variance (SB3's epsilon)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def check_options(policy: str, sample_freq: int, init_std: float) -> None:
    """One sentence for a bad gSDE option of ``policy=<policy>``."""
    if isinstance(sample_freq, bool) or sample_freq == 0 or sample_freq < -1:
        raise ConfigError(
            f"policy.sde_sample_freq={sample_freq} is invalid: it must be -1 (new noise after "
            f"each learning update only) or >= 1 (also every that many vector steps)."
        )
    if not math.isfinite(init_std) or init_std <= 0:
        raise ConfigError(
            f"policy.init_std={init_std} is invalid for policy={policy}: it must be > 0."
        )


class StateDependentNoise(nn.Module):
    """The noise matrices' scale ``sigma`` (``log_std``: ``[L, A]``, learned unless
    ``learn_std=false``) and the training stream's current matrices ``W``."""

    def __init__(
        self,
        *,
        action_dim: int,
        init_std: float,
        learn_std: bool,
        min_std: float,
        sample_freq: int,
        learn_features: bool,
    ) -> None:
        super().__init__()
        self.action_dim, self.init_std, self.learn_std = action_dim, init_std, learn_std
        self.log_min_std = math.log(min_std)
        self.sample_freq, self.learn_features = sample_freq, learn_features
        self.latent_dim = 0
        self._train_rng: np.random.Generator | None = None
        self._weights: np.ndarray | None = None  # [N, L, A] float64, one matrix per env
        self._drawn_at_update = -1  # clock.updates when the matrices were drawn
        self._steps = 0  # vector steps acted with them

    def attach(self, latent_dim: int) -> None:
        """Size ``sigma`` for the model's last hidden layer (``latent_dim`` features)."""
        self.latent_dim = latent_dim
        log_std = torch.full((latent_dim, self.action_dim), math.log(self.init_std))
        if self.learn_std:
            self.log_std = nn.Parameter(log_std)
        else:
            self.register_buffer("log_std", log_std)

    def bind(self, rng: np.random.Generator) -> None:
        """The training stream: its draws keep and resample the matrices."""
        self._train_rng = rng

    # ------------------------------------------------------------------------- numpy (acting)

    def std_numpy(self) -> np.ndarray:
        return np.exp(np.maximum(to_numpy(self.log_std).astype(np.float64), self.log_min_std))

    def variance_numpy(self, latent: np.ndarray) -> np.ndarray:
        """Each action's variance given ``latent`` ``[N, L]``: ``[N, A]``."""
        return np.square(latent, dtype=np.float64) @ np.square(self.std_numpy()) + EPSILON

    def log_prob_numpy(self, mean: np.ndarray, latent: np.ndarray, x: np.ndarray) -> np.ndarray:
        """:meth:`log_prob` in numpy, for acting: ``[N]``."""
        variance = self.variance_numpy(latent)
        return (-0.5 * np.square(x - mean) / variance - 0.5 * np.log(variance) - _LOG_SQRT_2PI).sum(
            axis=1
        )

    def noise_numpy(self, latent: np.ndarray, rng: np.random.Generator, clock: Clock) -> np.ndarray:
        """``z(s) @ W`` for each env: ``[N, L]`` -> ``[N, A]``."""
        n = len(latent)
        if rng is not self._train_rng:  # an evaluation's sampled actions: matrices of its own
            weights = self._draw(n, rng)
        else:
            if (
                self._weights is None
                or len(self._weights) != n
                or clock.updates != self._drawn_at_update
                or (self.sample_freq > 0 and self._steps >= self.sample_freq)
            ):
                self._weights = self._draw(n, rng)
                self._drawn_at_update, self._steps = clock.updates, 0
            self._steps += 1
            weights = self._weights
        return np.einsum("nl,nla->na", latent.astype(np.float64), weights)

    def _draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.std_numpy() * rng.standard_normal((n, self.latent_dim, self.action_dim))

    # ------------------------------------------------------------------------ torch (learning)

    def std(self) -> torch.Tensor:
        return self.log_std.clamp(min=self.log_min_std).exp()

    def latent(self, latent: torch.Tensor) -> torch.Tensor:
        return latent if self.learn_features else latent.detach()

    def variance(self, latent: torch.Tensor) -> torch.Tensor:
        """Each action's variance given ``latent`` ``[B, L]``: ``[B, A]``."""
        return self.latent(latent).pow(2) @ self.std().pow(2) + EPSILON

    def rsample_noise(self, latent: torch.Tensor) -> torch.Tensor:
        """``z(s) @ W`` with one fresh matrix for the batch, differentiable in ``sigma`` (and in
        ``z`` where features are learned): SAC's reparameterised draws."""
        weights = self.std() * torch.randn_like(self.log_std)
        return self.latent(latent) @ weights

    def log_prob(self, mean: torch.Tensor, latent: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log N(x; mean, variance(latent))`` summed over actions: ``[B]``."""
        variance = self.variance(latent)
        return (-0.5 * (x - mean).pow(2) / variance - 0.5 * variance.log() - _LOG_SQRT_2PI).sum(
            dim=-1
        )

    def entropy(self, latent: torch.Tensor) -> torch.Tensor:
        return (0.5 + _LOG_SQRT_2PI + 0.5 * self.variance(latent).log()).sum(dim=-1)

    # ---------------------------------------------------------------------------- checkpoints

    def get_extra_state(self) -> dict[str, Any]:
        weights = None if self._weights is None else torch.from_numpy(self._weights.copy())
        return {"weights": weights, "drawn_at_update": self._drawn_at_update, "steps": self._steps}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        weights = state.get("weights")
        self._weights = None if weights is None else weights.numpy().astype(np.float64)
        self._drawn_at_update = int(state.get("drawn_at_update", -1))
        self._steps = int(state.get("steps", 0))


class StateDependentPolicy:
    """What a Gaussian policy with the gSDE option shares: ``sde`` (None without it),
    ``latent_outputs`` (build asks the model to append its last hidden layer), and the hooks
    build and the agent call."""

    sde: StateDependentNoise | None
    latent_outputs: bool

    def attach_latent(self, latent_dim: int) -> None:
        """gSDE: the model's last hidden layer has ``latent_dim`` features."""
        assert self.sde is not None
        self.sde.attach(latent_dim)

    def bind_exploration(self, rng: np.random.Generator) -> None:
        """gSDE: ``rng`` is the training stream, whose draws keep the noise matrices."""
        if self.sde is not None:
            self.sde.bind(rng)

    def sde_stats(self) -> dict[str, float]:
        """The noise matrices' scale (not an action's std), where gSDE is on."""
        return {} if self.sde is None else {"policy/sde_std": float(self.sde.std_numpy().mean())}


def split(outputs: Any, action_dim: int) -> tuple[Any, Any]:
    """The model's ``[..., A + L]`` outputs as (head ``[..., A]``, latent ``[..., L]``)."""
    return outputs[..., :action_dim], outputs[..., action_dim:]
