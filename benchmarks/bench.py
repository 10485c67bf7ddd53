"""twrl-exp against the env's speed limit and against Stable-Baselines3, in one run.

    make bench                    # or: python benchmarks/bench.py [--seeds 5] [--no-sb3]

Every figure is a median over seeds with its min-max. Solving CartPole-v1 uses one protocol for
everyone: greedy evaluation of 20 episodes every 5,000 env steps on a separate env, evaluation
time excluded from training time; solved at the first evaluation whose mean reaches 475.
Results go to benchmarks/RESULTS.md and to an MLflow run in experiment "benchmarks".
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from hydra import compose, initialize_config_dir

from twrl_exp.build import build, make_runner, project_root
from twrl_exp.config import make, register_configs
from twrl_exp.paths import config_dir
from twrl_exp.runner import MonitorBase, Runner
from twrl_exp.update import td_fast

sys.path.insert(0, str(Path(__file__).parent))
import report

EVAL_EVERY, EVAL_EPISODES, THRESHOLD = 5_000, 20, 475.0
# Found by `python train.py -m +sweep=cartpole_reinforce` (best trial by area under the curve).
BEST_REINFORCE = [
    "update.lr=0.0107",
    "update.baseline=average",
    "update.ent_coef=0.0056",
    "model.hidden_sizes=[64]",
    "update.steps_per_batch=1000",
]
register_configs()


def cfg_of(*overrides: str):
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("config", ["monitor=none", *overrides])


def median(values: list[float]) -> dict[str, float]:
    return {
        "median": float(np.median(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
    }


def timed(seeds: int, fn: Callable[[int], float]) -> dict[str, float]:
    return median([fn(seed) for seed in range(seeds)])


# ----------------------------------------------------------------------------- throughput


def raw_env_rate(num_envs: int, seed: int, steps: int = 400_000) -> float:
    env = gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="vector_entry_point")
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    vector_steps = steps // num_envs
    actions = rng.integers(0, 2, (vector_steps, num_envs))
    started = time.perf_counter()
    for t in range(vector_steps):
        env.step(actions[t])
    return vector_steps * num_envs / (time.perf_counter() - started)


def raw_mountaincar_rate(num_envs: int, seed: int, steps: int) -> float:
    """MountainCar-v0 as TD(lambda) trains on it (our numpy vector env), random actions."""
    env = make("env", id="MountainCar-v0", num_envs=num_envs)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    vector_steps = steps // num_envs
    actions = rng.integers(0, 3, (vector_steps, num_envs))
    started = time.perf_counter()
    for t in range(vector_steps):
        env.step(actions[t])
    return vector_steps * num_envs / (time.perf_counter() - started)


def raw_mountaincar_single_rate(seed: int, steps: int) -> float:
    """One ``gym.make("MountainCar-v0")``, random actions, reset when an episode ends: the
    single-env speed limit (faster than our vector env with one car)."""
    env = gym.make("MountainCar-v0")
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, 3, steps).tolist()
    started = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - started)


TD = [
    "env=mountaincar",
    "model=tilecoding",
    "policy=egreedy",
    "update=td_lambda",
    "train.max_episodes=null",
]


def td_lambda_rates(seeds: int) -> dict[str, dict[str, float]]:
    """Tile-coded TD(lambda) on MountainCar-v0 with each backend, and the raw env, 1 and 64 envs.

    The numba kernels are loaded (or compiled) by a warm-up run first, so these are steady-state
    figures; :func:`first_step_seconds` measures what compiling and loading them cost.
    """
    backends = ["numpy"] if td_fast.load_kernels("auto") is None else ["numpy", "numba"]
    if "numba" in backends:
        agent_rate([*TD, "update.backend=numba"], 0, 2_000)
    out = {"raw_mountaincar_gym_1": timed(seeds, lambda s: raw_mountaincar_single_rate(s, 60_000))}
    for n, steps in ((1, 60_000), (64, 600_000)):
        out[f"raw_mountaincar_{n}"] = timed(
            seeds, lambda s, n=n, steps=steps: raw_mountaincar_rate(n, s, steps)
        )
        for backend in backends:
            budget = steps if backend == "numba" else steps // 3  # numpy is several times slower
            overrides = [*TD, f"update.backend={backend}", f"env.num_envs={n}"]
            out[f"td_{backend}_{n}"] = timed(
                seeds, lambda s, o=overrides, b=budget: agent_rate(o, s, b)
            )
    out["first_step_numpy"] = timed(seeds, lambda s: first_step_seconds(["numpy"])[0])
    if "numba" in backends:
        pairs = [first_step_seconds(["numba", "numba"]) for _ in range(seeds)]
        out["first_step_numba_compile"] = median([p[0] for p in pairs])
        out["first_step_numba_cached"] = median([p[1] for p in pairs])
    return out


def first_step_seconds(backends: list[str]) -> list[float]:
    """Fresh processes, one per backend in turn, sharing an empty numba cache folder: seconds
    from building a 1-env TD(lambda) agent to the end of its first vector step (numba: the
    first process compiles the kernels, the next loads them from the cache)."""
    seconds = []
    with tempfile.TemporaryDirectory() as cache:
        for backend in backends:
            done = subprocess.run(
                [sys.executable, __file__, "--first-step", backend],
                env={**os.environ, "NUMBA_CACHE_DIR": cache},
                check=True,
                capture_output=True,
                text=True,
            )
            seconds.append(float(done.stdout.split()[-1]))
    return seconds


def first_step(backend: str) -> float:
    """In this process: build a 1-env TD(lambda) agent and take one vector step, in seconds."""
    cfg = cfg_of(
        *TD,
        f"update.backend={backend}",
        "train.max_env_steps=1",
        "eval.every_steps=null",
        "eval.final=false",
    )
    started = time.perf_counter()
    make_runner(cfg, build(cfg, evaluation=False)).run()
    return time.perf_counter() - started


def agent_rate(overrides: list[str], seed: int, steps: int) -> float:
    cfg = cfg_of(
        *overrides,
        f"seed={seed}",
        f"train.max_env_steps={steps}",
        "eval.every_steps=null",
        "eval.final=false",
    )
    runner = make_runner(cfg, build(cfg, evaluation=False))
    runner.run()
    return runner.history.env_steps / runner.history.train_time


# ----------------------------------------------------------------------------- solving


class StopWhenEvalSolves(MonitorBase):
    def __init__(self) -> None:
        self.solved_at: tuple[int, float] | None = None

    def evaluation(self, runner: Runner, returns: np.ndarray) -> None:
        if self.solved_at is None and returns.mean() >= THRESHOLD:
            self.solved_at = (runner.history.env_steps, runner.history.train_time)
            runner.stop_reason = "solved"


def ours_solve(overrides: list[str], seed: int, budget: int = 300_000) -> tuple[bool, int, float]:
    cfg = cfg_of(
        "env=cartpole",
        *overrides,
        f"seed={seed}",
        f"train.max_env_steps={budget}",
        f"eval.every_steps={EVAL_EVERY}",
        f"eval.episodes={EVAL_EPISODES}",
        "eval.num_envs=10",
        "eval.final=false",
    )
    stop = StopWhenEvalSolves()
    runner = make_runner(cfg, build(cfg), [stop])
    runner.run()
    if stop.solved_at is None:
        return False, runner.history.env_steps, runner.history.train_time
    return True, stop.solved_at[0], stop.solved_at[1]


def solve_table(seeds: int, with_sb3: bool) -> dict[str, dict[str, object]]:
    agents: dict[str, Callable[[int], tuple[bool, int, float]]] = {
        "twrl REINFORCE (preset)": lambda s: ours_solve([], s),
        "twrl REINFORCE (sweep best)": lambda s: ours_solve(BEST_REINFORCE, s),
    }
    if with_sb3:
        from peers import solve_cartpole

        for algo in ("ppo", "a2c"):
            agents[f"SB3 {algo.upper()} (zoo)"] = lambda s, a=algo: tuple(
                vars(
                    solve_cartpole(a, s, eval_every=EVAL_EVERY, eval_episodes=EVAL_EPISODES)
                ).values()
            )
    table = {}
    for name, fn in agents.items():
        results = [fn(seed) for seed in range(seeds)]
        solved = [r for r in results if r[0]]
        table[name] = {
            "solved": f"{len(solved)}/{seeds}",
            "time": median([r[2] for r in solved]) if solved else None,
            "steps": median([float(r[1]) for r in solved]) if solved else None,
        }
        print(f"  {name}: {table[name]}", flush=True)
    return table


# ----------------------------------------------------------------------------- overheads


def monitor_overhead(seeds: int, steps: int, store: Path) -> dict[str, dict[str, float]]:
    """Wall time of the same run without monitors and with the default ones (progress bar,
    MLflow, checkpoints; the final video left out), in one process whose imports and MLflow
    store are already warm, as for every run after a session's first."""
    from twrl_exp.train import run

    def timed_run(monitor: str, seed: int) -> float:
        cfg = cfg_of(
            f"monitor={monitor}",
            f"seed={seed}",
            f"train.max_env_steps={steps}",
            "monitor.video.enabled=false",
            f"monitor.mlflow.tracking_uri=sqlite:///{store}",
        )
        started = time.perf_counter()
        run(cfg, run_dir=store.parent / f"{monitor}{seed}")
        return time.perf_counter() - started

    timed_run("default", 99)  # warm-up: imports, store, caches
    pairs = [(timed_run("none", s), timed_run("default", s)) for s in range(seeds)]
    return {
        "none": median([p[0] for p in pairs]),
        "default": median([p[1] for p in pairs]),
        "overhead": median([p[1] / p[0] - 1 for p in pairs]),
    }


def startup(monitor: str, store: Path) -> float:
    """Seconds from launching ``python train.py`` to its first env step (existing store)."""
    with tempfile.TemporaryDirectory() as tmp:
        marker = Path(tmp) / "first_step"
        env = {
            **os.environ,
            "TWRL_FIRST_STEP_FILE": str(marker),
            "MLFLOW_TRACKING_URI": f"sqlite:///{store}",
        }
        started = time.time()
        subprocess.run(
            [
                sys.executable,
                "train.py",
                f"monitor={monitor}",
                "monitor.console=false",
                "train.max_env_steps=1",
                "eval.final=false",
                "monitor.video.enabled=false",
                f"hydra.run.dir={tmp}/out",
            ],
            cwd=project_root(),
            env=env,
            check=True,
            capture_output=True,
        )
        return float(marker.read_text()) - started


def import_floor() -> float:
    """Seconds of ``python -c "import torch, gymnasium"``: what any run pays before its work."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, gymnasium"], check=True)
    return time.perf_counter() - started


def launch_to_exit(store: Path) -> dict[str, float]:
    """The default ``python train.py`` (progress, MLflow, checkpoints, final video, curve,
    model), launch to exit, and the training + evaluation seconds it records."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{store}"
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "train.py", f"hydra.run.dir={tmp}/out"],
            cwd=project_root(),
            env={**os.environ, "MLFLOW_TRACKING_URI": uri},
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - started
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    (run,) = client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=1)
    own = run.data.metrics["train_time_s"] + run.data.metrics["eval_time_s"]
    return {"wall": wall, "train_eval": own}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--no-sb3", action="store_true", help="skip Stable-Baselines3")
    parser.add_argument("--out", default=str(Path(__file__).parent / "RESULTS.md"))
    parser.add_argument("--first-step", choices=["numpy", "numba"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.first_step:  # one measurement of first_step_seconds, in its own process
        print(first_step(args.first_step))
        return 0
    seeds = args.seeds
    figures: dict[str, object] = {}
    print("throughput ...", flush=True)
    for n in (16, 64):
        figures[f"raw_env_{n}"] = timed(seeds, lambda s, n=n: raw_env_rate(n, s))
        figures[f"random_agent_{n}"] = timed(
            seeds,
            lambda s, n=n: agent_rate(
                ["model=none", "policy=random", "update=none", f"env.num_envs={n}"], s, 400_000
            ),
        )
        figures[f"reinforce_{n}"] = timed(
            seeds, lambda s, n=n: agent_rate([f"env.num_envs={n}"], s, 200_000)
        )
    print("TD(lambda) tile coding on MountainCar-v0 ...", flush=True)
    figures.update(td_lambda_rates(seeds))
    print("solving CartPole-v1 ...", flush=True)
    figures["solve"] = solve_table(seeds, not args.no_sb3)
    print("monitoring overhead and start-up ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "mlflow.db"
        for steps in (200_000, 1_000_000):
            figures[f"monitor_{steps}"] = monitor_overhead(seeds, steps, store)
        startup("default", store)  # the store exists from here on, as in a project
        figures["import_floor"] = timed(seeds, lambda s: import_floor())
        figures["startup_none"] = timed(seeds, lambda s: startup("none", store))
        figures["startup_default"] = timed(seeds, lambda s: startup("default", store))
        exits = [launch_to_exit(store) for _ in range(seeds)]
        figures["exit_wall"] = median([e["wall"] for e in exits])
        figures["exit_train_eval"] = median([e["train_eval"] for e in exits])
        figures["exit_excess"] = median([e["wall"] - 1.3 * e["train_eval"] for e in exits])
    text = report.markdown(figures, seeds)
    Path(args.out).write_text(text)
    report.log_to_mlflow(figures, args.out)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
