"""A sweep's parent MLflow run, under which every job's run is nested.

The parent is opened once, before any job starts (which also creates the SQLite store and the
experiment, whose parallel first-time creation races), and described in
``<sweep dir>/mlflow_parent.json`` so that jobs find it in any launcher's worker process.
Grid sweeps get it from :class:`MlflowSweepCallback`; the Optuna sweeper opens its own.
"""

from __future__ import annotations

import atexit
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from twrl_exp import interrupts, objectives, paths, store
from twrl_exp.cli_errors import say
from twrl_exp.env import resolve_spec
from twrl_exp.errors import ConfigError
from twrl_exp.monitor.sweep_summary import summarize

if TYPE_CHECKING:
    from mlflow import MlflowClient

# mlflow is imported where it is used: a plain run that never sweeps should not pay for it.
PARENT_FILE = "mlflow_parent.json"
_grid_previous_handler: Any = None


class SweepParent:
    """The parent run of a sweep: open (or reopen), describe for the jobs, finish."""

    def __init__(
        self, client: MlflowClient, run_id: str, experiment: str, experiment_id: str = ""
    ) -> None:
        self.client, self.run_id, self.experiment = client, run_id, experiment
        self.experiment_id = experiment_id
        self.finished = False
        self.heartbeat = store.run_heartbeat(client, run_id)

    @classmethod
    def open(
        cls,
        *,
        tracking_uri: str,
        experiment: str,
        run_name: str,
        sweep_dir: Path,
        tags: dict[str, str],
        run_id: str | None = None,
        swept_keys: list[str] | None = None,
    ) -> SweepParent:
        from twrl_exp.monitor.tracking import ensure_experiment

        client = store.open_client(tracking_uri)
        experiment_id = ensure_experiment(client, experiment, tracking_uri)
        if run_id is not None and _exists(client, run_id):
            client.update_run(run_id, status="RUNNING")
            for key, value in store.liveness_tags().items():
                client.set_tag(run_id, key, value)
        else:
            run = client.create_run(
                experiment_id,
                run_name=run_name,
                tags={"mlflow.runName": run_name, **store.liveness_tags(), **tags},
            )
            run_id = run.info.run_id
        parent = cls(client, run_id, experiment, experiment_id)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_FILE).write_text(
            json.dumps(
                {
                    "run_id": run_id,
                    "tracking_uri": tracking_uri,
                    "experiment": experiment,
                    "swept_keys": swept_keys or [],
                }
            )
        )
        atexit.register(parent.finish, None)
        return parent

    def finish(self, status: str | None) -> None:
        """``status=None`` (at exit, unfinished): KILLED if interrupted, else FAILED."""
        status = status or ("KILLED" if interrupts.requested else "FAILED")
        if not self.finished:
            self.finished = True
            self.heartbeat.stop()
            self.client.set_terminated(self.run_id, status)


def _exists(client: MlflowClient, run_id: str) -> bool:
    try:
        client.get_run(run_id)
    except Exception:
        return False
    return True


def read_parent(sweep_dir: Path | None) -> dict[str, Any] | None:
    """What a job needs to nest its run: the parent's run id, tracking URI and experiment."""
    if sweep_dir is None or not (sweep_dir / PARENT_FILE).exists():
        return None
    data: dict[str, Any] = json.loads((sweep_dir / PARENT_FILE).read_text())
    return data


def record_failed_job(
    parent: dict[str, Any], run_name: str, overrides: list[str], error: str
) -> None:
    """A sweep job refused before it could start still leaves a FAILED run under the parent."""
    from twrl_exp.monitor.tracking import ensure_experiment

    client = store.open_client(parent["tracking_uri"])
    experiment_id = ensure_experiment(client, parent["experiment"], parent["tracking_uri"])
    run = client.create_run(
        experiment_id,
        run_name=run_name,
        tags={
            "mlflow.runName": run_name,
            "mlflow.parentRunId": parent["run_id"],
            "error": error[:5000],
            "overrides": " ".join(overrides)[:5000],
        },
    )
    client.set_terminated(run.info.run_id, "FAILED")


def swept_keys(task_overrides: list[str]) -> list[str]:
    """Keys a multirun's command line sweeps (``a=1,2``, ``b=choice(...)``)."""
    return [key for key, _ in swept_overrides(task_overrides)]


def swept_overrides(task_overrides: list[str]) -> list[tuple[str, str]]:
    """``(key, "v1,v2,...")`` of each sweep on a multirun's command line."""
    parsed = OverridesParser.create().parse_overrides(task_overrides)
    return [
        (o.get_key_element(), o.input_line.split("=", 1)[1] if o.input_line else "")
        for o in parsed
        if o.is_sweep_override()
    ]


def experiment_of(config: DictConfig) -> str:
    return str(config.monitor.mlflow.experiment or resolve_spec(config.env.id).id)


def tracking_uri_of(config: DictConfig) -> str:
    return paths.tracking_uri_of(config)


def preflight_launcher(config: DictConfig) -> None:
    """Let the sweep's launcher check that it can run jobs (a Ray cluster is reachable) before
    the sweep records anything: launchers with a ``preflight(settings)`` static method."""
    from hydra.utils import get_class

    target = config.hydra.launcher.get("_target_")
    check = getattr(get_class(str(target)), "preflight", None) if target else None
    if check is not None:
        check(config.hydra.launcher)


def _representative_jobs(task_overrides: list[str]) -> list[list[str]]:
    """A grid's first job, and one more for each other value of each swept key (the rest at
    their first value): every value is composed once, without the whole product."""
    lists: list[list[str]] = []
    for override in OverridesParser.create().parse_overrides(task_overrides):
        key = override.get_key_element()
        if override.is_sweep_override() and override.is_discrete_sweep():
            lists.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        elif not override.is_sweep_override():
            lists.append([f"{key}={override.get_value_element_as_str()}"])
    first = [values[0] for values in lists if values]
    jobs = [first]
    for index, values in enumerate(lists):
        jobs += [[*first[:index], value, *first[index + 1 :]] for value in values[1:]]
    return jobs


def refuse_bad_grid(config: DictConfig) -> None:
    """Compose the grid's jobs (each value once) before anything is recorded: a value of the
    wrong type or an unknown key refuses the whole grid in one sentence (exit 2), and no parent
    run, sweep folder or job is left behind."""
    from hydra.core.global_hydra import GlobalHydra

    from twrl_exp import cli_errors

    loader = GlobalHydra.instance().config_loader()
    for job in _representative_jobs(list(config.hydra.overrides.task)):
        try:
            loader.load_sweep_config(config, job)
        except Exception as exc:
            sentence = cli_errors.describe(exc)
            if sentence is None:
                raise
            say(sentence)
            sys.exit(2)


class MlflowSweepCallback(Callback):
    """Opens a grid sweep's parent run before its jobs start and closes it after they end."""

    active: MlflowSweepCallback | None = None  # the sweep this process runs, until it ends

    def __init__(self) -> None:
        self.parent: SweepParent | None = None
        self.config: DictConfig | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Launchers pickle Hydra's context (callbacks included) for their workers; the parent
        # run, with its heartbeat thread, stays in the sweep's own process.
        return {"parent": None}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _grid_previous_handler
        ours = "twrl_optuna_sweeper" in str(config.hydra.sweeper.get("_target_", ""))
        if not ours:
            refuse_bad_grid(config)
            # Between grid jobs, Ctrl-C waits for the next job's first step.
            _grid_previous_handler = interrupts.install()
        if not config.monitor.mlflow.enabled:
            return
        if ours:
            return  # the Optuna sweeper opens (or reopens) its study's parent run itself
        MlflowSweepCallback.active, self.config = self, config
        sweep_dir = Path(config.hydra.sweep.dir)
        task = list(config.hydra.overrides.task)
        swept = swept_overrides(task)
        try:
            preflight_launcher(config)
            self.parent = SweepParent.open(
                tracking_uri=tracking_uri_of(config),
                experiment=experiment_of(config),
                run_name="grid " + " ".join(f"{k.rpartition('.')[2]}={v}" for k, v in swept),
                sweep_dir=sweep_dir,
                tags={"sweep": "grid", "sweep.dir": str(sweep_dir.resolve())},
                swept_keys=[k for k, _ in swept],
            )
            for key, values in swept:  # what the sweep varies, as the parent's params
                self.parent.client.log_param(self.parent.run_id, key, values)
        except ConfigError as exc:
            # Hydra turns a callback's exception into a warning and runs the jobs anyway: a
            # sweep that cannot be recorded must not start, so leave with the sentence here.
            say(str(exc))
            sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _grid_previous_handler
        interrupts.restore(_grid_previous_handler)
        _grid_previous_handler = None
        self._end("KILLED" if interrupts.requested else "FINISHED")

    def _end(self, status: str) -> None:
        """Summarise the jobs on the parent and in the terminal, and end the parent."""
        MlflowSweepCallback.active = None
        if self.parent is None or self.parent.finished or self.config is None:
            return
        try:
            summarize(
                self.parent.client,
                self.parent.run_id,
                self.parent.experiment_id,
                tracking_uri=tracking_uri_of(self.config),
                objective=objectives.names(self.config.trial.objective),
                ui_url=self.config.monitor.mlflow.ui_url,
            )
        finally:
            self.parent.finish(status)


def end_failed_sweep() -> None:
    """A grid job failed: Hydra stops before its end-of-sweep callback, so the sweep's table
    and the parent's summary are made here, and the parent ends FAILED."""
    if MlflowSweepCallback.active is not None:
        MlflowSweepCallback.active._end("KILLED" if interrupts.requested else "FAILED")
