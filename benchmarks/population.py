"""The learning step of a PPO population against its members learning one by one.

For K = 1, 4, 16, 32, 64 members of the tuned CartPole PPO preset (8 envs x 32 steps, one
minibatch of 256, 20 epochs), each with its own seed and learning rate: the time of one
``StackedPPO.learn`` on K rollouts against K calls of the single learner's ``learn`` (what K
runs pay), median of ``--repeats``, one torch thread. Writes benchmarks/RESULTS-population.md.

    python benchmarks/population.py [--sizes 1,4,16,32,64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from hydra import compose, initialize_config_dir

from twrl_exp import seeding
from twrl_exp.build import build_agent
from twrl_exp.config import register_configs
from twrl_exp.paths import config_dir
from twrl_exp.protocols import Clock
from twrl_exp.storage import RolloutBatch
from twrl_exp.update.stacked_ppo import StackedPPO

HERE = Path(__file__).resolve().parent
SPACES = gym.make("CartPole-v1")


def member(seed: int):
    lr = 1e-3 * (1 + seed % 3)  # members differ in seed and learning rate
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("config", ["env=cartpole", "update=ppo", f"seed={seed}", f"update.lr={lr}"])
    torch.manual_seed(seeding.integer(seed, seeding.Stream.TORCH))
    agent = build_agent(cfg, SPACES.observation_space, SPACES.action_space, cfg.env.num_envs)
    generator = torch.Generator()
    generator.set_state(torch.get_rng_state())
    return agent.update.learner, generator


def rollout(learner, rng: np.random.Generator, t: int = 32, n: int = 8) -> RolloutBatch:
    obs = rng.normal(size=(t + 1, n, 4)).astype(np.float32)
    with torch.no_grad():
        logits = learner.model(torch.from_numpy(obs[:-1].reshape(t * n, 4)))
        actions = torch.distributions.Categorical(logits=logits).sample()
        log_prob = learner.policy.log_prob(logits, actions).view(t, n).double().numpy()
    valid = rng.random((t, n)) > 0.05
    terminated = (rng.random((t, n)) < 0.05) & valid
    return RolloutBatch(
        obs=obs[:-1],
        next_obs=obs[1:],
        actions=actions.view(t, n).numpy(),
        log_prob=log_prob,
        rewards=np.where(valid, 1.0, 0.0),
        terminated=terminated,
        ends=terminated | ~valid,
        valid=valid,
    )


def measure(k: int, repeats: int) -> tuple[float, float]:
    rng = np.random.default_rng(k)
    singles = [member(seed) for seed in range(k)]
    stacked = StackedPPO(*zip(*[member(seed) for seed in range(k)], strict=True))
    batches = [rollout(learner, rng) for learner, _ in singles]
    one_by_one, together = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        for (learner, _), batch in zip(singles, batches, strict=True):
            learner.learn(batch, Clock(env_steps=50_000))
        one_by_one.append(time.perf_counter() - started)
        started = time.perf_counter()
        stacked.learn(batches, [Clock(env_steps=50_000) for _ in range(k)])
        together.append(time.perf_counter() - started)
    return statistics.median(one_by_one), statistics.median(together)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,16,32,64")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    register_configs()
    rows = [
        "| K | K single learners (ms) | one stacked learner (ms) | per member (ms) | speed-up |",
        "|---:|---:|---:|---:|---:|",
    ]
    for k in (int(size) for size in args.sizes.split(",")):
        alone, stacked = measure(k, args.repeats)
        rows.append(
            f"| {k} | {alone * 1e3:.1f} | {stacked * 1e3:.1f} | {stacked * 1e3 / k:.2f} | "
            f"{alone / stacked:.1f}x |"
        )
        print(rows[-1], flush=True)
    text = "\n".join(
        [
            "# The learning step of a PPO population",
            "",
            "`python benchmarks/population.py`: one PPO update (20 epochs of one minibatch of "
            "256, the tuned CartPole preset) for K members, one by one (what K runs pay) and as "
            "one `StackedPPO` (what a population pays); median of "
            f"{args.repeats}, one torch thread, {platform.processor() or platform.machine()}, "
            f"Python {sys.version.split()[0]}, torch {torch.__version__}, "
            f"{time.strftime('%Y-%m-%d')}.",
            "",
            *rows,
            "",
        ]
    )
    (HERE / "RESULTS-population.md").write_text(text)


if __name__ == "__main__":
    main()
