"""What a sweep's parent run says about its children: the swept values, the best child (its
metrics, name and link), how many jobs finished, failed or were killed, and the same as a table
at the end of the sweep in the terminal."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from twrl_exp.monitor.links import run_url, ui_base

OBJECTIVE = "objective"  # every run logs the value it returns to a sweep under this metric


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
    objective: str,
    direction: str = "maximize",
    ui_url: str | None = None,
    console: Console | None = None,
) -> Any | None:
    """Record the sweep's outcome on its parent run and print it; the best child run."""
    runs = children(client, parent_id, experiment_id)
    best = best_child(runs, direction)
    counts = {
        f"jobs_{status.lower()}": float(sum(r.info.status == status for r in runs))
        for status in ("FINISHED", "FAILED", "KILLED")
    }
    for key, value in counts.items():
        client.log_metric(parent_id, key, value)
    client.set_tag(parent_id, "objective", f"{objective} ({direction})")
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
    _print(console or Console(soft_wrap=True), runs, best, url, objective, direction)
    return best


def _print(
    console: Console, runs: list[Any], best: Any, url: str | None, objective: str, direction: str
) -> None:
    sign = -1.0 if direction == "maximize" else 1.0
    ranked = sorted(
        runs,
        key=lambda r: (OBJECTIVE not in r.data.metrics, sign * r.data.metrics.get(OBJECTIVE, 0.0)),
    )
    table = Table(title=f"sweep: {len(runs)} runs, by {objective} ({direction})")
    for header in ("run", "status", objective, "final eval"):
        left = header == "run"
        table.add_column(header, no_wrap=not left, justify="left" if left else "right")
    for run in ranked[:20]:
        m = run.data.metrics
        table.add_row(
            run.info.run_name or run.info.run_id,
            run.info.status,
            f"{m[OBJECTIVE]:.2f}" if OBJECTIVE in m else "-",
            f"{m['final_eval_mean_return']:.2f}" if "final_eval_mean_return" in m else "-",
        )
    console.print(table)
    if best is not None:
        console.print(f"best: {best.info.run_name}  {url}", markup=False, highlight=False)
