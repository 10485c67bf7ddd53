"""Deep RL against Stable-Baselines3, in one run: PPO, A2C and DQN on CartPole-v1, SAC and TD3
on Pendulum-v1, each with rl-baselines3-zoo's hyperparameters on both sides, and PPO's
training throughput against the raw vector env.

    python benchmarks/deep.py [--seeds 3] [--only ppo,dqn] [--no-sb3]

Protocol, the same for everyone: a greedy evaluation every ``every`` env steps on a separate
env (20 episodes on CartPole, 10 on Pendulum), its time excluded; solved at the first
evaluation whose mean reaches the threshold (475 on CartPole, -200 on Pendulum). One torch
thread on both sides. Results go to benchmarks/RESULTS-deep-rl.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from twrl_exp.build import build, make_runner
from twrl_exp.config import register_configs
from twrl_exp.runner import MonitorBase, Runner

sys.path.insert(0, str(Path(__file__).parent))
from bench import agent_rate, cfg_of, raw_env_rate
from peers import ZOO
from report import machine

register_configs()

# name: (env id, our overrides, SB3 class, SB3 kwargs, n_envs, budget, every, episodes, threshold)
TASKS: dict[str, dict[str, Any]] = {
    "ppo": {
        "env": "CartPole-v1",
        "ours": ["env=cartpole", "update=ppo"],
        "sb3": ("PPO", ZOO["ppo"]["kwargs"], ZOO["ppo"]["n_envs"]),
        "budget": 100_000,
        "every": 5_000,
        "episodes": 20,
        "threshold": 475.0,
    },
    "a2c": {
        "env": "CartPole-v1",
        "ours": ["env=cartpole", "update=a2c"],
        "sb3": ("A2C", ZOO["a2c"]["kwargs"], ZOO["a2c"]["n_envs"]),
        "budget": 500_000,
        "every": 5_000,
        "episodes": 20,
        "threshold": 475.0,
    },
    "dqn": {
        "env": "CartPole-v1",
        "ours": ["env=cartpole", "policy=egreedy", "update=dqn"],
        "sb3": (
            "DQN",
            {
                "learning_rate": 2.3e-3,
                "batch_size": 64,
                "buffer_size": 100_000,
                "learning_starts": 1000,
                "gamma": 0.99,
                "target_update_interval": 10,
                "train_freq": 256,
                "gradient_steps": 128,
                "exploration_fraction": 0.16,
                "exploration_final_eps": 0.04,
                "policy_kwargs": {"net_arch": [256, 256]},
            },
            1,
        ),
        "budget": 50_000,
        "every": 5_000,
        "episodes": 20,
        "threshold": 475.0,
    },
    "sac": {
        "env": "Pendulum-v1",
        "ours": ["env=pendulum", "update=sac"],
        "sb3": ("SAC", {"learning_rate": 1e-3}, 1),
        "budget": 20_000,
        "every": 1_000,
        "episodes": 10,
        "threshold": -200.0,
    },
    "td3": {
        "env": "Pendulum-v1",
        "ours": ["env=pendulum", "update=td3"],
        "sb3": (
            "TD3",
            {
                "gamma": 0.98,
                "buffer_size": 200_000,
                "learning_starts": 10_000,
                "learning_rate": 1e-3,
                "policy_kwargs": {"net_arch": [400, 300]},
                "noise": 0.1,
            },
            1,
        ),
        "budget": 20_000,
        "every": 1_000,
        "episodes": 10,
        "threshold": -200.0,
    },
}


class StopWhenSolved(MonitorBase):
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.solved_at: tuple[int, float] | None = None

    def evaluation(self, runner: Runner, returns: np.ndarray) -> None:
        if self.solved_at is None and returns.mean() >= self.threshold:
            self.solved_at = (runner.history.env_steps, runner.history.train_time)
            runner.stop_reason = "solved"


def ours(task: dict[str, Any], seed: int) -> tuple[bool, int, float]:
    cfg = cfg_of(
        *task["ours"],
        f"seed={seed}",
        f"train.max_env_steps={task['budget']}",
        f"eval.every_steps={task['every']}",
        f"eval.episodes={task['episodes']}",
        "eval.num_envs=10",
        "eval.final=false",
    )
    stop = StopWhenSolved(task["threshold"])
    runner = make_runner(cfg, build(cfg), [stop])
    runner.run()
    if stop.solved_at is None:
        return False, runner.history.env_steps, runner.history.train_time
    return True, *stop.solved_at


def greedy_mean(model: Any, env_id: str, episodes: int, seed: int) -> float:
    env = gym.make(env_id)
    returns = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def sb3(task: dict[str, Any], seed: int) -> tuple[bool, int, float]:
    import stable_baselines3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise

    name, kwargs, n_envs = task["sb3"]
    kwargs = dict(kwargs)
    env = make_vec_env(task["env"], n_envs=n_envs, seed=seed)
    if "noise" in kwargs:
        sigma = kwargs.pop("noise")
        dim = env.action_space.shape[0]
        kwargs["action_noise"] = NormalActionNoise(np.zeros(dim), sigma * np.ones(dim))
    model = getattr(stable_baselines3, name)(
        "MlpPolicy", env, seed=seed, verbose=0, device="cpu", **kwargs
    )
    state: dict[str, Any] = {"eval_time": 0.0, "next": task["every"], "solved_at": None}

    class EvaluateEvery(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps < state["next"]:
                return True
            started = time.perf_counter()
            state["next"] += task["every"]
            mean = greedy_mean(self.model, task["env"], task["episodes"], seed + 1000)
            state["eval_time"] += time.perf_counter() - started
            if mean >= task["threshold"]:
                state["solved_at"] = self.num_timesteps
                return False
            return True

    started = time.perf_counter()
    model.learn(total_timesteps=task["budget"], callback=EvaluateEvery())
    train_time = time.perf_counter() - started - state["eval_time"]
    env.close()
    solved_at = state["solved_at"]
    return solved_at is not None, int(solved_at or model.num_timesteps), train_time


def stat(values: list[float]) -> str:
    if not values:
        return "not solved"
    return f"{np.median(values):,.1f} [{min(values):,.1f}-{max(values):,.1f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", default=",".join(TASKS))
    parser.add_argument("--no-sb3", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "RESULTS-deep-rl.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    targets = []
    raw = [raw_env_rate(16, s) for s in range(args.seeds)]
    ppo_rate = [
        agent_rate(["update=ppo", "env.num_envs=16"], s, 100_000) for s in range(args.seeds)
    ]
    share = float(np.median(ppo_rate) / np.median(raw))
    targets.append(
        f"{'met' if share >= 0.25 else 'NOT met'}: PPO trains at {share:.0%} of the raw 16-env "
        f"CartPole's steps/s ({np.median(ppo_rate):,.0f} vs {np.median(raw):,.0f}; target 25%)"
    )
    for name in args.only.split(","):
        task = TASKS[name]
        for who, fn in (("twrl", ours), ("SB3", sb3)):
            if who == "SB3" and args.no_sb3:
                continue
            results = [fn(task, seed) for seed in range(args.seeds)]
            solved = [r for r in results if r[0]]
            row = {
                "agent": f"{who} {name.upper()}",
                "env": task["env"],
                "solved": f"{len(solved)}/{args.seeds}",
                "time": [r[2] for r in solved],
                "steps": [float(r[1]) for r in solved],
                "rate": [r[1] / r[2] for r in results if r[2] > 0],
            }
            rows.append(row)
            print(
                f"  {row['agent']} {task['env']}: {row['solved']} {stat(row['time'])} s", flush=True
            )
        pair = [r for r in rows[-2:] if r["time"]]
        if len(pair) == 2 and not args.no_sb3:
            ratio = np.median(pair[0]["time"]) / np.median(pair[1]["time"])
            targets.append(
                f"{'met' if ratio <= 1 / 3 else 'NOT met'}: twrl {name.upper()} reaches the "
                f"threshold in {ratio:.0%} of SB3's wall time (target at most 33%)"
            )
    lines = [
        "# Deep RL benchmarks (twrl-exp vs Stable-Baselines3, zoo hyperparameters)",
        "",
        f"Machine: {machine()}.",
        "",
        f"Medians over {args.seeds} seeds [min-max], over the seeds that reached the threshold.",
        "Greedy evaluation every N env steps (20 episodes on CartPole-v1, 10 on Pendulum-v1),",
        "its time excluded; threshold 475 (CartPole) and -200 (Pendulum).",
        "",
        "| agent | env | reached | training time (s) | env steps | training steps/s |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r['agent']} | {r['env']} | {r['solved']} | {stat(r['time'])} | "
            f"{stat(r['steps'])} | {stat(r['rate'])} |"
            for r in rows
        ],
        "",
        f"PPO training throughput, 16 envs: {stat(ppo_rate)} steps/s; raw native vector env "
        f"with random actions: {stat(raw)} steps/s.",
        "",
        "## Targets",
        "",
        *[f"- {t}" for t in targets],
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
