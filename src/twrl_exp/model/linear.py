"""Linear action-value functions over sparse binary features: tile coding and tables.

Both keep ``weights[feature, action]`` and encode an observation as the ``num_active`` feature
indices that are on, so ``Q(s, a) = sum_i weights[features(s)_i, a]`` (Sutton & Barto 2018,
sec. 9.5). TD(lambda) updates them in place.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from twrl_exp.errors import ConfigError, describe_space
from twrl_exp.model.tiles import tile_hash_primes, tile_indices

_MAX_DENSE_FEATURES = 4_000_000


class LinearModel:
    """Weights ``[num_features, num_outputs]`` read through active-feature indices."""

    is_torch = False
    is_linear = True

    def __init__(self, num_features: int, num_outputs: int, num_active: int, initial_value: float):
        self.num_features = num_features
        self.num_outputs = num_outputs
        self.num_active = num_active
        self.weights = np.full((num_features, num_outputs), initial_value, dtype=np.float64)
        self.kernels: Any = None

    def use_kernels(self, kernels: Any) -> None:
        """Compute outputs (tile coding: features with them) with compiled ``kernels``
        (``update.backend=numba``: :mod:`twrl_exp.update._td_kernels`), or with numpy if None;
        the results are identical."""
        self.kernels = kernels

    def features(self, obs: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def outputs(self, features: np.ndarray) -> np.ndarray:
        """``features: [N, num_active]`` -> action values ``[N, num_outputs]``."""
        if self.kernels is not None:
            return self.kernels.linear_outputs(self.weights, features)
        return np.add.reduce(self.weights[features], axis=1)

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights[...] = np.asarray(state["weights"])


class TileCoding(LinearModel):
    """Linear function over ``num_tilings`` offset grid tilings of a Box observation."""

    def __init__(
        self,
        *,
        observation_space: spaces.Space[Any],
        num_outputs: int,
        num_tilings: int,
        tiles_per_dim: int,
        memory_size: int | None,
        ranges: list[list[float]] | None,
        initial_value: float,
    ) -> None:
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise ConfigError(
                f"model=tilecoding needs a flat Box observation space, not "
                f"{describe_space(observation_space)}; "
                "use model=table for Discrete observations or model=mlp otherwise."
            )
        if num_tilings < 1 or tiles_per_dim < 1:
            raise ConfigError(
                f"model.num_tilings={num_tilings} and model.tiles_per_dim={tiles_per_dim} "
                "must both be >= 1."
            )
        if memory_size is not None and memory_size < num_tilings:
            raise ConfigError(f"model.memory_size={memory_size} must be >= num_tilings.")
        dims = observation_space.shape[0]
        self.low, self.high = self._bounds(observation_space, ranges, dims)
        self.num_tilings = num_tilings
        self.tiles_per_dim = tiles_per_dim
        self.memory_size = memory_size
        size = memory_size or num_tilings * (tiles_per_dim + 1) ** dims
        if size > _MAX_DENSE_FEATURES:
            raise ConfigError(
                f"model=tilecoding would need {size:,} features for {dims} dimensions; "
                "set model.memory_size (for example 65536) to hash them into a fixed memory."
            )
        super().__init__(size, num_outputs, num_tilings, initial_value)
        self.observation_space = observation_space
        self.span = self.high - self.low
        self.hash_primes = tile_hash_primes(dims)
        self.sizes = np.array([num_tilings, tiles_per_dim, memory_size or 0], dtype=np.int64)

    @staticmethod
    def _bounds(
        space: spaces.Box, ranges: list[list[float]] | None, dims: int
    ) -> tuple[np.ndarray, np.ndarray]:
        if ranges is not None:
            bounds = np.asarray(ranges, dtype=np.float64)
            if bounds.shape != (dims, 2) or np.any(bounds[:, 1] <= bounds[:, 0]):
                raise ConfigError(
                    f"model.ranges={ranges} must be {dims} pairs [low, high] with low < high."
                )
            return bounds[:, 0], bounds[:, 1]
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        unbounded = np.flatnonzero(~(np.isfinite(low) & np.isfinite(high)))
        if unbounded.size:
            raise ConfigError(
                f"model=tilecoding needs finite observation bounds, but dimensions "
                f"{unbounded.tolist()} are unbounded; give model.ranges=[[low,high],...] "
                f"for all {dims} dimensions."
            )
        return low, high

    def features(self, obs: np.ndarray) -> np.ndarray:
        """``obs: [N, D]`` -> active tile indices ``[N, num_tilings]``."""
        unit = (np.asarray(obs, dtype=np.float64) - self.low) / self.span
        return tile_indices(unit, self.num_tilings, self.tiles_per_dim, self.memory_size)

    def features_and_outputs(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``features(obs)`` and their ``outputs`` (the agent's one model call per vector step),
        computed by one compiled call where kernels are in use."""
        if self.kernels is None:
            features = self.features(obs)
            return features, self.outputs(features)
        return self.kernels.tile_values(
            np.asarray(obs), self.low, self.span, self.hash_primes, self.sizes, self.weights
        )


class Table(LinearModel):
    """One weight per (discrete state, action): a lookup table."""

    def __init__(
        self,
        *,
        observation_space: spaces.Space[Any],
        num_outputs: int,
        initial_value: float,
    ) -> None:
        if not isinstance(observation_space, spaces.Discrete):
            raise ConfigError(
                f"model=table needs a Discrete observation space, not "
                f"{describe_space(observation_space)}; "
                "use model=tilecoding (Box) or model=mlp."
            )
        self.start = int(observation_space.start)
        super().__init__(int(observation_space.n), num_outputs, 1, initial_value)
        self.observation_space = observation_space

    def features(self, obs: np.ndarray) -> np.ndarray:
        """``obs: [N]`` state ids -> ``[N, 1]`` row indices."""
        return (np.asarray(obs, dtype=np.int64) - self.start)[:, None]
