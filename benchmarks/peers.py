"""Stable-Baselines3 under the benchmark's protocol: greedy evaluation of 20 episodes every
fixed number of env steps on a separate env, evaluation time excluded, stop once solved.

Hyperparameters are rl-baselines3-zoo's for CartPole-v1 (hyperparams/ppo.yml, a2c.yml).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np


def linear(start: float) -> Any:
    """The zoo's ``lin_<start>`` schedule: from ``start`` down to 0 over training."""
    return lambda progress_remaining: progress_remaining * start


ZOO = {
    "ppo": {
        "n_envs": 8,
        "n_timesteps": 100_000,
        "kwargs": {
            "n_steps": 32,
            "batch_size": 256,
            "gae_lambda": 0.8,
            "gamma": 0.98,
            "n_epochs": 20,
            "ent_coef": 0.0,
            "learning_rate": linear(0.001),
            "clip_range": linear(0.2),
        },
    },
    "a2c": {"n_envs": 8, "n_timesteps": 500_000, "kwargs": {"ent_coef": 0.0}},
}


@dataclass
class SolveResult:
    solved: bool
    env_steps: int
    train_time_s: float


def greedy_mean(policy: Any, episodes: int, seed: int) -> float:
    env = gym.make_vec("CartPole-v1", num_envs=1, vectorization_mode="sync")
    returns = []
    obs, _ = env.reset(seed=seed)
    total = 0.0
    while len(returns) < episodes:
        action, _ = policy.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward[0])
        if terminated[0] or truncated[0]:
            returns.append(total)
            total = 0.0
            obs, _ = env.reset()
    env.close()
    return float(np.mean(returns))


def solve_cartpole(
    algo: str, seed: int, *, eval_every: int, eval_episodes: int, threshold: float = 475.0
) -> SolveResult:
    """Train SB3 ``algo`` until its greedy evaluation reaches ``threshold`` (or the zoo budget)."""
    import torch
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    spec = ZOO[algo]
    env = make_vec_env("CartPole-v1", n_envs=spec["n_envs"], seed=seed)
    model = {"ppo": PPO, "a2c": A2C}[algo](
        "MlpPolicy", env, seed=seed, verbose=0, device="cpu", **spec["kwargs"]
    )
    state = {"eval_time": 0.0, "next": eval_every, "solved_at": None}

    class EvaluateEvery(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps < state["next"]:
                return True
            started = time.perf_counter()
            state["next"] += eval_every
            mean = greedy_mean(self.model, eval_episodes, seed=seed + 1000)
            state["eval_time"] += time.perf_counter() - started
            if mean >= threshold:
                state["solved_at"] = self.num_timesteps
                return False
            return True

    started = time.perf_counter()
    model.learn(total_timesteps=spec["n_timesteps"], callback=EvaluateEvery())
    train_time = time.perf_counter() - started - state["eval_time"]
    solved_at = state["solved_at"]
    env.close()
    return SolveResult(solved_at is not None, int(solved_at or model.num_timesteps), train_time)
