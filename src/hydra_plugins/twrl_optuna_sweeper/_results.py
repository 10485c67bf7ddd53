"""The end of a sweep: the best trial (several objectives: the Pareto front, and the point of it
``hydra.sweeper.pick`` chooses) printed and saved as a ready-to-run experiment config, Optuna's
plots and the study's figures logged to the sweep's parent MLflow run (its search space is
logged there as params when it opens)."""

from __future__ import annotations

import html
import json
import logging
import re
import tempfile
from functools import partial
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.table import Table

from hydra_plugins.twrl_optuna_sweeper import _search_space as search_space
from twrl_exp import objectives, store
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
FRONT_FILE = "pareto_front.json"  # the parent run's record of the front (artifact, "optuna/")


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
    if not any(t.state == TrialState.COMPLETE for t in trials):
        return figures
    if len(study.directions) > 1:
        figures["pareto_points"] = float(len(study.best_trials))
    else:
        figures["best_value"] = float(study.best_value)
        figures["best_trial"] = float(study.best_trial.number)
    return figures


def objective_names(sweeper: TwrlOptunaSweeper) -> tuple[str, ...]:
    return objectives.names(sweeper.settings.objective, "hydra.sweeper.objective")


def front(study: optuna.Study) -> list[FrozenTrial]:
    """The study's Pareto front (Optuna's ``best_trials``), by trial number."""
    return sorted(study.best_trials, key=lambda t: t.number)


def chosen(study: optuna.Study, sweeper: TwrlOptunaSweeper) -> FrozenTrial:
    """The trial the experiment is saved from: the best trial; with several objectives the
    point of the front ``hydra.sweeper.pick`` chooses (a trial number that is not on the front:
    a warning, and the knee)."""
    if len(study.directions) == 1:
        return study.best_trial
    points = front(study)
    rule = str(sweeper.settings.pick)
    if rule.isdigit():
        found = next((t for t in points if t.number == int(rule)), None)
        if found is not None:
            return found
        numbers = ", ".join(str(t.number) for t in points)
        log.warning(
            f"hydra.sweeper.pick={rule} is not a trial of the Pareto front (trials {numbers}): "
            f"the experiment is the front's {objectives.KNEE} instead."
        )
        rule = objectives.KNEE
    ways = [d.name.lower() for d in study.directions]
    index = objectives.pick([t.values for t in points], ways, rule, objective_names(sweeper))
    return points[index]


def pick_rule(study: optuna.Study, sweeper: TwrlOptunaSweeper, trial: FrozenTrial) -> str:
    """How ``trial`` was picked, in words (for the experiment's header and the parent's tag)."""
    rule = str(sweeper.settings.pick)
    if rule.isdigit() and int(rule) == trial.number:
        return f"trial {rule}, as hydra.sweeper.pick says"
    if rule in objective_names(sweeper):
        return f"the front's best {rule}"
    return "the knee: nearest the ideal point, each objective scaled to [0, 1] over the front"


def values_text(names: tuple[str, ...], trial: FrozenTrial) -> str:
    if trial.values is None:
        return "no value"
    return ", ".join(f"{n} {v:.6g}" for n, v in zip(names, trial.values, strict=True))


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


def experiment_yaml(
    job_cfg: DictConfig,
    study: optuna.Study,
    trial: FrozenTrial | None = None,
    names: tuple[str, ...] = (),
    rule: str = "",
) -> str:
    """A ``# @package _global_`` config reproducing a trial's run exactly (the best trial, or
    ``trial`` of a multi-objective study's front, picked by ``rule``), in any checkout: no
    ``paths``, and project paths relative to ``${paths.root}``."""
    choices = dict(job_cfg.hydra.runtime.choices)
    task = {k: job_cfg[k] for k in job_cfg if k not in ("hydra", *DROPPED)}
    values = OmegaConf.to_container(OmegaConf.create(task), resolve=True)
    assert isinstance(values, dict)
    # Where this machine keeps the project (absolute folders): the rerunning checkout's own.
    values.pop("paths", None)
    outside: list[str] = []
    body = portable(_strip(values), str(job_cfg.paths.root), outside=outside)
    if trial is None or len(study.directions) == 1:
        best = study.best_trial
        what = (
            f"# Best trial {best.number} of Optuna study '{study.study_name}': "
            f"value {best.value:.6g}."
        )
    else:
        what = (
            f"# Trial {trial.number} of the Pareto front of Optuna study '{study.study_name}' "
            f"({len(study.best_trials)} points), picked as {rule}: {values_text(names, trial)}."
        )
    header = [
        "# @package _global_",
        what,
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


def save_experiment(
    sweeper: TwrlOptunaSweeper, study: optuna.Study, best: FrozenTrial | None = None
) -> Path:
    assert sweeper.config is not None
    assert sweeper.hydra_context is not None
    best = best or study.best_trial
    overrides = [
        *sweeper.fixed,
        *[search_space.override_text(k, best.params[k]) for k in sweeper.space],
    ]
    job_cfg = sweeper.hydra_context.config_loader.load_sweep_config(sweeper.config, overrides)
    folder = Path(sweeper.settings.experiment_dir or job_cfg.paths.experiment_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{study.study_name}.yaml"
    text = experiment_yaml(
        job_cfg, study, best, objective_names(sweeper), pick_rule(study, sweeper, best)
    )
    path.write_text(text)
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


def _plots(study: optuna.Study) -> dict[str, Any]:
    """Each plot's name and how to draw it: :data:`PLOTS`; with several objectives the front
    and each objective's history (``history_<k>``, Optuna's other plots take one objective)."""
    vis = optuna.visualization
    if len(study.directions) == 1:
        return {name: partial(getattr(vis, function), study) for name, function in PLOTS.items()}

    def history(k: int, name: str) -> Any:
        return vis.plot_optimization_history(study, target=lambda t: t.values[k], target_name=name)

    names = study.metric_names or [f"objective {k}" for k in range(len(study.directions))]
    plots: dict[str, Any] = {"pareto_front": partial(vis.plot_pareto_front, study)}
    plots.update({f"history_{k}": partial(history, k, name) for k, name in enumerate(names)})
    return plots


def plots_page(study: optuna.Study) -> str:
    """Optuna's plots in one self-contained HTML page: plotly.js (~4.8 MB) once, inline, so that
    the page works offline (a cluster, the MLflow UI's sandboxed viewer) without a copy per plot.
    Each plot is drawn in ``<div id=NAME>``; a plot Optuna cannot draw is listed with why."""
    import plotly.io
    import plotly.offline

    sections, skipped = [], []
    for name, draw in _plots(study).items():
        try:
            figure = draw()
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
    """Print the best trial (several objectives: the Pareto front and the point picked of it),
    save it as an experiment config, record the sweep in MLflow."""
    figures = study_figures(study)
    console = Console(soft_wrap=True)
    shown = store.redact(url)
    multi = len(study.directions) > 1
    table = Table(title=f"Optuna study '{study.study_name}' ({shown})", show_header=False)
    for key, value in figures.items():
        table.add_row(key, f"{value:,.6g}")
    saved, best = None, None
    if "best_value" in figures or "pareto_points" in figures:
        best = chosen(study, sweeper)
        if multi:
            table.add_row("picked", f"trial {best.number}: {pick_rule(study, sweeper, best)}")
        for key, value in best.params.items():
            table.add_row(f"{'picked' if multi else 'best'} {key}", str(value))
        saved = save_experiment(sweeper, study, best)
    else:
        table.add_row("best", "no trial completed")
    console.print(table)
    if multi and best is not None:
        console.print(front_table(study, objective_names(sweeper), best))
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
    tags = {f"best.{k}": str(v) for k, v in best.params.items()} if best is not None else {}
    tags.update({"sweeper." + str(k): str(v) for k, v in sweeper.settings.items() if k != "params"})
    picked_run = None
    if multi and best is not None:
        points = front(study)
        tags["pareto.trials"] = ",".join(str(t.number) for t in points)
        tags["pareto.picked"] = f"trial {best.number}: {pick_rule(study, sweeper, best)}"
        runs = mark_front(client, parent, study, points)
        picked_run = next(iter(runs.get(best.number, [])), None)
        log_front(client, run_id, study, sweeper, points, best, runs)
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
        objective=list(objective_names(sweeper)),
        direction=[d.name.lower() for d in study.directions],
        ui_url=sweeper.config.monitor.mlflow.ui_url if sweeper.config is not None else None,
        console=console,
        chosen=picked_run,
    )
    if sweeper.settings.plots:
        log_plots(study, parent)


def front_table(study: optuna.Study, names: tuple[str, ...], picked: FrozenTrial) -> Table:
    """The Pareto front: per trial its objectives' values and its parameters."""
    ways = [d.name.lower() for d in study.directions]
    points = front(study)
    keys = sorted({k for t in points for k in t.params})
    table = Table(title=f"Pareto front: {len(points)} of {len(study.trials)} trials")
    table.add_column("trial", justify="right")
    for name, way in zip(names, ways, strict=True):
        table.add_column(f"{name} ({'max' if way == 'maximize' else 'min'})", justify="right")
    for key in keys:
        table.add_column(key.split(".")[-1], justify="right")
    table.add_column("picked")
    for t in points:
        table.add_row(
            str(t.number),
            *[f"{v:,.6g}" for v in t.values],
            *[_short(t.params.get(k)) for k in keys],
            "yes" if t.number == picked.number else "",
        )
    return table


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "-" if value is None else str(value)


def mark_front(
    client: Any, parent: SweepParent, study: optuna.Study, points: list[FrozenTrial]
) -> dict[int, list[str]]:
    """Tag every run of a front trial ``optuna.pareto=<study>`` (and untag runs of trials a
    resumed study's front no longer holds); the run ids of each front trial."""
    from twrl_exp.monitor.sweep_summary import children

    on = {t.number for t in points}
    runs: dict[int, list[str]] = {}
    for run in children(client, parent.run_id, parent.experiment_id):
        number = run.data.tags.get("optuna.trial")
        if number is None or not number.isdigit():
            continue
        if int(number) in on and run.info.status == "FINISHED":
            runs.setdefault(int(number), []).append(run.info.run_id)
            client.set_tag(run.info.run_id, objectives.PARETO_TAG, study.study_name)
        elif objectives.PARETO_TAG in run.data.tags:
            client.delete_tag(run.info.run_id, objectives.PARETO_TAG)
    return runs


def log_front(
    client: Any,
    run_id: str,
    study: optuna.Study,
    sweeper: TwrlOptunaSweeper,
    points: list[FrozenTrial],
    picked: FrozenTrial,
    runs: dict[int, list[str]],
) -> None:
    """The front as the parent's ``optuna/pareto_front.json``: objectives, directions, the rule
    and the point picked, and per trial its values, params and runs."""
    names = objective_names(sweeper)
    record = {
        "study": study.study_name,
        "objectives": list(names),
        "directions": [d.name.lower() for d in study.directions],
        "pick": str(sweeper.settings.pick),
        "picked_trial": picked.number,
        "picked_as": pick_rule(study, sweeper, picked),
        "points": [
            {
                "trial": t.number,
                "values": dict(zip(names, t.values, strict=True)),
                "params": t.params,
                "runs": runs.get(t.number, []),
            }
            for t in points
        ],
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / FRONT_FILE
        path.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
        client.log_artifact(run_id, str(path), "optuna")
