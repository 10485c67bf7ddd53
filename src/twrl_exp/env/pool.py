"""EnvPool (Weng et al. 2022) as a Gymnasium vector env: ``env.backend=envpool``.

EnvPool steps its envs in C++ threads. Its Gymnasium API already resets an env whose episode
ended on the *next* step (its reward 0, the action ignored), Gymnasium's next-step autoreset,
and truncates at ``max_episode_steps`` as a ``TimeLimit`` does; this adapter gives it the
``VectorEnv`` shape the runner uses (batched spaces, ``num_envs``, ``autoreset_mode``). A pool
is seeded when it is made, so ``reset(seed=...)`` makes it again.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from twrl_exp.errors import ConfigError


def task_id(gymnasium_id: str) -> str:
    """EnvPool's name of a Gymnasium id (Atari's ``ALE/Breakout-v5`` is ``Breakout-v5``)."""
    return gymnasium_id.removeprefix("ALE/")


# What importing EnvPool sets in os.environ for its own renderers (MPLBACKEND=Agg, an
# MPLCONFIGDIR): every process started afterwards, a Jupyter kernel among them, would inherit a
# non-interactive Matplotlib and show no plots.
_ENVIRONMENT_KEPT = ("MPLBACKEND", "MPLCONFIGDIR")


def _import_envpool() -> Any:
    """``import envpool``, leaving the process's environment as it was."""
    saved = {key: os.environ.get(key) for key in _ENVIRONMENT_KEPT}
    try:
        import envpool
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return envpool


class EnvPoolVectorEnv(VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    """``num_envs`` copies of ``env_id`` stepped by EnvPool."""

    def __init__(
        self, env_id: str, num_envs: int, max_episode_steps: int | None, kwargs: dict[str, Any]
    ) -> None:
        try:
            envpool = _import_envpool()
        except ImportError as exc:
            raise ConfigError(
                f"env.backend=envpool needs EnvPool, which is not installed ({exc}): pip "
                "install 'twrl-exp[envpool]' (Linux, x86-64 or arm64), or env.backend=gymnasium."
            ) from exc
        self.task = task_id(env_id)
        if self.task not in envpool.list_all_envs():
            raise ConfigError(
                f"env.backend=envpool has no {env_id} (EnvPool's envs: classic control, Box2D, "
                "MuJoCo, Atari and others: envpool.list_all_envs()); use env.backend=gymnasium."
            )
        self._envpool = envpool
        self.num_envs = num_envs
        self._settings = dict(kwargs)
        if max_episode_steps is not None:
            self._settings["max_episode_steps"] = max_episode_steps
        self.pool = self._make(0)
        self.single_observation_space = self.pool.observation_space
        self.single_action_space = self.pool.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def _make(self, seed: int) -> Any:
        try:
            pool = self._envpool.make_gymnasium(
                self.task, num_envs=self.num_envs, seed=seed, **self._settings
            )
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"env.kwargs {self._settings} are not accepted by EnvPool's {self.task}: {exc}."
            ) from exc
        return pool

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        del options
        if isinstance(seed, list):
            seed = seed[0]
        if seed is not None:  # as Gymnasium's reset(seed=...): start again from this seed
            self.pool.close()
            self.pool = self._make(int(seed))
        obs, info = self.pool.reset()
        return obs, info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.pool.step(np.asarray(actions))
        return obs, np.asarray(reward, dtype=np.float64), terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        del kwargs
        self.pool.close()
