"""A Hydra Sweeper on Optuna >= 4: ask the study for trials, launch them through any Hydra
launcher, let each job report to its own trial through the storage (pruning), and resume a
study where it stopped, since ``n_trials`` is the study's total."""

from __future__ import annotations

import datetime
import logging
import os
import re
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from hydra_plugins.twrl_optuna_sweeper import _results as results
from hydra_plugins.twrl_optuna_sweeper import _search_space as search_space
from hydra_plugins.twrl_optuna_sweeper import _space_check as space_check
from hydra_plugins.twrl_optuna_sweeper._stopping import LaunchFailed, stopped
from hydra_plugins.twrl_optuna_sweeper._storage import WINDOW_ATTR
from hydra_plugins.twrl_optuna_sweeper._strategies import make_pruner, make_sampler
from hydra_plugins.twrl_optuna_sweeper._trial import (
    INFRASTRUCTURE_ATTR,
    PROCESS_ATTR,
    fail_trial,
    heartbeat_enabled,
    open_storage,
    quiet_optuna,
)
from twrl_exp import interrupts, objectives, processes, store
from twrl_exp.errors import ConfigError, InfrastructureLost, JobLost
from twrl_exp.monitor.sweep import SweepParent, experiment_of, tracking_uri_of

log = logging.getLogger(__name__)
PARENT_ATTR = "mlflow_parent_run_id"
SWEEP_ATTR = "twrl.sweep"  # the identity of the sweep process that asked for a trial
PRUNER_ATTR = "pruner"
# Trials that did not end by themselves: FAIL, and not counted toward n_trials.
NOT_COUNTED = frozenset({"lost", "interrupted", INFRASTRUCTURE_ATTR})
LAUNCH_ATTEMPTS = 3  # launches failing in a row before the sweep stops


def counted(trials: list[FrozenTrial], live_running: bool) -> int:
    """Trials that count toward ``n_trials``: finished ones, failures with an error, and (with
    heartbeats, i.e. when stale ones have been failed) trials running elsewhere."""
    total = 0
    for t in trials:
        if (
            t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (
                t.state == TrialState.FAIL
                and "error" in t.user_attrs
                and not (NOT_COUNTED & t.user_attrs.keys())
            )
            or (t.state == TrialState.RUNNING and live_running)
        ):
            total += 1
    return total


def fail_lost_trials(
    study: optuna.Study,
    heartbeats: bool,
    batch: list[optuna.Trial] | None = None,
    grace_period: float = 60.0,
) -> int:
    """Fail RUNNING trials whose job is gone: on this host, when its process has ended; on
    others, when its heartbeat went stale. A trial no job ever picked up (its sweep died
    between asking and launching) belongs to the sweep that asked for it: lost when that
    process has ended, or, on another host, when it is older than ``grace_period`` seconds.
    Lost trials do not count toward ``n_trials``. ``batch``: trials of a launch that failed,
    lost unless a job took them up and its process still runs (or runs on another host, where
    its heartbeat decides)."""
    lost = 0
    storage: Any = study._storage
    if heartbeats and heartbeat_enabled(storage):  # as optuna's fail_stale_trials, saying why
        for trial_id in storage._get_stale_trial_ids(study._study_id):
            lost += fail_trial(study, trial_id, "lost")
    in_batch = {t.number for t in batch or []}
    now = datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        job = trial.user_attrs.get(PROCESS_ATTR)
        owner = job or trial.user_attrs.get(SWEEP_ATTR)
        # A job on another host cannot be checked from here: its heartbeat decides.
        if trial.number in in_batch:  # its launch failed: only a job that took it up may live
            gone = job is None or processes.alive(job) is False
        else:
            gone = processes.alive(owner) is False if owner else False
        if not job and not gone and trial.datetime_start is not None:
            gone = processes.alive(owner or "") is None and (
                (now - trial.datetime_start).total_seconds() > grace_period
            )
        if gone:
            lost += fail_trial(study, trial._trial_id, "lost")
    return lost


class OptunaSweeperImpl(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = OmegaConf.create(settings)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.job_idx = 0

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _check(self) -> None:
        s = self.settings
        checks = [
            ("n_trials", s.n_trials >= 1, ">= 1"),
            ("n_jobs", s.n_jobs >= 1, ">= 1"),
            ("seeds_per_trial", s.seeds_per_trial >= 1, ">= 1"),
            ("storage_retry_s", s.storage_retry_s >= 0, ">= 0 (seconds)"),
            (
                "study_name",
                re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", str(s.study_name)) is not None,
                "a file name of letters, digits, '_', '-' and '.', not starting with '.'",
            ),
        ]
        for key, ok, valid in checks:
            if not ok:
                raise ConfigError(f"hydra.sweeper.{key}={s[key]} is invalid: it must be {valid}.")
        wanted = objectives.names(s.objective, "hydra.sweeper.objective")
        self.directions = objectives.directions(s.objective, s.direction)
        if len(wanted) == 1:
            return
        pick = str(s.pick)
        if pick != objectives.KNEE and pick not in wanted and not pick.isdigit():
            raise ConfigError(
                f"hydra.sweeper.pick={pick} is invalid: it must be {objectives.KNEE}, one of "
                f"the objectives ({', '.join(wanted)}) or a trial number of the Pareto front."
            )
        if s.pruner.name != "none":
            raise ConfigError(
                f"hydra.sweeper.pruner.name={s.pruner.name} cannot prune a study of "
                f"{len(wanted)} objectives (Optuna prunes single-objective studies only): set "
                "hydra.sweeper.pruner.name=none."
            )
        if s.sampler.name == "cmaes":
            raise ConfigError(
                f"hydra.sweeper.sampler.name=cmaes cannot sample a study of {len(wanted)} "
                "objectives (Optuna's CMA-ES is single-objective): use tpe, random, grid or gp."
            )

    @property
    def multi(self) -> bool:
        """Whether the study has several objectives (a Pareto front, not a best trial)."""
        return len(self.directions) > 1

    def storage_url(self) -> str:
        assert self.config is not None
        shared = self.config.paths.get("optuna_storage") or os.environ.get("TWRL_OPTUNA_STORAGE")
        if self.settings.storage or shared:
            return str(self.settings.storage or shared)
        folder = Path(self.config.paths.optuna_dir).resolve()
        return f"sqlite:///{folder / (self.settings.study_name + '.db')}"

    def sweep(self, arguments: list[str]) -> Any:
        with quiet_optuna():
            return self._sweep(arguments)

    def _sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None
        assert self.hydra_context is not None
        self._check()
        s = self.settings
        space, fixed = search_space.parse(dict(s.params), list(arguments))
        self.space, self.fixed = space, fixed
        if not space:
            raise ConfigError(
                "The Optuna sweep has no search space: give hydra.sweeper.params "
                "(e.g. update.lr: tag(log, interval(1e-4, 1e-1))) or a sweep on the command line."
            )
        # A key the jobs could not compose: refused before a study, run or folder exists.
        loader = self.hydra_context.config_loader
        space_check.check(self.config, loader, dict(s.params), list(arguments), fixed)
        make_sampler(s.sampler, space)  # refuse a bad sampler or pruner before a study exists
        make_pruner(s.pruner)
        url = self.storage_url()
        if self.config.monitor.mlflow.enabled:  # an unreachable MLflow server: before any study
            store.open_client(tracking_uri_of(self.config))
        storage = self._open_storage(url)
        parent: SweepParent | None = None
        batch: list[optuna.Trial] = []
        try:
            study, parent, heartbeats = self._start(storage, space, url)
            try:
                with interrupts.deferred():
                    self._run_trials(study, space, fixed, url, heartbeats, batch)
            except KeyboardInterrupt:
                for trial in batch:
                    fail_trial(study, trial._trial_id, "interrupted")
                if parent is not None:
                    parent.finish("KILLED")
                raise
            results.report(study, self, parent, url)
        except InfrastructureLost as exc:
            raise stopped(exc, storage, batch, parent) from None
        if parent is not None:
            parent.finish("FINISHED")
        return study

    def _start(
        self, storage: Any, space: dict[str, BaseDistribution], url: str
    ) -> tuple[optuna.Study, SweepParent | None, bool]:
        """The study (created or resumed, its lost trials failed) and the sweep's parent run."""
        s = self.settings
        study = optuna.create_study(
            study_name=s.study_name,
            storage=storage,
            pruner=make_pruner(s.pruner),
            directions=self.directions,  # type: ignore[arg-type]
            load_if_exists=True,
        )
        held = [d.name.lower() for d in study.directions]
        if held != self.directions:  # Optuna keeps the stored directions without a word
            raise ConfigError(
                f"The Optuna study '{s.study_name}' in {store.redact(url)} was created to "
                f"{' and '.join(held)} its objective(s), not to {' and '.join(self.directions)}: "
                "give hydra.sweeper.objective and direction as when it was created, or a new "
                "hydra.sweeper.study_name."
            )
        if self.multi:  # the names Optuna's plots and dashboard show for its values
            study.set_metric_names(list(objectives.names(s.objective)))
        # A resumed study's sampler must not replay the proposals of the first attempt: its seed
        # moves on by the number of trials the study already holds.
        existing = len(study.get_trials(deepcopy=False))
        study.sampler = make_sampler(s.sampler, space, offset=existing)
        # Jobs rebuild the pruner from here (Optuna stores no pruner with a study), and learn
        # how long to retry an unreachable storage.
        study.set_user_attr(PRUNER_ATTR, OmegaConf.to_container(s.pruner))
        study.set_user_attr(WINDOW_ATTR, float(s.storage_retry_s))
        heartbeats = heartbeat_enabled(storage)
        fail_lost_trials(study, heartbeats, grace_period=float(s.grace_period))
        parent = self._open_parent(study, url)
        done = counted(study.get_trials(deepcopy=False), heartbeats)
        shown = store.redact(url)
        log.info(f"Study '{s.study_name}' in {shown}: {done} of {s.n_trials} trials done.")
        return study, parent, heartbeats

    def _run_trials(
        self,
        study: optuna.Study,
        space: dict[str, BaseDistribution],
        fixed: list[str],
        url: str,
        heartbeats: bool,
        batch: list[optuna.Trial],
    ) -> None:
        """Ask, launch and settle batches until the study holds ``n_trials``; ``batch`` holds
        the trials in flight (for the caller to mark if interrupted)."""
        s = self.settings
        if self._refilling(space):
            self._run_population(study, space, fixed, url, heartbeats, batch)
            return
        failures = 0
        while (remaining := s.n_trials - counted(study.get_trials(deepcopy=False), heartbeats)) > 0:
            if interrupts.requested:
                raise KeyboardInterrupt
            batch[:] = [study.ask(space) for _ in range(min(s.n_jobs, remaining))]
            for trial in batch:
                trial.set_user_attr(SWEEP_ATTR, processes.identity())
            overrides = [self._overrides(t, fixed, space, url) for t in batch]
            assert self.launcher is not None
            try:
                returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            except InfrastructureLost:
                raise
            except Exception as exc:
                if interrupts.requested:
                    raise KeyboardInterrupt from exc
                failures += 1
                lost = fail_lost_trials(study, heartbeats, batch, float(s.grace_period))
                lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                reason = store.redact(lines[0] if lines else type(exc).__name__)[:200]
                if failures >= LAUNCH_ATTEMPTS:
                    batch.clear()
                    raise LaunchFailed(
                        f"The launcher failed {failures} times in a row ({reason})"
                    ) from exc
                log.warning(f"The launcher failed ({reason}); {lost} trial(s) will run again.")
                continue
            failures = 0
            self.job_idx += len(batch)
            for trial, ret in zip(batch, returns, strict=True):
                self._settle(study, trial, ret)
            batch.clear()
        if interrupts.requested:
            raise KeyboardInterrupt

    def _refilling(self, space: dict[str, BaseDistribution]) -> bool:
        """Whether the trials train as one population whose slots are refilled: the launcher
        is ``population`` and the search space holds only values a population's members may
        differ in (a trial of ``seeds_per_trial`` seeds is that many members)."""
        from hydra_plugins.twrl_population_launcher.population_launcher import (
            PopulationLauncher,
        )
        from twrl_exp.population import varies_only_members

        assert self.config is not None
        if not isinstance(self.launcher, PopulationLauncher):
            return False
        rule = str(self.config["update"].get("name"))
        return varies_only_members(rule, list(space))

    def _run_population(
        self,
        study: optuna.Study,
        space: dict[str, BaseDistribution],
        fixed: list[str],
        url: str,
        heartbeats: bool,
        batch: list[optuna.Trial],
    ) -> None:
        """``n_jobs`` trials as one population; each slot whose trial ends takes the next
        asked trial, until the study holds ``n_trials``. ``batch`` holds the trials asked (for
        the caller to mark if interrupted)."""
        s = self.settings

        def remaining() -> int:
            # With heartbeats, ``counted`` already counts the trials running (these included).
            running = (
                0
                if heartbeats
                else sum(
                    study._storage.get_trial(t._trial_id).state == TrialState.RUNNING for t in batch
                )
            )
            return s.n_trials - counted(study.get_trials(deepcopy=False), heartbeats) - running

        def ask() -> list[str]:
            trial = study.ask(space)
            trial.set_user_attr(SWEEP_ATTR, processes.identity())
            batch.append(trial)
            return self._overrides(trial, fixed, space, url)

        def refill() -> list[str] | None:
            if interrupts.requested or remaining() <= 0:
                return None
            return ask()

        failures = 0
        while (left := remaining()) > 0:
            done = counted(study.get_trials(deepcopy=False), heartbeats)
            batch.clear()
            first = [ask() for _ in range(min(s.n_jobs, left))]
            assert self.launcher is not None
            returns = self.launcher.launch_refilling(  # type: ignore[attr-defined]
                first, initial_job_idx=self.job_idx, refill=refill
            )
            self.job_idx += len(returns)
            for trial, ret in zip(batch, returns, strict=True):
                self._settle(study, trial, ret)
            batch.clear()
            if interrupts.requested:
                raise KeyboardInterrupt
            # Trials that did not count (lost, interrupted) run again, in another population.
            progressed = counted(study.get_trials(deepcopy=False), heartbeats) > done
            failures = 0 if progressed else failures + 1
            if failures >= LAUNCH_ATTEMPTS:
                raise LaunchFailed(
                    f"{failures} populations in a row ended without a trial that counts"
                )

    def _open_storage(self, url: str) -> Any:
        """The study's storage, or one sentence naming the URL (password hidden) and why not."""
        s = self.settings
        try:
            return open_storage(
                url, s.heartbeat_interval, s.grace_period, window_s=float(s.storage_retry_s)
            )
        except Exception as exc:
            reason = store.connection_reason(exc)
            raise ConfigError(
                f"The Optuna storage {store.redact(url)} cannot be opened ({reason}); set "
                "paths.optuna_storage (or TWRL_OPTUNA_STORAGE, hydra.sweeper.storage) to a "
                "reachable database URL (postgresql+psycopg://user:password@host:5432/db, "
                "sqlite:///path.db) or a journal file (path.log)."
            ) from exc

    def _open_parent(self, study: optuna.Study, url: str) -> SweepParent | None:
        assert self.config is not None
        if not self.config.monitor.mlflow.enabled:
            return None
        parent = SweepParent.open(
            tracking_uri=tracking_uri_of(self.config),
            experiment=experiment_of(self.config),
            run_name=f"optuna {self.settings.study_name}",
            sweep_dir=Path(self.config.hydra.sweep.dir),
            tags={
                "sweep": "optuna",
                "optuna.study": self.settings.study_name,
                "optuna.storage": store.redact(url),
            },
            run_id=study.user_attrs.get(PARENT_ATTR),
            swept_keys=list(self.space),
        )
        study.set_user_attr(PARENT_ATTR, parent.run_id)
        results.log_search_space(parent, self.space)
        return parent

    def _overrides(
        self, trial: optuna.Trial, fixed: list[str], space: dict[str, BaseDistribution], url: str
    ) -> list[str]:
        s = self.settings
        sampled = [search_space.override_text(k, trial.params[k]) for k in space]
        return [
            *fixed,
            *sampled,
            f"trial.study_name={s.study_name}",
            f"trial.storage='{url}'",
            f"trial.number={trial.number}",
            f"trial.objective={self._objective_text()}",
            f"trial.seeds={s.seeds_per_trial}",
            f"trial.heartbeat_interval={s.heartbeat_interval}",
        ]

    def _objective_text(self) -> str:
        """``trial.objective``'s override: a name, or a list of names."""
        wanted = objectives.names(self.settings.objective, "hydra.sweeper.objective")
        return wanted[0] if len(wanted) == 1 else f"[{','.join(wanted)}]"

    def _settle(self, study: optuna.Study, trial: optuna.Trial, ret: Any) -> None:
        """The job tells the study itself; a job that failed before it could is told FAIL."""
        frozen = study._storage.get_trial(trial._trial_id)
        if frozen.state != TrialState.RUNNING:
            return
        if ret.status == JobStatus.FAILED and isinstance(ret._return_value, KeyboardInterrupt):
            fail_trial(study, trial._trial_id, "interrupted")  # stopped by Ctrl-C: not counted
        elif ret.status == JobStatus.FAILED and isinstance(ret._return_value, InfrastructureLost):
            # Its storage did not answer in time: not its own result either.
            error = ret._return_value
            fail_trial(study, trial._trial_id, INFRASTRUCTURE_ATTR, str(error).rstrip("."))
            log.warning(f"Trial {trial.number} stopped: {error}; another trial replaces it.")
        elif ret.status == JobStatus.FAILED and isinstance(ret._return_value, JobLost):
            # Not the trial's own result (its node or worker died): another trial replaces it.
            fail_trial(study, trial._trial_id, "lost")
            log.warning(f"Trial {trial.number} was {ret._return_value}; another trial replaces it.")
        elif ret.status == JobStatus.FAILED:
            error = ret._return_value
            trial.set_user_attr("error", f"{type(error).__name__}: {error}")
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            log.warning(f"Trial {trial.number} failed: {error}")
        else:
            value = ret.return_value
            told = [float(v) for v in value] if isinstance(value, tuple) else float(value)
            study.tell(trial.number, told, skip_if_finished=True)
