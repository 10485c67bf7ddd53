"""``hydra/launcher=population``: a multirun's jobs grouped by their structure, each group
trained as one population in this process (:mod:`twrl_exp.population`), each job still its own
MLflow run; a job alone in its group, or of a rule without a population form, runs as Hydra's
basic launcher runs it.

    python train.py -m update=ppo seed='range(32)' hydra/launcher=population
    python train.py -m update=ppo update.lr=1e-3,3e-3 update.ent_coef=0,0.01 \\
        hydra/launcher=population hydra.launcher.size=16
    python train.py -m resume=<id>,<id>,<id> hydra/launcher=population   # resumed together

Two jobs share a structure when their configs are equal but for the seed, the policy's values
and the rule's vectorisable values (``twrl_exp.population.VECTORISABLE``); a ``resume=`` or
``rerun=`` job has the logged run's config. Jobs of ``trial.population=false`` run one by
one.

No ``from __future__ import annotations`` here: Hydra loads plugin modules outside
``sys.modules`` while scanning, where dataclasses cannot resolve string annotations.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


@dataclass
class PopulationLauncherConf:
    _target_: str = "hydra_plugins.twrl_population_launcher.population_launcher.PopulationLauncher"
    # At most this many jobs in one population (null: every job of a structure in one). A
    # job of trial.seeds=N is N members.
    size: int | None = None


ConfigStore.instance().store(
    group="hydra/launcher", name="population", node=PopulationLauncherConf, provider="twrl-exp"
)


class PopulationLauncher(Launcher):
    def __init__(self, size: int | None = None) -> None:
        if size is not None and size < 1:
            from twrl_exp.errors import ConfigError

            raise ConfigError(
                f"hydra.launcher.size={size}: a population holds at least 1 job (or null: "
                "every job of a structure)."
            )
        self.size = size
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None
        assert self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides)
            )
            with open_dict(config):
                config.hydra.job.id = idx
                config.hydra.job.num = idx
            configs.append(config)
        results: list[JobReturn | None] = [None] * len(configs)
        for group in groups(configs, self.size):
            if len(group) == 1:
                results[group[0]] = self._run(configs[group[0]], self.task_function)
            else:
                self._together(configs, group, results)
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def launch_refilling(
        self,
        job_overrides: Sequence[Sequence[str]],
        initial_job_idx: int,
        refill: Callable[[], Sequence[str] | None],
    ) -> list[JobReturn]:
        """The jobs as one population (of one structure: the sweep checked it), each slot that
        frees up refilled with the job of ``refill``'s overrides until it gives None (an Optuna
        sweep with ``hydra/launcher=population``). Returns every job's result, in the order
        they were launched."""
        from twrl_exp import train

        setup_globals()
        base, context = self.config, self.hydra_context
        assert base is not None
        assert context is not None
        configure_log(base.hydra.hydra_logging, base.hydra.verbose)
        Path(str(base.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        results: list[JobReturn] = []
        enlisted: list[JobReturn] = []

        def enlist(overrides: Sequence[str]) -> Any:
            config = context.config_loader.load_sweep_config(base, list(overrides))
            idx = initial_job_idx + len(results)
            with open_dict(config):
                config.hydra.job.id = idx
                config.hydra.job.num = idx
            result = self._run(config, train.enlist)
            results.append(result)
            if result.status != JobStatus.COMPLETED:
                return None
            enlisted.append(result)
            return result.return_value

        def next_job() -> Any:
            while (overrides := refill()) is not None:
                job = enlist(overrides)
                if job is not None:
                    return job
            return None

        jobs = [job for overrides in job_overrides if (job := enlist(overrides)) is not None]
        log.info(f"Launching {len(jobs)} jobs as one population, refilled as they end")
        settle(enlisted, train.train_jobs_together(jobs, refill=next_job))
        return results

    def _run(self, config: DictConfig, task_function: Any) -> JobReturn:
        assert self.hydra_context is not None
        assert self.config is not None
        result = run_job(
            hydra_context=self.hydra_context,
            task_function=task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return result

    def _together(
        self, configs: list[DictConfig], group: list[int], results: list[JobReturn | None]
    ) -> None:
        """The jobs ``group`` as one population: each job's folder, saved config and callbacks
        as Hydra makes them (its task function collects the job), then trained together."""
        from twrl_exp import train

        enlisted = {i: self._run(configs[i], train.enlist) for i in group}
        ready = [i for i in group if enlisted[i].status == JobStatus.COMPLETED]
        log.info(f"Launching {len(ready)} jobs as one population")
        outcomes = train.train_jobs_together([enlisted[i].return_value for i in ready])
        settle([enlisted[i] for i in ready], outcomes)
        for i in group:
            results[i] = enlisted[i]


def settle(enlisted: Sequence[JobReturn], outcomes: Sequence[Any]) -> None:
    """Each enlisted job's result: its population outcome (its objective, or FAILED with what
    ended it)."""
    for result, outcome in zip(enlisted, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            result.status, result.return_value = JobStatus.FAILED, outcome
        else:
            result.return_value = outcome


def groups(configs: Sequence[DictConfig], size: int | None) -> list[list[int]]:
    """Job indices by structure, in order of first appearance, cut to ``size`` jobs (None:
    every job of a structure in one); a job that runs alone is a group of its own."""
    found: dict[Any, list[int]] = {}
    for i, config in enumerate(configs):
        key = _structure(config)
        found.setdefault(i if key is None else key, []).append(i)
    size = size or len(configs)
    return [g[s : s + size] for g in found.values() for s in range(0, len(g), size)]


def _structure(config: DictConfig) -> str | None:
    """The structure key of a job's config (None: it runs alone)."""
    from twrl_exp.population import structure_key

    if config.get("resume") or config.get("rerun"):
        continued = _continued(config)
        if continued is None:
            return None
        config = continued
    trial = config.get("trial") or {}
    if not trial.get("population", True):
        return None
    plain: dict[str, Any] = {}
    try:  # the task's keys (not hydra's: its job keys are set when the job runs)
        for key in config:
            if key != "hydra":
                value = config[key]
                node = (
                    OmegaConf.to_container(value, resolve=True)
                    if OmegaConf.is_config(value)
                    else value
                )
                plain[str(key)] = node
    except Exception:  # what cannot be resolved here is said when the job runs
        return None
    return structure_key(plain)


def _continued(config: DictConfig) -> DictConfig | None:
    """The config a ``resume=``/``rerun=`` job trains (the logged run's, its overrides on
    top): resumed members of one structure train together again. None where it cannot be
    read here (the job then runs alone, and says why)."""
    from twrl_exp import logged
    from twrl_exp.paths import tracking_uri_of

    key = "resume" if config.get("resume") else "rerun"
    try:
        overrides = [str(o) for o in config.hydra.overrides.task]
        return logged.continued_config(tracking_uri_of(config), key, str(config[key]), overrides)
    except Exception:
        return None
