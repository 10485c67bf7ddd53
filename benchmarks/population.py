"""The learning step of a population against its members learning one by one.

For K = 1, 4, 16, 32, 64 members of the tuned CartPole presets of PPO (8 envs x 32 steps, one
minibatch of 256, 20 epochs) and DQN (128 gradient steps on minibatches of 64 every 256 env
steps), each with its own seed and learning rate: the time of one stacked ``learn`` on K batches
against K calls of the single learner's ``learn`` (what K runs pay), median of ``--repeats``.
Writes benchmarks/RESULTS-population.md.

    python benchmarks/population.py [--sizes 1,4,16,32,64] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from hydra import compose, initialize_config_dir

from twrl_exp import seeding
from twrl_exp.build import build, build_agent, make_runner
from twrl_exp.config import register_configs
from twrl_exp.paths import config_dir
from twrl_exp.population import Member, Population
from twrl_exp.protocols import Clock
from twrl_exp.storage import ReplayBatch, RolloutBatch
from twrl_exp.update.stacked_dqn import StackedDQN
from twrl_exp.update.stacked_ppo import StackedPPO

HERE = Path(__file__).resolve().parent
SPACES = gym.make("CartPole-v1")


def member(seed: int, rule: str = "ppo"):
    lr = 1e-3 * (1 + seed % 3)  # members differ in seed and learning rate
    policy = "egreedy" if rule == "dqn" else "categorical"
    overrides = ["env=cartpole", f"update={rule}", f"policy={policy}", f"seed={seed}"]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("config", [*overrides, f"update.lr={lr}"])
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


def replayed(rng: np.random.Generator, g: int = 128, b: int = 64) -> ReplayBatch:
    """The DQN preset's learn: 128 minibatches of 64 (every 256 env steps)."""
    obs = rng.normal(size=(g, b, 4)).astype(np.float32)
    return ReplayBatch(
        obs=obs,
        actions=rng.integers(0, 2, (g, b)),
        rewards=np.ones((g, b), np.float32),
        discounts=np.where(rng.random((g, b)) < 0.05, 0.0, 0.99).astype(np.float32),
        next_obs=(obs + rng.normal(0, 0.1, (g, b, 4))).astype(np.float32),
    )


def measure(rule: str, k: int, repeats: int, threads: int) -> tuple[float, float]:
    rng = np.random.default_rng(k)
    singles = [member(seed, rule)[0] for seed in range(k)]
    if rule == "ppo":
        stacked: StackedPPO | StackedDQN = StackedPPO(
            *zip(*[member(seed) for seed in range(k)], strict=True)
        )
        batches: list = [rollout(learner, rng) for learner in singles]
    else:
        stacked = StackedDQN([member(seed, rule)[0] for seed in range(k)])
        batches = [replayed(rng) for _ in singles]
    torch.set_num_threads(threads)  # after building: a build sets the config's torch_threads
    one_by_one, together = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        for learner, batch in zip(singles, batches, strict=True):
            learner.learn(batch, Clock(env_steps=50_000))
        one_by_one.append(time.perf_counter() - started)
        started = time.perf_counter()
        stacked.learn(batches, [Clock(env_steps=50_000) for _ in range(k)])
        together.append(time.perf_counter() - started)
    return statistics.median(one_by_one), statistics.median(together)


def trailing_best(returns: list[float], window: int = 100) -> float:
    """The best trailing ``window``-episode mean (the runner's "solved" statistic)."""
    if len(returns) < window:
        return float("-inf")
    sums = np.cumsum([0.0, *returns])
    return float(((sums[window:] - sums[:-window]) / window).max())


def loop(rule: str, k: int) -> dict[str, float]:
    """Whole runs of the preset: one single run (seed 0) against a population of K seeds."""
    policy = "egreedy" if rule == "dqn" else "categorical"

    def cfg(seed: int):
        overrides = ["env=cartpole", f"update={rule}", f"policy={policy}", f"seed={seed}"]
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            return compose("config", [*overrides, "monitor=none"])

    started = time.perf_counter()
    runner = make_runner(cfg(0), build(cfg(0), evaluation=False), eval_every_steps=None)
    runner.run()
    single = time.perf_counter() - started
    started = time.perf_counter()
    members = []
    for seed in range(k):
        config = cfg(seed)
        built = build(config, evaluation=False)
        members.append(Member.after_build(make_runner(config, built, eval_every_steps=None)))
    population = Population(members)
    population.run()
    together = time.perf_counter() - started
    solved = [trailing_best(m.history.returns) >= 475 for m in population.members]
    return {"single": single, "population": together, "solved": float(np.mean(solved))}


def merged(path: Path, header: str, new: str) -> str:
    """``path``'s text with the ``## `` sections of ``new`` put in place of (or after) its
    sections of the same titles: a run of some measurements keeps the others'."""

    def sections(text: str) -> dict[str, str]:
        parts = text.split("\n## ")
        return {part.splitlines()[0]: "## " + part for part in parts[1:]}

    old = sections(path.read_text()) if path.exists() else {}
    old.update(sections("\n" + new))
    return header + "\n" + "\n".join(part.rstrip() + "\n" for part in old.values())


def throughput(sizes: list[int], steps: int) -> list[str]:
    """Agent-steps per second of the PPO preset's whole loop (``monitor=none``, no evaluations,
    ``steps`` env steps a member, build excluded) for K members, and the share of the learning
    step in it; K = 1 is a single run's own loop. Draws benchmarks/population-throughput.png."""
    rows = [
        "| K | agent-steps/s | per member vs one run | learning share | bound |",
        "|---:|---:|---:|---:|---|",
    ]
    figures = []
    for k in sizes:
        configs = []
        for seed in range(k):
            with initialize_config_dir(str(config_dir()), version_base="1.3"):
                configs.append(
                    compose(
                        "config",
                        [
                            "update=ppo",
                            f"seed={seed}",
                            f"train.max_env_steps={steps}",
                            "monitor=none",
                            "eval.every_steps=null",
                            "eval.final=false",
                        ],
                    )
                )
        runners = [make_runner(c, build(c, evaluation=False), []) for c in configs]
        learning = 0.0
        if k == 1:
            learner = runners[0].agent.update.learner
            learn = learner.learn

            def timed_single(batch, clock, learn=learn):
                nonlocal learning
                started = time.perf_counter()
                result = learn(batch, clock)
                learning += time.perf_counter() - started
                return result

            learner.learn = timed_single
            started = time.perf_counter()
            runners[0].run()
        else:
            population = Population([Member.after_build(r) for r in runners])
            stacked_learn = population.stacked.learn

            def timed(batches, clocks, stacked_learn=stacked_learn):
                nonlocal learning
                started = time.perf_counter()
                result = stacked_learn(batches, clocks)
                learning += time.perf_counter() - started
                return result

            population.stacked.learn = timed
            started = time.perf_counter()
            population.run()
        wall = time.perf_counter() - started
        rate = k * steps / wall
        figures.append((k, rate))
        share = learning / wall
        bound = (
            "the learning step (per-op costs)" if share > 0.5 else "acting and env steps (Python)"
        )
        rows.append(f"| {k} | {rate:,.0f} | {rate / figures[0][1]:.1f}x | {share:.0%} | {bound} |")
        print(rows[-1], flush=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([k for k, _ in figures], [r for _, r in figures], marker="o")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("members K")
    ax.set_ylabel("agent env steps / s")
    ax.set_title("PPO CartPole preset, one process, one torch thread")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(HERE / "population-throughput.png", dpi=100)
    return rows


RECORDS = {
    "default monitor": [],
    "no video": ["monitor.video.enabled=false"],
    "monitor=none": ["monitor=none"],
    # the same seeds one after the other in one process, recorded without video
    "no video, one by one": ["monitor.video.enabled=false", "trial.population=false"],
}


RULE_ARGS = {
    "ppo": ["update=ppo"],
    "dqn": ["update=dqn"],
    "sac": ["env=pendulum", "update=sac"],
}


def _timed(command: list[str], tmp: str, uri: str) -> tuple[float, float]:
    """``python train.py *command`` as a user types it: wall time, and the largest resident set
    (MB) of its processes."""
    import subprocess

    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(HERE.parent)}
    measure = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", measure, sys.executable, "train.py", *command],
        cwd=HERE.parent,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - started, int(out.stdout.split()[-1]) / 1024


def cli_run(k: int, extra: list[str], rule: str = "ppo") -> dict[str, float]:
    """``python train.py update=ppo trial.seeds=K`` (K = 1: one run; ``rule=sac``: the SAC
    Pendulum preset) as a user types it, in a fresh store: wall time, the largest resident set
    of its processes, the fraction of runs that reached the env's threshold (CartPole: a
    trailing-100 mean of 475)."""
    import tempfile

    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory(prefix="twrl-bench-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        seeds = [f"trial.seeds={k}"] if k > 1 else []
        command = [*RULE_ARGS[rule], *seeds, *extra, f"hydra.run.dir={tmp}/out"]
        wall, rss = _timed(command, tmp, uri)
        solved = greedy = float("nan")
        if "monitor=none" not in extra:
            client = MlflowClient(tracking_uri=uri)
            runs = client.search_runs(
                [e.experiment_id for e in client.search_experiments()], max_results=1000
            )
            solved = float(np.mean(["env_steps_to_solve" in r.data.metrics for r in runs]))
            greedy = float(
                np.mean([r.data.metrics.get("final_eval_mean_return", 0) >= 475 for r in runs])
            )
    return {"wall": wall, "rss_mb": rss, "solved": solved, "greedy": greedy}


TD_GRID = ["env=mountaincar", "model=tilecoding", "policy=egreedy", "update=td_lambda"]


def td_grid(k: int) -> list[str]:
    """The tile-coded TD(lambda) MountainCar preset (500 episodes) as an alpha x lambda grid of
    ``k`` trials (``k`` a square), ``monitor=none``: one run, the grid as one population, and
    the grid with Hydra's basic launcher (one job after another in one process)."""
    import tempfile

    side = round(k**0.5)
    alphas = ",".join(f"{a:.3g}" for a in np.linspace(0.1, 1.0, side))
    lams = ",".join(f"{lam:.3g}" for lam in np.linspace(0.0, 0.95, side))
    grid = [f"update.alpha={alphas}", f"update.lam={lams}"]
    cases = {
        "one run (alpha 0.5, lambda 0.9)": [],
        f"{side * side} trials, hydra/launcher=population": [*grid, "hydra/launcher=population"],
        f"{side * side} trials, Hydra's basic launcher": grid,
    }
    rows = ["| what | wall (s) | x one run | max RSS (MB) |", "|---|---:|---:|---:|"]
    one = 0.0
    for name, args in cases.items():
        with tempfile.TemporaryDirectory(prefix="twrl-bench-") as tmp:
            where = f"hydra.sweep.dir={tmp}/multirun" if args else f"hydra.run.dir={tmp}/out"
            multirun = ["-m"] if args else []  # Hydra takes its flags before the overrides
            wall, rss = _timed(
                [*multirun, *TD_GRID, *args, "monitor=none", where],
                tmp,
                f"sqlite:///{tmp}/mlflow.db",
            )
        one = one or wall
        rows.append(f"| {name} | {wall:.1f} | {wall / one:.1f}x | {rss:.0f} |")
        print(rows[-1], flush=True)
    return rows


def records(
    sizes: list[int], rule: str = "ppo", monitors: Sequence[str] = tuple(RECORDS)[:3]
) -> list[str]:
    """The CLI's populations with their records against ``monitor=none`` and one run."""
    greedy = rule == "dqn"  # its training episodes explore (epsilon 0.04): the greedy figure
    rows = [
        "| K | monitor | wall (s) | x one run | recording overhead | max RSS (MB) | solved |"
        + (" final greedy >= 475 |" if greedy else ""),
        "|---:|---|---:|---:|---:|---:|---:|" + ("---:|" if greedy else ""),
    ]
    for k in sizes:
        figures = {
            name: cli_run(k, RECORDS[name], rule)
            for name in monitors
            if k > 1 or "one by one" not in name
        }
        if k == 1:
            one = figures[next(iter(figures))]["wall"]
        bare = figures["monitor=none"]["wall"]
        for name, found in figures.items():
            rows.append(
                f"| {k} | {name} | {found['wall']:.1f} | {found['wall'] / one:.1f}x | "
                f"{found['wall'] / bare - 1:+.0%} | {found['rss_mb']:.0f} | "
                + ("" if np.isnan(found["solved"]) else f"{found['solved']:.0%}")
                + " |"
                + (
                    ""
                    if not greedy
                    else (" |" if np.isnan(found["greedy"]) else f" {found['greedy']:.0%} |")
                )
            )
            print(rows[-1], flush=True)
    return rows


def optuna_sweep(launcher: list[str], trials: int) -> dict[str, float]:
    """``python train.py -m +sweep=population_cartpole_ppo`` (``trials`` trials) on a fresh
    store with ``launcher``'s overrides: wall time, trials complete and pruned, best value."""
    import subprocess
    import tempfile

    import optuna

    with tempfile.TemporaryDirectory(prefix="twrl-bench-") as tmp:
        storage = f"sqlite:///{tmp}/optuna.db"
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
            "PYTHONPATH": str(HERE.parent),
            "TWRL_PROJECT_ROOT": tmp,
        }
        command = [
            sys.executable,
            "train.py",
            "-m",
            "+sweep=population_cartpole_ppo",
            f"hydra.sweeper.n_trials={trials}",
            f"hydra.sweeper.storage={storage}",
            f"hydra.sweeper.experiment_dir={tmp}/experiment",
            f"hydra.sweep.dir={tmp}/multirun",
            *launcher,
        ]
        started = time.perf_counter()
        subprocess.run(command, cwd=HERE.parent, env=env, capture_output=True, check=True)
        wall = time.perf_counter() - started
        study = optuna.load_study(study_name="population_cartpole_ppo", storage=storage)
        states = [t.state.name for t in study.get_trials(deepcopy=False)]
        return {
            "wall": wall,
            "complete": states.count("COMPLETE"),
            "pruned": states.count("PRUNED"),
            "best": study.best_value,
        }


def optuna_rows(trials: int) -> list[str]:
    rows = [
        "| launcher | wall (s) | complete | pruned | best auc | x population |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    launchers = {
        "population (16 slots, refilled)": [],
        "joblib, 2 workers (2 trials at a time)": [
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "hydra.sweeper.n_jobs=2",
        ],
    }
    first = None
    for name, overrides in launchers.items():
        found = optuna_sweep(overrides, trials)
        first = first or found["wall"]
        rows.append(
            f"| {name} | {found['wall']:.0f} | {found['complete']} | {found['pruned']} | "
            f"{found['best']:.1f} | {found['wall'] / first:.1f}x |"
        )
        print(rows[-1], flush=True)
    return rows


WHAT = {
    "ppo": "one PPO update (20 epochs of one minibatch of 256)",
    "dqn": "one DQN learn (128 gradient steps on minibatches of 64)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,16,32,64")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rules", default="ppo,dqn")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--loop", default="", help="population sizes of whole runs, e.g. 8,32")
    parser.add_argument("--loop-rules", default="ppo")
    parser.add_argument("--skip-steps", action="store_true", help="only the whole runs")
    parser.add_argument("--optuna", type=int, default=0, help="trials of the Optuna comparison")
    parser.add_argument("--throughput", default="", help="population sizes, e.g. 1,4,16,64,256")
    parser.add_argument("--throughput-steps", type=int, default=16384)
    parser.add_argument(
        "--records",
        default="",
        help="trial.seeds=K of the CLI with records, e.g. 1,8,32 (1 first: the one-run baseline)",
    )
    parser.add_argument(
        "--sac",
        default="",
        help="trial.seeds=K of the SAC Pendulum preset, monitor=none, e.g. 1,4,16 (1 first)",
    )
    parser.add_argument(
        "--dqn",
        default="",
        help="trial.seeds=K of the DQN CartPole preset, recorded without video, e.g. 1,8 (1 first)",
    )
    parser.add_argument(
        "--td", type=int, default=0, help="trials of the TD(lambda) alpha x lambda grid, e.g. 64"
    )
    args = parser.parse_args()
    register_configs()
    sections = []
    for rule in [] if args.skip_steps else args.rules.split(","):
        rows = [
            "| K | K single learners (ms) | stacked (ms) | per member (ms) | speed-up |",
            "|---:|---:|---:|---:|---:|",
        ]
        for k in (int(size) for size in args.sizes.split(",")):
            alone, together = measure(rule, k, args.repeats, args.threads)
            rows.append(
                f"| {k} | {alone * 1e3:.1f} | {together * 1e3:.1f} | {together * 1e3 / k:.2f} | "
                f"{alone / together:.1f}x |"
            )
            print(rule, rows[-1], flush=True)
        sections += [f"## {rule.upper()}: {WHAT[rule]}", "", *rows, ""]
    if args.loop:
        rows = [
            "| rule | K | one run (s) | population (s) | ratio | K runs / population | "
            "members solved |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for rule in args.loop_rules.split(","):
            for k in (int(size) for size in args.loop.split(",")):
                figures = loop(rule, k)
                ratio = figures["population"] / figures["single"]
                rows.append(
                    f"| {rule} | {k} | {figures['single']:.1f} | {figures['population']:.1f} | "
                    f"{ratio:.1f}x | {k / ratio:.1f}x | {figures['solved']:.0%} |"
                )
                print(rows[-1], flush=True)
        sections += [
            "## Whole runs: a population against one run",
            "",
            "`--loop`: the preset's whole budget (build included, no monitors, no "
            "evaluations) for one run of seed 0 and for a population of seeds 0..K-1 "
            "(`twrl_exp.population`, no recording yet); solved: the best trailing-100 mean "
            "reached 475.",
            "",
            *rows,
            "",
        ]
    cli: list[str] = []
    sections_of_runs = [
        (
            args.records,
            "ppo",
            list(RECORDS)[:3],
            "The command line: `python train.py update=ppo trial.seeds=K`, recorded",
            "Wall time of the whole command (start-up, build, training, evaluations every 10k "
            "steps, the end of every run), in a fresh SQLite store: the default monitor "
            "(MLflow, checkpoints, learning curve, model, video of the final policy), without "
            "the video, and `monitor=none`; `x one run`: against K = 1 with the default "
            "monitor; overhead: against `monitor=none` at the same K; solved: runs whose "
            "trailing-100 mean reached 475.",
        ),
        (
            args.sac,
            "sac",
            ["monitor=none"],
            "SAC: `python train.py env=pendulum update=sac trial.seeds=K monitor=none`",
            "The SAC Pendulum preset (20k env steps, 256-256 networks, a gradient step on a "
            "minibatch of 256 every env step, evaluations every 2k steps): wall time of the "
            "whole command against one run; the population trains with every core (2 here), a "
            "run with one torch thread (its best).",
        ),
        (
            args.dqn,
            "dqn",
            ["no video", "monitor=none", "no video, one by one"],
            "DQN: `python train.py update=dqn trial.seeds=K`",
            "The DQN CartPole preset (50k env steps, 256-256 network, 128 gradient steps on "
            "minibatches of 64 every 256 env steps, evaluations every 5k steps), recorded without "
            "video and with `monitor=none`: wall time of the whole command against one run; "
            "solved: runs whose trailing-100 mean of training episodes (which explore) reached "
            "475; greedy: runs whose final greedy evaluation (10 episodes) averaged 475 or more; "
            "one by one: the same seeds one after the other in one process "
            "(`trial.population=false`). Members reach their learns at different vector steps "
            "(autoreset steps count none): each waits, its env paused, until every member holds "
            "a batch, then all learn as one.",
        ),
    ]
    for asked, rule, monitors, title, text in sections_of_runs:
        if asked:
            sizes = [int(size) for size in asked.split(",")]
            cli += [f"## {title}", "", text, "", *records(sizes, rule, monitors), ""]
    if args.td:
        cli += [
            "## TD(lambda): an alpha x lambda grid of tile-coded MountainCar",
            "",
            "The preset (8 tilings of 8x8 tiles, 500 episodes, compiled backend), `monitor=none`: "
            "one run, and a grid over `update.alpha` and `update.lam` (the Sutton & Barto "
            "figure) as one population and with Hydra's basic launcher (one job after another "
            "in one process). Each member keeps its own float64 learner (bit-identical to its "
            "single run) and acts one member at a time.",
            "",
            *td_grid(args.td),
            "",
        ]
    if args.optuna:
        cli += [
            f"## An Optuna sweep: `+sweep=population_cartpole_ppo`, {args.optuna} trials",
            "",
            "The shipped sweep (TPE, median pruning, 100k env steps a trial, video, curve and "
            "checkpoints off) on fresh stores: as shipped, one population of 16 slots refilled "
            "as trials are pruned or done, against the joblib launcher running 2 trials at a "
            "time in 2 worker processes. One repeat each.",
            "",
            *optuna_rows(args.optuna),
            "",
        ]
    if args.throughput:
        sizes = [int(size) for size in args.throughput.split(",")]
        cli += [
            "## Per-agent throughput against K",
            "",
            f"`--throughput`: the PPO preset's loop for {args.throughput_steps:,} env steps a "
            "member (`monitor=none`, no evaluations, build excluded), one torch thread; "
            "learning share: the stacked learning step's part of the wall time. "
            "Plot: `population-throughput.png`.",
            "",
            *throughput(sizes, args.throughput_steps),
            "",
        ]
    if cli:
        header = [
            "# Populations from the command line",
            "",
            f"`python benchmarks/population.py --records ... --optuna N`, "
            f"{platform.processor() or platform.machine()}, Python {sys.version.split()[0]}, "
            f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores.",
            "",
        ]
        (HERE / "RESULTS-population-cli.md").write_text(
            merged(HERE / "RESULTS-population-cli.md", "\n".join(header), "\n".join(cli))
        )
    if not sections:
        return
    text = "\n".join(
        [
            "# The learning step of a population",
            "",
            "`python benchmarks/population.py`: the learning step of the tuned CartPole presets "
            "for K members (each its own seed and learning rate), one by one (what K runs pay) "
            "and as one stacked learner (what a population pays); median of "
            f"{args.repeats}, {args.threads} torch thread(s), "
            f"{platform.processor() or platform.machine()}, Python {sys.version.split()[0]}, "
            f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}.",
            "",
            *sections,
        ]
    )
    (HERE / "RESULTS-population.md").write_text(text)


if __name__ == "__main__":
    main()
