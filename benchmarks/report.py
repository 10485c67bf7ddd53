"""RESULTS.md and the MLflow record of one benchmark run."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import os
import platform
from pathlib import Path
from typing import Any

import torch


def _fmt(stat: dict[str, float] | None, unit: str = "", scale: float = 1.0, digits: int = 0) -> str:
    if stat is None:
        return "not solved"
    m, lo, hi = (stat[k] * scale for k in ("median", "min", "max"))
    return f"{m:,.{digits}f}{unit} [{lo:,.{digits}f}-{hi:,.{digits}f}]"


def _version(package: str) -> str:
    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return "not installed"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    versions = ", ".join(
        f"{p} {_version(p)}" for p in ("torch", "numpy", "gymnasium", "mlflow", "stable-baselines3")
    )
    return (
        f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; {versions}; "
        f"torch threads {torch.get_num_threads()}; {dt.date.today().isoformat()}"
    )


def _check(ok: bool, text: str) -> str:
    return f"{'met' if ok else 'NOT met'}: {text}"


def _share(ratio: float, goal: float) -> str:
    """``ratio`` as a percentage, with a decimal where whole percents would hide a miss."""
    whole = f"{ratio:.0%}"
    return f"{ratio:.1%}" if ratio < goal and whole == f"{goal:.0%}" else whole


# The targets: share of the raw env's steps/s, per backend and num_envs. One env is
# measured against gym.make("MountainCar-v0"), the reference (our vector env steps one
# car in Python floats, faster than gym.make's env with its wrappers).
TD_GOALS = [("numba", 1, 0.5), ("numpy", 1, 0.25), ("numba", 64, 0.25), ("numpy", 64, 0.25)]


def _td_raw(f: dict[str, Any], n: int) -> dict[str, float]:
    return f["raw_mountaincar_gym_1"] if n == 1 else f[f"raw_mountaincar_{n}"]


def _td_targets(f: dict[str, Any]) -> list[str]:
    lines = []
    for backend, n, goal in TD_GOALS:
        if f"td_{backend}_{n}" not in f:
            lines.append(f"not measured: TD(lambda) at {n} env(s) with {backend} (not installed)")
            continue
        ratio = f[f"td_{backend}_{n}"]["median"] / _td_raw(f, n)["median"]
        raw = "one gym.make env's" if n == 1 else f"the raw {n}-env vector env's"
        lines.append(
            _check(
                ratio >= goal,
                f"TD(lambda) tile coding at {n} env{'s' if n > 1 else ''} with {backend} runs at "
                f"{_share(ratio, goal)} of {raw} MountainCar-v0 steps/s (target {goal:.0%})",
            )
        )
    return lines


def _td_rows(f: dict[str, Any]) -> list[str]:
    rows = [
        "| num_envs | raw env, random actions | update.backend=numpy | "
        "update.backend=numba | numpy / raw | numba / raw |",
        "|---|---|---|---|---|---|",
    ]
    raws = [
        (1, "gym.make (the target's)", f["raw_mountaincar_gym_1"]),
        (1, "our vector env (what trains)", f["raw_mountaincar_1"]),
        (64, "our vector env", f["raw_mountaincar_64"]),
    ]
    for n, name, raw in raws:
        cells, ratios = [], []
        for backend in ("numpy", "numba"):
            stat = f.get(f"td_{backend}_{n}")
            cells.append(_fmt(stat) if stat else "not installed")
            ratios.append(f"{stat['median'] / raw['median']:.0%}" if stat else "-")
        rows.append(f"| {n} | {name}: {_fmt(raw)} | {' | '.join(cells)} | {' | '.join(ratios)} |")
    rows += [
        "",
        "A fresh process, build of a 1-env agent to the end of its first vector step (s):",
        "",
        "| update.backend | seconds |",
        "|---|---|",
        f"| numpy | {_fmt(f['first_step_numpy'], digits=3)} |",
    ]
    if "first_step_numba_compile" in f:
        rows += [
            "| numba, first process on the machine (compiles the kernels; empty cache) | "
            f"{_fmt(f['first_step_numba_compile'], digits=2)} |",
            "| numba, any later process (loads them from numba's cache) | "
            f"{_fmt(f['first_step_numba_cached'], digits=2)} |",
        ]
    return rows


def targets(f: dict[str, Any]) -> list[str]:
    lines = []
    for n in (16, 64):
        ratio = f[f"reinforce_{n}"]["median"] / f[f"raw_env_{n}"]["median"]
        lines.append(
            _check(
                ratio >= 0.25,
                f"REINFORCE training at {n} envs runs at "
                f"{_share(ratio, 0.25)} of the raw env's steps/s (target 25%)",
            )
        )
    solve = f["solve"]
    ours = solve["twrl REINFORCE (preset)"]["time"]
    if ours is not None:
        lines.append(
            _check(
                ours["median"] <= 5.0,
                f"REINFORCE solves CartPole-v1 in {ours['median']:.2f} s (target 5 s)",
            )
        )
    best = min(
        (v["time"]["median"] for k, v in solve.items() if k.startswith("twrl") and v["time"]),
        default=None,
    )
    sb3 = min(
        (v["time"]["median"] for k, v in solve.items() if k.startswith("SB3") and v["time"]),
        default=None,
    )
    if best is not None and sb3 is not None:
        lines.append(
            _check(
                best <= sb3 / 3,
                f"our best agent solves in {best:.2f} s, "
                f"{best / sb3:.0%} of SB3's best {sb3:.2f} s "
                "(target at most 33%)",
            )
        )
    lines += _td_targets(f)
    for steps in (200_000, 1_000_000):
        share = f[f"monitor_{steps}"]["overhead"]["median"]
        lines.append(
            _check(
                share <= 0.05,
                f"the default monitor adds {share:.1%} to a {steps:,}-step run (target 5%)",
            )
        )
    floor = f["import_floor"]["median"]
    first = f["startup_default"]["median"]
    lines.append(
        _check(
            first <= 1.3 * floor,
            f"first env step {first:.2f} s after launch, {first / floor:.2f}x the import floor "
            f"of {floor:.2f} s (target 1.3x)",
        )
    )
    wall, own = f["exit_wall"]["median"], f["exit_train_eval"]["median"]
    excess = f["exit_excess"]["median"]
    lines.append(
        _check(
            excess <= floor,
            f"the default `python train.py` exits {wall:.2f} s after launch, for {own:.2f} s of "
            f"training + evaluation: {excess:.2f} s beyond 1.3x that (target: at most the import "
            f"floor, {floor:.2f} s)",
        )
    )
    return lines


BOUNDS = """## What bounds each figure (profiled with cProfile; see benchmarks/README.md)

- **Raw env.** Gymnasium's `CartPoleVectorEnv.step` in numpy, plus its own
  `action_space.contains` assertion on every step (about a quarter of the step's cost).
- **Random agent.** The env, plus per-step bookkeeping in the runner (episode returns and
  lengths, autoreset masks) and the random policy: a few microseconds of numpy calls per
  vector step, so its share shrinks as `num_envs` grows.
- **REINFORCE training.** Per vector step: one forward pass of the MLP (run in numpy on views
  of the torch weights: torch's per-module call overhead cost more than the maths at these
  batch sizes), inverse-CDF sampling, writing the step into the episode buffer. Per update:
  the discounted-return scan (a Python loop over rows), one forward/backward pass and an Adam
  step. At 16 envs the env is about a third of the time; at 64 the network's matmuls on
  64-row batches and the update dominate, which is why the ratio to the raw env falls.
- **Time to solve.** Measured with the protocol above, which checks every 5,000 steps, so no
  agent can be credited with fewer than 5,000 steps; SB3's PPO and A2C run 8 envs and one
  gradient step per 32 (PPO: 20 epochs) or 5 (A2C) steps per env, and their per-step cost
  is dominated by torch module calls on tiny batches.
- **TD(lambda).** With numpy, about thirty small numpy calls per vector step (tile indices,
  action values, epsilon-greedy choice, the trace and weight update), each roughly a
  microsecond whatever the array size; at 64 envs the dense traces (64 x 1,944 entries) are
  read and written several times a step. With numba (`update.backend=auto` when installed;
  identical results) the agent is three compiled calls per vector step (tile indices with
  their action values, the epsilon-greedy choice, the learning step over sparse traces), so
  one env is bounded by the Python around them: the runner's per-step bookkeeping, the
  agent's `Step`, the generator draws, and numba's call overhead (a returned array costs
  about a microsecond to box). The env costs little: our vector env steps one car in Python
  floats (the same numbers as Gymnasium's env), faster than `gym.make`'s env, which the one-env
  target is measured against. At 64 envs the
  learning step itself (about 100 non-zero traces per env) and the env dominate. The rates
  are steady state: the first process on a machine compiles the kernels and later ones load
  them from numba's cache, at the cost the table gives (a run counts it in its training time).
- **Monitoring.** The training process no longer writes to MLflow (nor imports it): a writer
  process creates the run and writes its rows, checkpoints, curve and model. What stays on the
  training process: building the rows and one pipe write a second; checkpoints (`torch.save`
  of the state, its history as tensors, and a SHA-256: about 0.01 s each at 7,000 episodes,
  every 50,000 steps); the progress bar (about 3%); and at the end, waiting for the learning
  curve (drawn by the writer's drawer process while the writer logs the model; both handed
  over when training ends, so they overlap the final evaluation and video where there is one):
  about 0.25-0.35 s of matplotlib. The rest of the measured overhead is the writer's own CPU
  time (MLflow's SQLAlchemy store at about 0.1 ms a row, SQLite commits, the system-metrics
  sampler) competing with training for the machine's 2 cores: the writer only runs beside
  training for free where a core is idle.
- **Start-up.** MLflow's import and the store's opening are off the path to the first step:
  `train.py` starts the writer before it imports torch, and the run's creation overlaps the
  building of the env and agent, so the default monitor's first step comes within about a
  second of `monitor=none`'s. What remains beyond the import floor: creating torch's Adam
  imports `torch._dynamo` (about 1 s here, 0.4x the floor; every torch optimizer does, at
  creation or at its first step); Hydra composes the config twice (to find the run mode, then
  to run; about 0.5 s); our own modules, the env and the agent.
- **Launch to exit.** Start-up as above (a few seconds beyond the floor); after training, the
  default run records a video of the final policy: Gymnasium renders each CartPole frame with
  pygame and copies it out of the surface (5-20 ms a frame here, most of it that copy), and
  ffmpeg encodes each frame in its own process while the next is rendered (the encoding no
  longer follows the rendering); the console says "recording a video of the final policy"
  meanwhile. Then Python's own exit (torch's teardown; about 0.5 s, also in the floor).
  `monitor.video.enabled=false` (the sweeps' default) skips the video.
"""


def _monitor_rows(f: dict[str, Any], steps: int) -> list[str]:
    m = f[f"monitor_{steps}"]
    return [
        f"| REINFORCE {steps:,} steps, `monitor=none` (wall) | {_fmt(m['none'], ' s', digits=2)} |",
        f"| same, default monitor: progress, MLflow, checkpoints (wall) | "
        f"{_fmt(m['default'], ' s', digits=2)} |",
        f"| monitoring overhead, {steps:,} steps | {_fmt(m['overhead'], '%', 100, 1)} |",
    ]


def markdown(f: dict[str, Any], seeds: int) -> str:
    rows = [
        "# Benchmarks",
        "",
        f"Machine: {machine()}.",
        "",
        f"Medians over {seeds} seeds, [min-max]. Regenerate with `make bench`.",
        "",
        "## Throughput on CartPole-v1 (env steps per second)",
        "",
        "| num_envs | raw native vector env, random actions | twrl random agent | "
        "twrl REINFORCE training | training / raw |",
        "|---|---|---|---|---|",
    ]
    for n in (16, 64):
        ratio = f[f"reinforce_{n}"]["median"] / f[f"raw_env_{n}"]["median"]
        rows.append(
            f"| {n} | {_fmt(f[f'raw_env_{n}'])} | {_fmt(f[f'random_agent_{n}'])} | "
            f"{_fmt(f[f'reinforce_{n}'])} | {ratio:.0%} |"
        )
    rows += [
        "",
        "## Solving CartPole-v1 (greedy 20-episode mean >= 475, checked every 5,000 "
        "env steps; evaluation time excluded)",
        "",
        "| agent | solved | training time to solve | env steps to solve |",
        "|---|---|---|---|",
    ]
    for name, v in f["solve"].items():
        rows.append(
            f"| {name} | {v['solved']} | {_fmt(v['time'], ' s', digits=2)} | {_fmt(v['steps'])} |"
        )
    rows += [
        "",
        "## TD(lambda), tile coding, MountainCar-v0 (training steps/s)",
        "",
        *_td_rows(f),
        "",
        "## Monitoring and start-up",
        "",
        "| measure | value |",
        "|---|---|",
        *[line for steps in (200_000, 1_000_000) for line in _monitor_rows(f, steps)],
        f'| import floor: `python -c "import torch, gymnasium"` | '
        f"{_fmt(f['import_floor'], ' s', digits=2)} |",
        f"| launch to first env step, `monitor=none` | {_fmt(f['startup_none'], ' s', digits=2)} |",
        f"| launch to first env step, default monitor | "
        f"{_fmt(f['startup_default'], ' s', digits=2)} |",
        f"| default `python train.py`, launch to exit | {_fmt(f['exit_wall'], ' s', digits=2)} |",
        f"| same, its training + evaluation | {_fmt(f['exit_train_eval'], ' s', digits=2)} |",
        "",
        "## Targets",
        "",
        *[f"- {line}" for line in targets(f)],
        "",
        BOUNDS,
    ]
    return "\n".join(rows)


def log_to_mlflow(f: dict[str, Any], results: str) -> None:
    from mlflow import MlflowClient

    from twrl_exp.monitor.tracking import ensure_experiment
    from twrl_exp.paths import default_tracking_uri

    uri = default_tracking_uri()
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(
        ensure_experiment(client, "benchmarks", uri),
        run_name=f"bench {dt.datetime.now():%Y-%m-%d %H:%M}",
    )
    for key, value in f.items():
        if isinstance(value, dict) and "median" in value:
            client.log_metric(run.info.run_id, key, value["median"])
        elif key.startswith("monitor_"):
            for part, stat in value.items():
                client.log_metric(run.info.run_id, f"{key}/{part}", stat["median"])
    for name, v in f["solve"].items():
        if v["time"] is not None:
            key = "".join(c if c.isalnum() else "_" for c in name).strip("_")
            client.log_metric(run.info.run_id, f"solve_time/{key}", v["time"]["median"])
    client.log_artifact(run.info.run_id, results)
    client.set_terminated(run.info.run_id, "FINISHED")
