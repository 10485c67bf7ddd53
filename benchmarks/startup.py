"""Launch to first step: what a run pays before it learns, against Stable-Baselines3.

The issue "populations" asks for the honest floor of a torch RL program: the wall time of a
fresh process that imports, builds PPO on CartPole-v1 and takes its first env step, for
``python train.py`` and for SB3 (its ``PPO("MlpPolicy", "CartPole-v1")``, stopped by a callback
at its first step), and ``python -c "import torch, gymnasium"`` as the import floor. Median of
``--repeats`` fresh processes each; a population pays this once for all its members.

    python benchmarks/startup.py [--repeats 5]

Writes benchmarks/RESULTS-startup.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SB3 = """
import gymnasium as gym
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

class First(BaseCallback):
    def _on_step(self):
        return False  # stop at the first env step

env = make_vec_env("CartPole-v1", n_envs=8, seed=0)
PPO("MlpPolicy", env, n_steps=32, batch_size=256, seed=0, device="cpu").learn(1, callback=First())
"""


def wall(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="twrl-startup-") as tmp:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
            "TWRL_PROJECT_ROOT": tmp,
        }
        first_step = ["update=ppo", "train.max_env_steps=1", "eval.final=false"]
        commands = {
            'import floor: `python -c "import torch, gymnasium"`': [
                python,
                "-c",
                "import torch, gymnasium",
            ],
            "Stable-Baselines3 PPO: import, build, first step": [python, "-c", SB3],
            "`python train.py update=ppo monitor=none`: to its first step": [
                python,
                str(ROOT / "train.py"),
                *first_step,
                "monitor=none",
                f"hydra.run.dir={tmp}/none",
            ],
            "`python train.py update=ppo` (recorded, no video): one step, then its whole end": [
                python,
                str(ROOT / "train.py"),
                *first_step,
                "monitor.video.enabled=false",
                f"hydra.run.dir={tmp}/default",
            ],
        }
        results = {}
        for name, command in commands.items():
            wall(command, env, Path(tmp))  # warm the file cache
            results[name] = statistics.median(
                wall(command, env, Path(tmp)) for _ in range(args.repeats)
            )
            print(f"{results[name]:6.2f} s  {name}", flush=True)
    sb3 = results["Stable-Baselines3 PPO: import, build, first step"]
    rows = ["| process | wall (s) | x SB3 |", "|---|---:|---:|"]
    rows += [f"| {name} | {value:.2f} | {value / sb3:.2f}x |" for name, value in results.items()]
    text = "\n".join(
        [
            "# Launch to first step",
            "",
            "`python benchmarks/startup.py`: a fresh process's wall time to import, build PPO on "
            "CartPole-v1 (8 envs) and take its first env step, then exit; median of "
            f"{args.repeats} after one warm-up, {platform.processor() or platform.machine()}, "
            f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} "
            "cores. A population pays it once for all its members.",
            "",
            *rows,
            "",
        ]
    )
    (ROOT / "benchmarks" / "RESULTS-startup.md").write_text(text)


if __name__ == "__main__":
    main()
