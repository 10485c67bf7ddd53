"""EnvPool beside Gymnasium: env steps per second of the vector env alone (random actions) and
of training (PPO, ``monitor=none``), for the same env, budget and machine, one after the other.

    python benchmarks/envpool_backend.py [--steps 200000] [--train-steps 100000]

Writes benchmarks/RESULTS-envpool.md. Each figure is the best of ``--repeats`` runs (the machine
is shared; the best is the least disturbed). Named envpool_backend.py, not envpool.py: run as a
script, its folder comes first on sys.path, where a file named envpool.py would shadow EnvPool.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from twrl_exp.env import make_vector_env

ROOT = Path(__file__).resolve().parents[1]
ENVS = [("CartPole-v1", 8), ("Pendulum-v1", 8), ("HalfCheetah-v5", 1), ("HalfCheetah-v5", 8)]


def env_rate(env_id: str, num_envs: int, backend: str, steps: int) -> float:
    env = make_vector_env(
        id=env_id,
        num_envs=num_envs,
        kwargs={},
        max_episode_steps=None,
        reward_threshold=None,
        vectorization="auto",
        backend=backend,
        normalize_obs=False,
        normalize_reward=False,
        normalize_clip=10.0,
        preprocess="none",
    )
    env.action_space.seed(0)
    batches = [np.asarray(env.action_space.sample()) for _ in range(64)]  # drawn before timing
    env.reset(seed=0)
    start = time.perf_counter()
    for k in range(steps // num_envs):
        env.step(batches[k % len(batches)])
    elapsed = time.perf_counter() - start
    env.close()
    return (steps // num_envs) * num_envs / elapsed


def train_rate(env_id: str, backend: str, steps: int) -> float:
    from hydra import compose, initialize_config_dir

    from twrl_exp.build import build, make_runner
    from twrl_exp.config import register_configs
    from twrl_exp.paths import config_dir

    register_configs()
    env_option = {"CartPole-v1": "cartpole", "Pendulum-v1": "pendulum"}[env_id]
    overrides = [
        f"env={env_option}",
        "update=ppo",
        f"env.backend={backend}",
        f"train.max_env_steps={steps}",
        "train.stop_when_solved=false",
        "eval.every_steps=null",
        "eval.final=false",
        "monitor=none",
    ]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides)
    built = build(cfg, evaluation=False)
    try:
        runner = make_runner(cfg, built)
        runner.run()
        h = runner.history
        return h.env_steps / h.train_time
    finally:
        built.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--train-steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for env_id, n in ENVS:
        rates = {
            backend: max(env_rate(env_id, n, backend, args.steps) for _ in range(args.repeats))
            for backend in ("gymnasium", "envpool")
        }
        rows.append(
            f"| {env_id} | {n} | env only | {rates['gymnasium']:,.0f} | {rates['envpool']:,.0f} "
            f"| {rates['envpool'] / rates['gymnasium']:.2f} |"
        )
        print(rows[-1], flush=True)
    for env_id in ("CartPole-v1", "Pendulum-v1"):
        with tempfile.TemporaryDirectory():
            rates = {
                backend: max(
                    train_rate(env_id, backend, args.train_steps) for _ in range(args.repeats)
                )
                for backend in ("gymnasium", "envpool")
            }
        rows.append(
            f"| {env_id} | preset | PPO training | {rates['gymnasium']:,.0f} | "
            f"{rates['envpool']:,.0f} | {rates['envpool'] / rates['gymnasium']:.2f} |"
        )
        print(rows[-1], flush=True)
    text = "\n".join(
        [
            "# EnvPool beside Gymnasium",
            "",
            "`python benchmarks/envpool_backend.py` on "
            f"{platform.processor() or platform.machine()}, "
            f"{time.strftime('%Y-%m-%d')}: env steps per second (best of {args.repeats}); "
            f"env only: {args.steps:,} random steps; training: PPO's preset, "
            f"{args.train_steps:,} steps, `monitor=none`. Gymnasium's envs are vectorised as "
            "`env.vectorization=auto` does (CartPole natively in numpy, the others by a "
            "SyncVectorEnv).",
            "",
            "| env | envs | what | Gymnasium | EnvPool | ratio |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    (ROOT / "benchmarks" / "RESULTS-envpool.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
