"""``run(cfg) -> float`` and the ``@hydra.main`` command line around it.

python train.py env=cartpole policy=categorical model=mlp update=reinforce
python train.py -m update.lr=1e-3,1e-2
python train.py resume=<mlflow run id>     # continue a run from its last checkpoint
    python train.py rerun=<mlflow run id>      # a new run with exactly that run's config
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

import hydra_plugins.twrl_optuna_sweeper.config  # noqa: F401  (registers hydra/sweeper=twrl_optuna)
from twrl_exp import interrupts
from twrl_exp.build import build, config_dir, default_tracking_uri, make_runner
from twrl_exp.config import register_configs
from twrl_exp.errors import ConfigError
from twrl_exp.monitor import sweep
from twrl_exp.monitor.setup import make_monitors
from twrl_exp.monitor.sweep import read_parent
from twrl_exp.objectives import objective_value
from twrl_exp.runner import Monitor, Runner

register_configs()


def _tracking_uri(cfg: DictConfig) -> str:
    return cfg.monitor.mlflow.tracking_uri or default_tracking_uri()


def _logged_config(cfg: DictConfig, key: str, overrides: list[str]) -> tuple[DictConfig, Path]:
    """The config logged by run ``cfg[key]`` plus this command line's other overrides, and a
    folder holding the run's downloaded artifacts."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    run_id = cfg[key]
    client = MlflowClient(tracking_uri=_tracking_uri(cfg))
    try:
        client.get_run(run_id)
    except MlflowException as exc:
        raise ConfigError(
            f"{key}={run_id} names no run in {_tracking_uri(cfg)}; give an MLflow run id "
            "from `mlflow ui` or the leaderboard."
        ) from exc
    folder = Path(tempfile.mkdtemp(prefix=f"twrl-{key}-"))
    try:
        config_file = client.download_artifacts(run_id, "config.yaml", str(folder))
    except (MlflowException, OSError) as exc:
        raise ConfigError(f"{key}={run_id}: the run has no logged config.yaml.") from exc
    kept = [o for o in overrides if not o.lstrip("+~").startswith(f"{key}=")]
    merged = OmegaConf.merge(OmegaConf.load(config_file), OmegaConf.from_dotlist(kept))
    assert isinstance(merged, DictConfig)
    merged.resume = None
    merged.rerun = None
    merged[key] = run_id
    return merged, folder


def _resume_source(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, Path]:
    """The logged config of run ``cfg.resume`` (plus command-line overrides) and its checkpoint."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    merged, folder = _logged_config(cfg, "resume", overrides)
    try:
        checkpoint = MlflowClient(tracking_uri=_tracking_uri(cfg)).download_artifacts(
            cfg.resume, "checkpoints/last.pt", str(folder)
        )
    except (MlflowException, OSError) as exc:
        raise ConfigError(
            f"resume={cfg.resume}: the run has no checkpoint to resume from "
            "(was it recorded with monitor.checkpoint.enabled=true?)."
        ) from exc
    return merged, Path(checkpoint)


def _train_once(
    cfg: DictConfig,
    *,
    run_dir: Path,
    name_suffix: str,
    context: dict[str, str],
    checkpoint: Path | None = None,
    extra_monitors: list[Monitor] | None = None,
) -> Runner:
    """One seed of one configuration: build, record, train, and close everything."""
    built = build(cfg)
    monitors, tracker = make_monitors(cfg, run_dir, built.env_id, name_suffix, context)
    monitors[:0] = extra_monitors or []
    runner = make_runner(cfg, built, monitors)
    if checkpoint is not None:
        runner.load_state_dict(torch.load(checkpoint, weights_only=False))
    if tracker is not None:
        tracker.open()
    status = "FAILED"
    try:
        with interrupts.deferred(lambda: setattr(runner, "stop_requested", True)):
            runner.run()
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if tracker is not None and runner.stop_reason is not None:
            tracker.set_tag("stopped", runner.stop_reason)
        for monitor in monitors:
            try:
                monitor.finish(runner, status)
            except Exception as exc:
                print(f"monitor {type(monitor).__name__} failed to finish: {exc}", file=sys.stderr)
        built.env.close()
        if built.eval_env is not None:
            built.eval_env.close()
    return runner


def run(
    cfg: DictConfig,
    *,
    run_dir: Path | None = None,
    overrides: list[str] | None = None,
    name_suffix: str = "",
    sweep_dir: Path | None = None,
) -> float:
    """Train as ``cfg`` says; return ``cfg.trial.objective`` (the mean over ``cfg.trial.seeds``).

    ``overrides`` are the command line's (applied on top of a resumed run's logged config);
    ``name_suffix`` distinguishes the runs of a sweep; ``sweep_dir`` is a multirun's folder,
    where the sweep's parent MLflow run is described. When ``cfg.trial.number`` is set the run
    is a trial of an Optuna study: it reports to it, may be pruned, and tells it the result.
    """
    run_dir = run_dir or Path(tempfile.mkdtemp(prefix="twrl-run-"))
    checkpoint = None
    context: dict[str, str] = {}
    if cfg.resume:
        cfg, checkpoint = _resume_source(cfg, overrides or [])
    elif cfg.rerun:
        cfg, _ = _logged_config(cfg, "rerun", overrides or [])
        context["rerun_of"] = cfg.rerun
    parent = read_parent(sweep_dir)
    if parent is not None:
        context.update(
            {
                "experiment": parent["experiment"],
                "tracking_uri": parent["tracking_uri"],
                "mlflow.parentRunId": parent["run_id"],
            }
        )
    trial = None
    if cfg.trial.number is not None:
        from hydra_plugins.twrl_optuna_sweeper import trial as optuna_trial

        trial = optuna_trial.load_trial(
            cfg.trial.study_name, cfg.trial.storage, cfg.trial.number, cfg.trial.heartbeat_interval
        )
        context.update(
            {"optuna.study": cfg.trial.study_name, "optuna.trial": str(cfg.trial.number)}
        )
    values: list[float] = []
    pruned = False
    env_steps, train_time = 0, 0.0
    for index in range(1 if cfg.resume else cfg.trial.seeds):
        seed_cfg = cfg.copy()
        seed_cfg.seed = cfg.seed + index
        suffix = name_suffix + (f" seed {seed_cfg.seed}" if cfg.trial.seeds > 1 else "")
        reporter = None
        if trial is not None:
            reporter = optuna_trial.TrialReporter(
                trial=trial,
                objective=cfg.trial.objective,
                window=cfg.train.solve_window,
                budget_steps=cfg.train.max_env_steps,
                eval_every_steps=cfg.eval.every_steps or 1,
                step_offset=index * (cfg.train.max_env_steps or 1_000_000_000),
                heartbeat_interval=cfg.trial.heartbeat_interval,
            )
        runner = _train_once(
            seed_cfg,
            run_dir=run_dir if cfg.trial.seeds == 1 else run_dir / f"seed{seed_cfg.seed}",
            name_suffix=suffix.strip(),
            context=context,
            checkpoint=checkpoint,
            extra_monitors=[reporter] if reporter is not None else None,
        )
        values.append(
            objective_value(
                cfg.trial.objective,
                runner.history,
                window=cfg.train.solve_window,
                budget_steps=cfg.train.max_env_steps,
            )
        )
        env_steps += runner.history.env_steps
        train_time += runner.history.train_time
        if reporter is not None and reporter.pruned:
            pruned = True
            break
    value = float(np.mean(values))
    if trial is not None:
        trial.set_user_attr("env_steps", env_steps)
        trial.set_user_attr("train_time_s", train_time)
        optuna_trial.finish_trial(trial, value, pruned)
    return value


def _discard_output_dir() -> None:
    """A run refused for bad input leaves nothing behind, not even Hydra's output folder."""
    try:
        out = Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return
    if out.is_dir() and not (out / "checkpoints").exists():
        shutil.rmtree(out, ignore_errors=True)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    sweep_dir = Path(hc.sweep.dir) if multirun else None
    overrides = list(hc.overrides.task)
    suffix = _job_suffix(cfg, overrides, read_parent(sweep_dir))
    try:
        return run(
            cfg,
            run_dir=Path(hc.runtime.output_dir),
            overrides=overrides,
            name_suffix=suffix,
            sweep_dir=sweep_dir,
        )
    except ConfigError as exc:
        _discard_output_dir()
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        if not multirun:
            sys.exit(2)
        parent = read_parent(sweep_dir)
        if parent is not None:
            sweep.record_failed_job(parent, f"refused job {suffix}".strip(), overrides, str(exc))
        raise  # this job fails; the sweep goes on


def _job_suffix(cfg: DictConfig, overrides: list[str], parent: dict[str, Any] | None) -> str:
    """What tells a sweep's runs apart: the trial number, or the swept overrides."""
    if cfg.trial.number is not None:
        return f"trial {cfg.trial.number}"
    if parent is None:
        return ""
    keys = set(parent.get("swept_keys", []))
    return ",".join(o for o in overrides if o.split("=", 1)[0].lstrip("+~") in keys)


def main() -> None:
    try:
        _hydra_main()
    except KeyboardInterrupt:
        interrupts.requested = True
        Console(stderr=True).print(
            "[yellow]interrupted:[/] the run is marked KILLED in MLflow "
            "and its last checkpoint is kept (resume=<run id>)."
        )
        sys.exit(130)


if __name__ == "__main__":
    main()
