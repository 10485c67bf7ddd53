"""What the leaderboard reads from MLflow: the run and row records, the runs that match the
filters (``load_runs``) and each row's learning curve and videos (``attach_curves_and_videos``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from urllib.parse import quote

import numpy as np
from mlflow import MlflowClient

from twrl_exp import store
from twrl_exp.identity import agent_params
from twrl_exp.objectives import PARETO_TAG
from twrl_exp.stats import aggregate_curves

RANKING_RULE = (
    "Ranked per env: rows with solved seeds first (more seeds solved, then fewer episodes to "
    "solve), then by IQM of best 100-episode mean return over seeds (mean when < 3 seeds)."
)
TIE_RULE = (
    "Ties: a row whose seeds' best 100-episode means Welch's t-test (5%) cannot tell apart from "
    "those of the first row of its band shares that row's rank, marked '=' (2 seeds or more "
    "each; twrl-compare runs the full comparison)."
)
SEEDS_RULE = (
    "'seeds' counts distinct seeds: when an agent ran one seed more than once, only the latest "
    "started run of that seed counts, in every figure (the column then reads e.g. '1 (2 runs)')."
)
PARETO_RULE = (
    "'[Pareto front: S]': the row's runs are a trial on the Pareto front of the multi-objective "
    "Optuna study S (no other trial of S is as good on every objective and better on one); S's "
    "sweep run holds the front, its objectives and the point picked (optuna/pareto_front.json)."
)
DEFAULT_HTML = "leaderboard.html"
CURVE_METRIC = "episode/mean_return_100"
COMPARISON_TAG = "twrl.comparison"  # the run twrl-compare logs a comparison to
COMPOSITION_KEYS = frozenset({"update.name", "policy.name", "model.name", "env.id"})
Curve = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class RunRecord:
    """What the leaderboard needs of one MLflow run."""

    run_id: str
    run_name: str
    experiment_id: str
    env: str
    seed: str
    start_time: datetime
    artifact_uri: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]

    @property
    def composition(self) -> str:
        """``update/policy/model``."""
        parts = (self.tags.get(g) or self.params.get(f"{g}.name", "?") for g in _GROUPS)
        return "/".join(parts)

    @property
    def agent(self) -> dict[str, str]:
        """The params that define the agent: all but the seed and run bookkeeping (the rule
        of the runs' ``agent`` tag, :mod:`twrl_exp.identity`)."""
        return agent_params(self.params)

    def metric(self, key: str) -> float:
        return self.metrics.get(key, math.nan)


_GROUPS = ("update", "policy", "model")


@dataclass
class Row:
    """One agent on one env: one run per distinct seed and their aggregates (``SEEDS_RULE``).

    ``runs`` are the counted runs, the latest of each seed; ``repeats`` the earlier runs of those
    seeds, listed but in no figure, so copies of one seed never pass for independent samples.
    """

    env: str
    composition: str
    agent: dict[str, str]
    runs: list[RunRecord]
    best_mean: float
    best_iqm: float | None
    best_ci: tuple[float, float] | None
    final_eval: float
    n_solved: int
    episodes_to_solve: float
    env_steps_to_solve: float
    time_to_solve_s: float
    train_time_s: float
    repeats: list[RunRecord] = field(default_factory=list)
    rank: int = 0
    tied_with: int | None = None  # the rank of the band's first row it is tied with (TIE_RULE)
    # ``twrl-compare runs:... runs:...``: this row against its env's first row (the first row:
    # against the second); empty where the env has one row
    compare_command: str = ""
    differing: dict[str, str] = field(default_factory=dict)
    composition_shared: bool = False  # another row on the env has the same composition
    curve: Curve | None = None
    videos: list[tuple[str, str]] = field(default_factory=list)  # (label, file:// url)

    @property
    def n_seeds(self) -> int:
        """Distinct seeds: the number of counted runs."""
        return len(self.runs)

    @property
    def seeds_text(self) -> str:
        """``3``, or ``1 (2 runs)`` when a seed was run more than once."""
        total = len(self.runs) + len(self.repeats)
        return f"{self.n_seeds} ({total} runs)" if self.repeats else str(self.n_seeds)

    @property
    def rank_text(self) -> str:
        """``3``, or ``1=`` when tied with the row ranked 1 (``TIE_RULE``)."""
        return f"{self.tied_with}=" if self.tied_with is not None else str(self.rank)

    @property
    def score(self) -> float:
        """IQM of best_mean_return with >= 3 seeds, else the mean."""
        return self.best_iqm if self.best_iqm is not None else self.best_mean

    @property
    def label(self) -> str:
        """What tells this row apart from the others on its env, first: the hyperparameters that
        differ when another row has the same composition (``lr=0.01 (reinforce/…)``), else the
        composition (``none/random/none max_env_steps=…``)."""
        extras = ", ".join(f"{k}={v}" for k, v in self.differing.items())
        front = f" [Pareto front: {', '.join(self.pareto)}]" if self.pareto else ""
        if self.composition_shared and extras:
            return f"{extras} ({self.composition}){front}"
        return f"{self.composition} {extras}".strip() + front

    @property
    def pareto(self) -> list[str]:
        """The multi-objective sweeps (Optuna studies) whose Pareto front this row's runs are
        on (``PARETO_RULE``)."""
        return sorted({r.tags[PARETO_TAG] for r in self.runs if r.tags.get(PARETO_TAG)})


# --------------------------------------------------------------------------- loading


def load_runs(
    tracking_uri: str | None = None,
    *,
    envs: Iterable[str] = (),
    experiments: Iterable[str] = (),
    tags: dict[str, str] | None = None,
    since: date | None = None,
    until: date | None = None,
    include_pruned: bool = False,
) -> list[RunRecord]:
    """The FINISHED runs that match every filter (``until`` is inclusive; dates in local time)."""
    client = store.open_client(tracking_uri or _default_uri(), read_only=True)
    wanted = set(experiments)
    names = {
        e.experiment_id: e.name
        for e in client.search_experiments()
        if not wanted or e.name in wanted
    }
    if not names:
        return []
    clauses = ["attributes.status = 'FINISHED'"]
    if since is not None:
        clauses.append(f"attributes.start_time >= {_ms(since)}")
    if until is not None:
        clauses.append(f"attributes.start_time < {_ms(until + timedelta(days=1))}")
    wanted_envs, wanted_tags = set(envs), tags or {}
    out: list[RunRecord] = []
    token: str | None = None
    while True:
        page = client.search_runs(
            list(names), " and ".join(clauses), max_results=1000, page_token=token
        )
        for run in page:
            t = run.data.tags
            if "sweep" in t or COMPARISON_TAG in t:  # a sweep's parent, a comparison's record
                continue
            if t.get("stopped") == "pruned" and not include_pruned:
                continue
            if any(t.get(k) != v for k, v in wanted_tags.items()):
                continue
            params = dict(run.data.params)
            env = t.get("env") or params.get("env.id") or names[run.info.experiment_id]
            if wanted_envs and env not in wanted_envs:
                continue
            out.append(
                RunRecord(
                    run_id=run.info.run_id,
                    run_name=run.info.run_name or run.info.run_id,
                    experiment_id=run.info.experiment_id,
                    env=env,
                    seed=t.get("seed") or params.get("seed", "?"),
                    start_time=datetime.fromtimestamp((run.info.start_time or 0) / 1000),
                    artifact_uri=run.info.artifact_uri or "",
                    params=params,
                    metrics=dict(run.data.metrics),
                    tags=dict(t),
                )
            )
        token = page.token
        if not token:
            return out


def _default_uri() -> str:
    from twrl_exp.paths import default_tracking_uri

    return default_tracking_uri()


def _ms(day: date) -> int:
    return int(datetime.combine(day, time.min).astimezone().timestamp() * 1000)


def attach_curves_and_videos(
    rows: Sequence[Row], tracking_uri: str | None = None, points: int = 200
) -> None:
    """Fill each row's ``curve`` (mean/min/max over seeds of the trailing-100 mean return vs env
    steps, on ``points`` steps) and ``videos`` (its runs' ``videos/`` artifacts on local disk)."""
    client = store.open_client(tracking_uri or _default_uri(), read_only=True)
    for row in rows:
        curves = []
        for run in row.runs:
            history = client.get_metric_history(run.run_id, CURVE_METRIC)
            curves.append(([m.step for m in history], [m.value for m in history]))
            for path in _artifact_files(client, run.run_id, "videos"):
                url = _file_url(run.artifact_uri, path)
                if url is not None:
                    row.videos.append((f"s{run.seed} {path.removeprefix('videos/')}", url))
        grid, mean, low, high = aggregate_curves(curves, points)
        row.curve = (grid, mean, low, high) if grid.size else None


def _artifact_files(client: MlflowClient, run_id: str, path: str, depth: int = 2) -> list[str]:
    files: list[str] = []
    for item in client.list_artifacts(run_id, path):
        if item.is_dir and depth > 0:
            files += _artifact_files(client, run_id, item.path, depth - 1)
        elif not item.is_dir:
            files.append(item.path)
    return files


def _file_url(artifact_uri: str, path: str) -> str | None:
    """A browser-openable URL of an artifact, or None when the artifacts are not on local disk."""
    if artifact_uri.startswith("file:"):
        return f"{artifact_uri.rstrip('/')}/{quote(path)}"
    if artifact_uri.startswith("/"):
        return (Path(artifact_uri) / path).as_uri()
    return None
