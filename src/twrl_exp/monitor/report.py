"""The last lines of a run: its status, run id, a link that opens its charts in the MLflow UI,
where its video and learning curve are, and the commands that continue from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from rich.console import Console

from twrl_exp.monitor.links import experiment_url, run_url, ui_base
from twrl_exp.paths import commands

_STYLE = {"FINISHED": "bold green", "KILLED": "bold yellow", "FAILED": "bold red"}


def local_path(artifact_uri: str, path: str) -> Path | None:
    """Where an artifact lies on this machine, or None if the artifact store is remote."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path)) / path
    return None


def lines(
    *,
    status: str,
    name: str,
    tracker: Any | None,
    local_files: dict[str, Path],
    reason: str | None,
    ui_url: str | None = None,
) -> list[tuple[str, str]]:
    """``(label, text)`` rows of the report (a label of "" continues the header)."""
    rows: list[tuple[str, str]] = []
    if tracker is None or tracker.run_id is None:
        rows.append(("", f"{status}: {name} (not recorded in MLflow)"))
        rows += [(label, str(path)) for label, path in local_files.items()]
        return rows
    run_id = tracker.run_id
    rows.append(("", f"{status}: run {run_id}  {name}"))
    if reason and status != "FINISHED":
        rows.append(("why", reason))
    base = ui_base(tracker.tracking_uri, ui_url)
    local_ui = not tracker.tracking_uri.startswith(("http://", "https://"))
    hint = "  (start the UI with: mlflow ui)" if local_ui else ""
    rows.append(("view", run_url(base, tracker.experiment_id, run_id) + hint))
    rows.append(("runs", experiment_url(base, tracker.experiment_id)))
    for label, path in tracker.logged.items():
        here = local_path(tracker.artifact_uri, path)
        rows.append((label, str(here) if here is not None else f"{path} (artifact of the run)"))
    if getattr(tracker, "model_uri", None):
        rows.append(("agent", f"mlflow.pyfunc.load_model({tracker.model_uri!r})"))
    train, evaluate = commands()
    rows.append(("resume", f"{train} resume={run_id}"))
    if tracker.logged.get("model"):
        rows.append(("evaluate", f"{evaluate} run_id={run_id} video=true"))
    return rows


def print_report(console: Console, rows: list[tuple[str, str]], status: str) -> None:
    header = rows[0][1]
    console.print(header, style=_STYLE.get(status, "bold"), markup=False, highlight=False)
    for label, text in rows[1:]:
        console.print(f"  {label:<9}{text}", markup=False, highlight=False, soft_wrap=True)
