"""The end of a sweep: the best trial printed and saved as a ready-to-run experiment config,
Optuna's plots and the study's figures logged to the sweep's parent MLflow run (its search
space is logged there as params when it opens)."""

from __future__ import annotations

import html
import logging
import re
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState
from rich.console import Console
from rich.table import Table

from hydra_plugins.twrl_optuna_sweeper import _search_space as search_space
from twrl_exp import store
from twrl_exp.monitor.sweep import SweepParent
from twrl_exp.monitor.sweep_summary import summarize
from twrl_exp.paths import commands

if TYPE_CHECKING:
    from hydra_plugins.twrl_optuna_sweeper._sweeper import OptunaSweeperImpl as TwrlOptunaSweeper

log = logging.getLogger(__name__)
GROUPS = ("env", "model", "policy", "update")
DROPPED = ("monitor", "trial", "resume")
PLOTS = {
    "optimization_history": "plot_optimization_history",
    "param_importances": "plot_param_importances",
    "parallel_coordinate": "plot_parallel_coordinate",
    "slice": "plot_slice",
    "intermediate_values": "plot_intermediate_values",
}


def study_figures(study: optuna.Study) -> dict[str, float]:
    trials = study.get_trials(deepcopy=False)
    figures: dict[str, float] = {
        f"trials_{state.name.lower()}": float(sum(t.state == state for t in trials))
        for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    figures["env_steps_total"] = float(sum(t.user_attrs.get("env_steps", 0) for t in trials))
    figures["train_time_total_s"] = float(
        sum(t.user_attrs.get("train_time_s", 0.0) for t in trials)
    )
    if any(t.state == TrialState.COMPLETE for t in trials):
        figures["best_value"] = float(study.best_value)
        figures["best_trial"] = float(study.best_trial.number)
    return figures


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in ("_target_", "_partial_", "name")}
    return node


def _is_absolute(text: str) -> bool:
    return PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute()


def portable(node: Any, root: str, key: str = "", outside: list[str] | None = None) -> Any:
    """``node`` with paths inside the project ``root`` written as ``${paths.root}/...``, so that
    they follow the checkout the file is run in; keys of other absolute paths go to
    ``outside`` (they cannot be made portable)."""
    if isinstance(node, dict):
        return {k: portable(v, root, f"{key}.{k}".lstrip("."), outside) for k, v in node.items()}
    if isinstance(node, list):
        return [portable(v, root, f"{key}[{i}]", outside) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node
    prefix = root.rstrip("/\\")
    text = re.sub(re.escape(prefix) + r"(?=[/\\]|$)", "${paths.root}", node) if prefix else node
    if _is_absolute(text) and outside is not None:
        outside.append(key)
    return text


def experiment_yaml(job_cfg: DictConfig, study: optuna.Study) -> str:
    """A ``# @package _global_`` config reproducing the best trial's run exactly, in any checkout:
    no ``paths``, and project paths relative to ``${paths.root}``."""
    choices = dict(job_cfg.hydra.runtime.choices)
    task = {k: job_cfg[k] for k in job_cfg if k not in ("hydra", *DROPPED)}
    values = OmegaConf.to_container(OmegaConf.create(task), resolve=True)
    assert isinstance(values, dict)
    # Where this machine keeps the project (absolute folders): the rerunning checkout's own.
    values.pop("paths", None)
    outside: list[str] = []
    body = portable(_strip(values), str(job_cfg.paths.root), outside=outside)
    best = study.best_trial
    header = [
        "# @package _global_",
        f"# Best trial {best.number} of Optuna study '{study.study_name}': value {best.value:.6g}.",
        f"# Run it: {commands()[0]} +experiment={study.study_name}",
        *[
            f"# {key} is an absolute path outside the project: check it on another machine."
            for key in outside
        ],
        "defaults:",
        *[f"  - override /{group}: {choices[group]}" for group in GROUPS],
        "",
    ]
    for key in outside:
        log.warning(f"The saved experiment's {key} is an absolute path outside the project.")
    return "\n".join(header) + OmegaConf.to_yaml(OmegaConf.create(body))


def save_experiment(sweeper: TwrlOptunaSweeper, study: optuna.Study) -> Path:
    assert sweeper.config is not None
    assert sweeper.hydra_context is not None
    best = study.best_trial
    overrides = [
        *sweeper.fixed,
        *[search_space.override_text(k, best.params[k]) for k in sweeper.space],
    ]
    job_cfg = sweeper.hydra_context.config_loader.load_sweep_config(sweeper.config, overrides)
    folder = Path(sweeper.settings.experiment_dir or job_cfg.paths.experiment_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{study.study_name}.yaml"
    path.write_text(experiment_yaml(job_cfg, study))
    return path


def log_search_space(parent: SweepParent, space: dict[str, BaseDistribution]) -> None:
    """Each swept key's distribution as a param of the parent (``update.lr``:
    ``log-uniform[1e-05, 0.05]``), as a grid sweep's parent holds its swept values. A resumed
    study whose space changed keeps the first params (MLflow's cannot change): a warning."""
    from mlflow.entities import Param

    logged = parent.client.get_run(parent.run_id).data.params
    new = []
    for swept, dist in space.items():
        key = swept.lstrip("+")  # ++key / +key: MLflow's param names take no '+'
        text = search_space.describe(dist)[:6000]
        if key not in logged:
            new.append(Param(key, text))
        elif logged[key] != text:
            log.warning(f"{key} is now {text}; the sweep's run keeps {logged[key]} as its param.")
    if new:
        parent.client.log_batch(parent.run_id, params=new)


def plots_page(study: optuna.Study) -> str:
    """Optuna's plots in one self-contained HTML page: plotly.js (~4.8 MB) once, inline, so that
    the page works offline (a cluster, the MLflow UI's sandboxed viewer) without a copy per plot.
    Each plot is drawn in ``<div id=NAME>``; a plot Optuna cannot draw is listed with why."""
    import plotly.io
    import plotly.offline

    sections, skipped = [], []
    for name, function in PLOTS.items():
        try:
            figure = getattr(optuna.visualization, function)(study)
        except (ValueError, RuntimeError, ImportError) as exc:
            log.warning(f"Optuna plot {name} skipped: {exc}")
            skipped.append(f"<li>{name}: {html.escape(str(exc))}</li>")
            continue
        sections.append(
            plotly.io.to_html(
                figure,
                include_plotlyjs=False,
                full_html=False,
                div_id=name,
                default_height="520px",
            )
        )
    title = html.escape(f"Optuna study '{study.study_name}'")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            f'<html><head><meta charset="utf-8"><title>{title}</title>',
            "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>",
            f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>',
            f"</head><body><h1>{title}</h1>",
            *sections,
            *(["<h2>Not drawn</h2><ul>", *skipped, "</ul>"] if skipped else []),
            "</body></html>",
        ]
    )


def log_plots(study: optuna.Study, parent: SweepParent) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "plots.html"
        page.write_text(plots_page(study), encoding="utf-8")
        parent.client.log_artifact(parent.run_id, str(page), "optuna")


def report(
    study: optuna.Study, sweeper: TwrlOptunaSweeper, parent: SweepParent | None, url: str
) -> None:
    """Print the best trial, save it as an experiment config, record the sweep in MLflow."""
    figures = study_figures(study)
    console = Console(soft_wrap=True)
    shown = store.redact(url)
    table = Table(title=f"Optuna study '{study.study_name}' ({shown})", show_header=False)
    for key, value in figures.items():
        table.add_row(key, f"{value:,.6g}")
    saved = None
    if "best_value" in figures:
        for key, value in study.best_params.items():
            table.add_row(f"best {key}", str(value))
        saved = save_experiment(sweeper, study)
    else:
        table.add_row("best", "no trial completed")
    console.print(table)
    if saved is not None:  # on lines of their own, whole, to be copied at any width
        for label, text in (
            ("saved", str(saved)),
            ("re-run", f"{commands()[0]} +experiment={study.study_name}"),
        ):
            console.print(f"{label:<7}{text}", markup=False, highlight=False)
    if parent is None:
        return
    client, run_id = parent.client, parent.run_id
    # Tags, not params: a resumed study logs them again, possibly with new values.
    tags = {f"best.{k}": str(v) for k, v in study.best_params.items()} if saved else {}
    tags.update({"sweeper." + str(k): str(v) for k, v in sweeper.settings.items() if k != "params"})
    for key, text in tags.items():
        client.set_tag(run_id, key, text[:5000])
    for key, figure in figures.items():
        client.log_metric(run_id, key, figure)
    if saved is not None:
        client.log_artifact(run_id, str(saved), "best")
    summarize(
        client,
        run_id,
        parent.experiment_id,
        tracking_uri=str(client.tracking_uri),
        objective=str(sweeper.settings.objective),
        direction=str(sweeper.settings.direction),
        ui_url=sweeper.config.monitor.mlflow.ui_url if sweeper.config is not None else None,
        console=console,
    )
    if sweeper.settings.plots:
        log_plots(study, parent)
