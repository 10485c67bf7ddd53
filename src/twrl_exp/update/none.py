"""The update that learns nothing (random agents, evaluating a fixed policy)."""

from __future__ import annotations

from typing import Any

import numpy as np


class NoUpdate:
    def __init__(
        self, *, model: Any, policy: Any, num_envs: int, total_env_steps: int | None = None
    ) -> None:
        del model, policy, num_envs, total_env_steps

    def start(self, features: np.ndarray, actions: np.ndarray) -> None:
        del features, actions

    def observe(self, **step: np.ndarray) -> None:
        del step

    def stats(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state
