"""What a sweep's parent run says about its children: the swept values, the best child (its
metrics, name and link), how many jobs finished, failed or were killed, and the same as a table
at the end of the sweep in the terminal."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from twrl_exp import objectives
from twrl_exp.monitor.links import run_url, ui_base

OBJECTIVE = "objective"  # every run logs the value it returns to a sweep under this metric
# ... or, with several objectives, each value under objective.<name>


def objective_metrics(objective: Any) -> list[str]:
    """The metrics a sweep's runs log their objective(s) under."""
    wanted = objectives.names(objective)
    return [OBJECTIVE] if len(wanted) == 1 else [f"{OBJECTIVE}.{name}" for name in wanted]


def run_front(runs: list[Any], objective: Any, direction: Any = None) -> list[Any]:
    """The FINISHED runs on the Pareto front of their objectives' metrics (several objectives)."""
    keys = objective_metrics(objective)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    points = [[r.data.metrics.get(k, math.nan) for k in keys] for r in finished]
    ways = objectives.directions(objective, direction, "direction")
    return [finished[i] for i in objectives.pareto_front(points, ways)]


def children(client: Any, parent_id: str, experiment_id: str) -> list[Any]:
    return list(
        client.search_runs(
            [experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'", max_results=5000
        )
    )


def best_child(runs: list[Any], direction: str = "maximize") -> Any | None:
    scored = [
        r
        for r in runs
        if r.info.status == "FINISHED" and math.isfinite(r.data.metrics.get(OBJECTIVE, math.nan))
    ]
    if not scored:
        return None
    sign = 1.0 if direction == "maximize" else -1.0
    return max(scored, key=lambda r: sign * r.data.metrics[OBJECTIVE])


def summarize(
    client: Any,
    parent_id: str,
    experiment_id: str,
    *,
    tracking_uri: str,
    objective: Any,
    direction: Any = None,
    ui_url: str | None = None,
    console: Console | None = None,
    chosen: str | None = None,
) -> Any | None:
    """Record the sweep's outcome on its parent run and print it; the best child run.

    With several objectives the runs on their Pareto front are marked, and the best run is
    ``chosen`` (a run id: the point an Optuna sweep picked), else the front's knee
    (:func:`twrl_exp.objectives.pick`)."""
    runs = children(client, parent_id, experiment_id)
    wanted = objectives.names(objective)
    ways = objectives.directions(objective, direction, "direction")
    front: list[Any] = []
    if len(wanted) == 1:
        best = best_child(runs, ways[0])
    else:
        front = run_front(runs, objective, ways)
        keys = objective_metrics(objective)
        best = next((r for r in front if r.info.run_id == chosen), None)
        if best is None and front:
            points = [[r.data.metrics[k] for k in keys] for r in front]
            best = front[objectives.pick(points, ways, objectives.KNEE, wanted)]
    counts = {
        f"jobs_{status.lower()}": float(sum(r.info.status == status for r in runs))
        for status in ("FINISHED", "FAILED", "KILLED")
    }
    for key, value in counts.items():
        client.log_metric(parent_id, key, value)
    told = ", ".join(f"{name} ({way})" for name, way in zip(wanted, ways, strict=True))
    client.set_tag(parent_id, "objective", told)
    url = None
    if best is not None:
        url = run_url(ui_base(tracking_uri, ui_url), experiment_id, best.info.run_id)
        for key, value in best.data.metrics.items():
            if "/" not in key:  # summary figures, not series
                client.log_metric(parent_id, f"best/{key}", value)
        for key, value in {
            "best.run_id": best.info.run_id,
            "best.run_name": best.info.run_name,
            "best.url": url,
        }.items():
            client.set_tag(parent_id, key, value)
    _print(console or Console(soft_wrap=True), runs, best, url, wanted, ways, front)
    return best


def _print(
    console: Console,
    runs: list[Any],
    best: Any,
    url: str | None,
    wanted: tuple[str, ...],
    ways: list[str],
    front: list[Any],
) -> None:
    keys = objective_metrics(list(wanted))
    on_front = {r.info.run_id for r in front}
    sign = -1.0 if ways[0] == "maximize" else 1.0
    ranked = sorted(
        runs,
        key=lambda r: (
            r.info.run_id not in on_front if front else False,
            keys[0] not in r.data.metrics,
            sign * r.data.metrics.get(keys[0], 0.0),
        ),
    )
    told = ", ".join(f"{name} ({way})" for name, way in zip(wanted, ways, strict=True))
    multi = len(wanted) > 1
    title = f"sweep: {len(runs)} runs, " + (
        f"{len(front)} on the Pareto front of {told}" if multi else f"by {told}"
    )
    table = Table(title=title)
    headers = ["run", "status", *wanted, *(["front"] if multi else []), "final eval"]
    for header in headers:
        left = header == "run"
        table.add_column(header, no_wrap=not left, justify="left" if left else "right")
    for run in ranked[:20]:
        m = run.data.metrics
        table.add_row(
            run.info.run_name or run.info.run_id,
            run.info.status,
            *[f"{m[k]:.4g}" if k in m else "-" for k in keys],
            *(["yes" if run.info.run_id in on_front else ""] if multi else []),
            f"{m['final_eval_mean_return']:.2f}" if "final_eval_mean_return" in m else "-",
        )
    console.print(table)
    if best is not None:
        what = "picked" if multi else "best"
        console.print(f"{what}: {best.info.run_name}  {url}", markup=False, highlight=False)
