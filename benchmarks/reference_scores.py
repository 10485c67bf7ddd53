"""Writes src/twrl_exp/compare/references.json: per env, the return of a uniformly random policy
and a reference return, the scale on which twrl-compare puts several envs' scores together
(normalised score = (score - random) / (reference - random), as rliable does with Atari's
random and human scores).

random: the mean undiscounted return of 100 episodes of uniformly random actions
(``env.action_space.sample()``), env and action space seeded 0..99, measured by this script.
reference: the env's ``spec.reward_threshold`` in Gymnasium (the return at which it counts as
solved), the one every preset here aims at.

    python benchmarks/reference_scores.py
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import gymnasium as gym
import numpy as np

ENVS = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "LunarLander-v3", "MountainCarContinuous-v0"]
OUT = Path(__file__).resolve().parents[1] / "src" / "twrl_exp" / "compare" / "references.json"


def random_return(env_id: str, episodes: int = 100) -> float:
    env = gym.make(env_id)
    returns = []
    for seed in range(episodes):
        env.reset(seed=seed)
        env.action_space.seed(seed)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def main() -> None:
    envs = {}
    for env_id in ENVS:
        threshold = gym.spec(env_id).reward_threshold
        envs[env_id] = {
            "random": round(random_return(env_id), 2),
            "reference": float(threshold),
            "source": "random: 100 episodes of uniform random actions, seeds 0-99 "
            "(benchmarks/reference_scores.py); reference: Gymnasium's reward_threshold",
        }
        print(env_id, envs[env_id]["random"], threshold, flush=True)
    OUT.write_text(json.dumps({"gymnasium": version("gymnasium"), "envs": envs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
