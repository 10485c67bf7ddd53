"""The same Optuna sweep with the joblib launcher on this machine and on the 2-node Ray cluster.

    make cluster-up && python benchmarks/cluster.py [--trials 16] [--steps 150000]

Three variants of ``+sweep=cartpole_reinforce`` (pruning off, video off, 2 trials at a time,
fresh studies): joblib with the project's SQLite stores; Ray (the cluster's two nodes, one CPU
each) with the same SQLite stores, which isolates what Ray itself costs; and Ray with the
cluster's PostgreSQL study and MLflow server (``+cluster=local``). For each: wall time, trials per
minute, the trials' own training + evaluation time (from their MLflow runs), and the overhead per
trial = wall x parallel jobs / trials - mean training + evaluation time of a trial.
Results go to benchmarks/RESULTS-cluster.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from twrl_exp.cluster import read_state  # noqa: E402


def sweep(name: str, args: list[str], env: dict[str, str], trials: int, steps: int) -> float:
    cmd = [
        sys.executable, "train.py", "-m", "+sweep=cartpole_reinforce",
        f"hydra.sweeper.study_name={name}", f"hydra.sweeper.n_trials={trials}",
        "hydra.sweeper.n_jobs=2", "hydra.sweeper.pruner.name=none",
        f"train.max_env_steps={steps}", "monitor.video.enabled=false",
        f"monitor.mlflow.experiment={name}", *args,
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name} failed: {done.stderr[-2000:]}")
    return wall


def compute_time(uri: str, experiment: str) -> list[float]:
    """Each trial's training + evaluation seconds (one seed per trial)."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], "tags.`optuna.trial` != ''", max_results=1000)
    return [r.data.metrics["train_time_s"] + r.data.metrics["eval_time_s"] for r in runs]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--steps", type=int, default=150_000)
    args = parser.parse_args()
    state = read_state()
    if state is None:
        raise SystemExit("No cluster is up: run `make cluster-up` first.")
    uris = state["uris"]
    stamp = time.strftime("%H%M%S")
    work = Path(tempfile.mkdtemp(prefix="twrl-cluster-bench-"))
    local_uri = f"sqlite:///{work / 'mlflow.db'}"
    base = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    base.pop("TWRL_OPTUNA_STORAGE", None)
    env_local = {**base, "MLFLOW_TRACKING_URI": local_uri, "TWRL_PROJECT_ROOT": str(work)}
    env_cluster = {**base, "TWRL_PROJECT_ROOT": str(work), "RAY_AUTH_MODE": "token"}
    ray_here = ["hydra/launcher=ray", f"hydra.launcher.address={uris['ray_address']}",
                "hydra.launcher.auth=token"]  # fmt: skip
    variants = [
        ("joblib, SQLite", [f"hydra.sweep.dir={work}/j"], env_local, local_uri),
        ("Ray 2 nodes, SQLite", [*ray_here, f"hydra.sweep.dir={work}/r"], env_local, local_uri),
        (
            "Ray 2 nodes, PostgreSQL + MLflow server",
            ["+cluster=local", f"hydra.sweep.dir={work}/c"],
            env_cluster,
            uris["mlflow_uri"],
        ),
    ]
    rows = []
    for label, extra, env, uri in variants:
        name = f"bench_{stamp}_{len(rows)}"
        wall = sweep(name, extra, env, args.trials, args.steps)
        own = compute_time(uri, name)
        per_trial = wall * 2 / args.trials
        mean_own = sum(own) / len(own)
        rows.append(
            {
                "variant": label,
                "wall_s": wall,
                "trials_per_min": args.trials / wall * 60,
                "mean_train_eval_s": mean_own,
                "overhead_per_trial_s": per_trial - mean_own,
            }
        )
        print(json.dumps(rows[-1]))
    lines = [
        "# Sweeps on the cluster: joblib vs Ray",
        "",
        f"`python benchmarks/cluster.py --trials {args.trials} --steps {args.steps}` on "
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; the cluster from `make cluster-up` "
        "(Ray head + 1 worker node, 1 CPU each, on this machine). The sweep: "
        f"`+sweep=cartpole_reinforce`, {args.trials} trials, 2 at a time, pruning and video off, "
        f"{args.steps:,} env steps per trial.",
        "",
        "| variant | wall (s) | trials/min | trial's own train+eval (s) | overhead per trial (s) |",
        "|---|---:|---:|---:|---:|",
        *[
            f"| {r['variant']} | {r['wall_s']:.1f} | {r['trials_per_min']:.2f} | "
            f"{r['mean_train_eval_s']:.2f} | {r['overhead_per_trial_s']:.2f} |"
            for r in rows
        ],
        "",
        "Overhead per trial = wall x 2 / trials - a trial's own training + evaluation time: the "
        "process or Ray task start, imports, the store, the model and curve uploads.",
    ]
    (ROOT / "benchmarks" / "RESULTS-cluster.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
