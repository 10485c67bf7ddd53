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


def targets(f: dict[str, Any]) -> list[str]:
    lines = []
    for n in (16, 64):
        ratio = f[f"reinforce_{n}"]["median"] / f[f"raw_env_{n}"]["median"]
        lines.append(
            _check(
                ratio >= 0.25,
                f"REINFORCE training at {n} envs runs at "
                f"{ratio:.0%} of the raw env's steps/s (target 25%)",
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
    td1, td64 = f["td_1"]["median"], f["td_64"]["median"]
    lines.append(_check(td1 >= 30_000, f"TD(lambda) single env {td1:,.0f} steps/s (target 30k)"))
    lines.append(_check(td64 >= 300_000, f"TD(lambda) 64 envs {td64:,.0f} steps/s (target 300k)"))
    for steps in (200_000, 1_000_000):
        share = f[f"monitor_{steps}"]["overhead"]["median"]
        lines.append(
            _check(
                share <= 0.05,
                f"the default monitor adds {share:.1%} to a {steps:,}-step run (target 5%)",
            )
        )
    lines.append(
        _check(
            f["startup_default"]["median"] <= 3.0,
            f"first env step {f['startup_default']['median']:.2f} s after launch (target 3 s)",
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
- **TD(lambda), one env.** About forty small numpy calls per step (tile indices, action
  values, epsilon-greedy choice, the trace and weight update, the env): each costs roughly a
  microsecond of Python/numpy overhead whatever the array size, so one env is bounded below
  20k steps/s. Reaching 30k would need a compiled kernel (e.g. numba) or a scalar pure-Python
  path for `num_envs=1`; neither is in place. With 64 envs the same calls serve 64 steps.
- **Monitoring.** Almost all of it is writing metric rows: every episode's return, length and
  trailing mean and every update's statistics go through MLflow's SQLAlchemy store at about
  0.1 ms a row (some 7,000 rows for 500k CartPole steps), so the cost grows with the run
  instead of amortising. The progress bar costs about 1%, checkpoints (every 50k steps) and
  the learning-curve PNG a few tenths of a second per run. MLflow's asynchronous logging was
  slower here: its writer thread competes with training for the GIL. Meeting 5% would need
  fewer rows (e.g. per-episode data as one artifact) or a bulk insert path.
- **Start-up.** Python imports dominate: torch (about 0.8 s), Hydra/OmegaConf and Gymnasium;
  with the default monitor also mlflow (about 0.85 s) and opening the SQLite store (about 0.45
  s). `monitor=none` skips both.
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
        "| num_envs | steps/s |",
        "|---|---|",
        f"| 1 | {_fmt(f['td_1'])} |",
        f"| 64 | {_fmt(f['td_64'])} |",
        "",
        "## Monitoring and start-up",
        "",
        "| measure | value |",
        "|---|---|",
        *[line for steps in (200_000, 1_000_000) for line in _monitor_rows(f, steps)],
        f"| launch to first env step, `monitor=none` | {_fmt(f['startup_none'], ' s', digits=2)} |",
        f"| launch to first env step, default monitor | "
        f"{_fmt(f['startup_default'], ' s', digits=2)} |",
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

    from twrl_exp.build import default_tracking_uri
    from twrl_exp.monitor.tracking import ensure_experiment

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
