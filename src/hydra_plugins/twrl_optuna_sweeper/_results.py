"""The end of a sweep: the best trial printed and saved as a ready-to-run experiment config,
Optuna's plots and the study's figures logged to the sweep's parent MLflow run."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState
from rich.console import Console
from rich.table import Table

from hydra_plugins.twrl_optuna_sweeper import _search_space as search_space
from twrl_exp import store
from twrl_exp.monitor.sweep import SweepParent
from twrl_exp.monitor.sweep_summary import summarize

if TYPE_CHECKING:
    from hydra_plugins.twrl_optuna_sweeper._sweeper import OptunaSweeperImpl as TwrlOptunaSweeper

log = logging.getLogger(__name__)
GROUPS = ("env", "model", "policy", "update")
DROPPED = ("monitor", "trial", "resume")


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


def experiment_yaml(job_cfg: DictConfig, study: optuna.Study) -> str:
    """A ``# @package _global_`` config reproducing the best trial's run exactly."""
    choices = dict(job_cfg.hydra.runtime.choices)
    task = {k: job_cfg[k] for k in job_cfg if k not in ("hydra", *DROPPED)}
    values = OmegaConf.to_container(OmegaConf.create(task), resolve=True)
    assert isinstance(values, dict)
    body = {k: _strip(v) for k, v in values.items()}
    best = study.best_trial
    header = [
        "# @package _global_",
        f"# Best trial {best.number} of Optuna study '{study.study_name}': value {best.value:.6g}.",
        f"# Run it: python train.py +experiment={study.study_name}",
        "defaults:",
        *[f"  - override /{group}: {choices[group]}" for group in GROUPS],
        "",
    ]
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


def log_plots(study: optuna.Study, parent: SweepParent) -> None:
    plots: dict[str, Any] = {
        "optimization_history": optuna.visualization.plot_optimization_history,
        "param_importances": optuna.visualization.plot_param_importances,
        "parallel_coordinate": optuna.visualization.plot_parallel_coordinate,
        "slice": optuna.visualization.plot_slice,
        "intermediate_values": optuna.visualization.plot_intermediate_values,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, plot in plots.items():
            try:
                figure = plot(study)
            except (ValueError, RuntimeError, ImportError) as exc:
                log.warning(f"Optuna plot {name} skipped: {exc}")
                continue
            figure.write_html(Path(tmp) / f"{name}.html", include_plotlyjs=True)
        parent.client.log_artifacts(parent.run_id, tmp, "optuna")


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
        table.add_row("saved", f"{saved}  (python train.py +experiment={study.study_name})")
    else:
        table.add_row("best", "no trial completed")
    console.print(table)
    if parent is None:
        return
    client, run_id = parent.client, parent.run_id
    # Tags, not params: a resumed study logs them again, possibly with new values.
    tags = {f"best.{k}": str(v) for k, v in study.best_params.items()} if saved else {}
    tags.update({f"space.{k}": str(d) for k, d in sweeper.space.items()})
    tags.update({f"sweeper.{k}": str(v) for k, v in sweeper.settings.items() if k != "params"})
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
