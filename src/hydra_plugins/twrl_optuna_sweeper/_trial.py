"""The job side of a sweep: rebuild this job's Optuna trial from the shared storage, keep its
heartbeat, report intermediate objective values at every evaluation, stop when the pruner says
so, and tell the study the result. Works the same in-process and in a launcher's worker process
or machine."""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any, cast

import numpy as np
import optuna
from filelock import FileLock
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, _CachedStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from hydra_plugins.twrl_optuna_sweeper._storage import (
    DEFAULT_WINDOW_S,
    WINDOW_ATTR,
    RetryingStorage,
    retry,
)
from hydra_plugins.twrl_optuna_sweeper._strategies import make_pruner
from twrl_exp import processes, store
from twrl_exp.errors import InfrastructureLost
from twrl_exp.objectives import Value, aggregate_one, names, objective_value
from twrl_exp.runner import MonitorBase, Runner

PROCESS_ATTR = "twrl.process"  # the identity of the process running a trial
# A trial stopped by the sweep's infrastructure (its storage, the Ray head), not by itself: its
# value says what was lost. Like "interrupted" and "lost", it does not count toward n_trials.
INFRASTRUCTURE_ATTR = "infrastructure"


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Heartbeats are experimental in Optuna, and it warns when a study with them is driven by
    ``ask``/``tell`` rather than ``optimize``; we rely on both knowingly."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
        yield


def open_storage(
    url: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    *,
    window_s: float = DEFAULT_WINDOW_S,
    retry_open: bool = False,
) -> BaseStorage:
    """An Optuna storage from a URL: RDB (sqlite, postgresql, mysql) or a journal file.

    An RDB storage's calls are retried for ``window_s`` seconds while its database cannot be
    reached (:class:`RetryingStorage`); ``retry_open``: opening it too (a job, whose sweep has
    already reached it), rather than failing at once (a sweep given a wrong URL)."""
    if url.endswith((".log", ".jsonl")) and "://" not in url:
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(url))

    def connect() -> RDBStorage:
        with quiet_optuna():
            if not url.startswith("sqlite:///"):
                return RDBStorage(
                    url, heartbeat_interval=heartbeat_interval, grace_period=grace_period
                )
            db = Path(url.removeprefix("sqlite:///"))
            db.parent.mkdir(parents=True, exist_ok=True)
            # Like MLflow's, Optuna's schema creation races when processes open a new file.
            with FileLock(str(db) + ".lock", timeout=300):
                return RDBStorage(
                    url,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    engine_kwargs={"connect_args": {"timeout": 60}},
                )

    rdb = retry(connect, url, window_s, " to open it") if retry_open else connect()
    return cast(BaseStorage, RetryingStorage(_CachedStorage(rdb), url, window_s))


def heartbeat_enabled(storage: BaseStorage) -> bool:
    """Whether ``storage`` (or the storage a study wraps it in) records trial heartbeats."""
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    return interval is not None


def fail_trial(study: optuna.Study, trial_id: int, why: str, value: Any = True) -> bool:
    """Mark a still-running trial FAIL with the user attribute ``why`` (= ``value``); whether it
    was."""
    storage = study._storage
    try:
        if storage.get_trial(trial_id).state != TrialState.RUNNING:
            return False
        storage.set_trial_user_attr(trial_id, why, value)
        return bool(storage.set_trial_state_values(trial_id, TrialState.FAIL))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # its job finished it meanwhile


def load_trial(
    study_name: str, storage: str, number: int, heartbeat_interval: int | None
) -> optuna.Trial:
    store_ = open_storage(storage, heartbeat_interval, None, retry_open=True)
    study = optuna.load_study(study_name=study_name, storage=store_)
    if isinstance(store_, RetryingStorage):  # the sweep's window, from here on
        store_.window_s = float(study.user_attrs.get(WINDOW_ATTR, DEFAULT_WINDOW_S))
    pruner = study.user_attrs.get("pruner")
    if pruner is not None:  # the sweeper's pruner, so that should_prune() decides as it would
        study = optuna.load_study(
            study_name=study_name, storage=store_, pruner=make_pruner(SimpleNamespace(**pruner))
        )
    trial_id = store_.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return optuna.Trial(study, trial_id)


class TrialJob:
    """One job's trial, for the duration of the job (``with job: ...``).

    While open it records the trial's heartbeat from a background thread (RDB storages), so a
    job that dies (kill -9, a lost node) leaves a trial the next sweep fails as stale, and the
    identity of its process, so a sweep on the same host fails it at once. Leaving the block
    with an exception tells the study FAIL: ``interrupted`` on Ctrl-C or SystemExit (not
    counted toward ``n_trials``; the sweep runs another), ``error`` otherwise (counted: the
    trial's own result).
    """

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.pruned = False
        self._heartbeat: store.Heartbeat | None = None

    @classmethod
    def load(
        cls, study_name: str, storage: str, number: int, heartbeat_interval: int | None
    ) -> TrialJob:
        return cls(load_trial(study_name, storage, number, heartbeat_interval))

    def __enter__(self) -> TrialJob:
        storage = self.trial.storage
        self.trial.set_user_attr(PROCESS_ATTR, processes.identity())
        for key, value in json.loads(os.environ.get(store.RUN_TAGS_ENV) or "{}").items():
            self.trial.set_user_attr(key, value)  # where its launcher ran it (the Ray node)
        if heartbeat_enabled(storage):
            trial_id = self.trial._trial_id
            storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
            # Beats are not retried: a missed one is made up by the next.
            raw: Any = getattr(storage, "backend", storage)
            self._heartbeat = store.Heartbeat(
                lambda: raw.record_heartbeat(trial_id),
                float(storage.get_heartbeat_interval()),  # type: ignore[attr-defined]
            )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if exc is None:
            return
        if isinstance(exc, InfrastructureLost):
            self._fail_once(INFRASTRUCTURE_ATTR, str(exc))
            return
        try:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                # Ctrl-C, or the process told to exit (Ray ends the jobs of a driver that died):
                # not the trial's own result.
                self.trial.set_user_attr("interrupted", True)
            else:
                self.trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            self.trial.study.tell(self.trial.number, state=TrialState.FAIL, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # its sweep has ended the trial already (lost, infrastructure)

    def _fail_once(self, key: str, value: str) -> None:
        """FAIL with ``key``, in one attempt: the storage has just been found unreachable, and a
        trial left RUNNING is failed as lost by the next sweep anyway."""
        storage = self.trial.storage
        window = getattr(storage, "window_s", None)
        try:
            if window is not None:
                storage.window_s = 0.0  # type: ignore[attr-defined]
            self.trial.set_user_attr(key, value)
            self.trial.study.tell(self.trial.number, state=TrialState.FAIL, skip_if_finished=True)
        except Exception:
            return
        finally:
            if window is not None:
                storage.window_s = window  # type: ignore[attr-defined]

    def reporter(self, **settings: Any) -> TrialReporter:
        reporter = TrialReporter(trial=self.trial, job=self, **settings)
        return reporter

    def seeds_reporter(self, *, seeds: int, **settings: Any) -> SeedsReporter:
        """The reporter of a trial whose ``seeds`` seeds train at once (in a population)."""
        return SeedsReporter(trial=self.trial, job=self, seeds=seeds, **settings)

    def finish(self, value: Value, *, env_steps: int, train_time: float) -> None:
        """Tell the study this trial's outcome (unless something already did): its value, or
        its values in a multi-objective study."""
        try:
            self.trial.set_user_attr("env_steps", env_steps)
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # its sweep ended the trial (lost, infrastructure): no outcome to tell
        self.trial.set_user_attr("train_time_s", train_time)
        study = self.trial.study
        if self.pruned:
            study.tell(self.trial.number, state=TrialState.PRUNED, skip_if_finished=True)
        elif any(math.isnan(v) for v in (value if isinstance(value, tuple) else (value,))):
            self.trial.set_user_attr("error", "the objective is NaN (no episode finished)")
            study.tell(self.trial.number, state=TrialState.FAIL, skip_if_finished=True)
        else:
            told = list(value) if isinstance(value, tuple) else value
            study.tell(self.trial.number, told, skip_if_finished=True)


class TrialEnded(InfrastructureLost):
    """The job's trial was ended while it ran, by its sweep (the Ray head or the job's node
    lost) or by another (the job's heartbeat stale): the job stops, its result is not wanted."""

    def __init__(self, number: int, why: str) -> None:
        self.number, self.why = number, why
        super().__init__(f"Trial {number} was ended while its job ran ({why}).")

    def __reduce__(self) -> tuple[Any, ...]:  # a job's error travels back to its sweep
        return type(self), (self.number, self.why)

    @classmethod
    def of(cls, trial: optuna.Trial) -> TrialEnded:
        attrs = trial.storage.get_trial(trial._trial_id).user_attrs
        why = attrs.get(INFRASTRUCTURE_ATTR) or next(
            (key for key in ("lost", "interrupted") if attrs.get(key)), "no reason recorded"
        )
        return cls(trial.number, str(why))


class TrialReporter(MonitorBase):
    """Reports ``objective`` at each evaluation and stops the run if the trial is pruned.

    Steps are nominal env steps (multiples of the evaluation interval) plus ``step_offset``
    (one budget per earlier seed of the trial), so trials report at the same steps.
    """

    def __init__(
        self,
        *,
        trial: optuna.Trial,
        job: TrialJob,
        objective: Any,
        window: int,
        budget_steps: int | None,
        eval_every_steps: int,
        step_offset: int,
    ) -> None:
        self.trial, self.job = trial, job
        self.objective, self.window, self.budget_steps = objective, window, budget_steps
        self.eval_every_steps, self.step_offset = eval_every_steps, step_offset
        # Optuna reports and prunes single-objective studies only: a trial of several
        # objectives runs to its end and tells its values then.
        self.multi = len(names(objective)) > 1

    @property
    def pruned(self) -> bool:
        return self.job.pruned

    def evaluation(self, runner: Runner, returns: np.ndarray) -> None:
        if self.multi:
            return
        h = runner.history
        value = objective_value(
            self.objective, h, window=self.window, budget_steps=self.budget_steps
        )
        if math.isnan(value):
            return
        nominal = round(h.env_steps / self.eval_every_steps) * self.eval_every_steps
        try:
            self.trial.report(value, self.step_offset + nominal)
        except optuna.exceptions.UpdateFinishedTrialError:
            raise TrialEnded.of(self.trial) from None
        if self.trial.should_prune():
            self.job.pruned = True
            runner.stop_reason = "pruned"


class SeedsReporter:
    """Reports the ``objective`` over a trial's seeds that train at once (members of one
    population): at each nominal evaluation step, once every seed has evaluated there, their
    values' ``trial.aggregate`` (the mean by default); when the trial is pruned, every seed
    stops.

    Steps are nominal env steps (multiples of the evaluation interval), without the offsets of
    :class:`TrialReporter` (whose seeds train one after the other, each reporting its own
    values): a study's trials report one way or the other, as its launcher trains them.
    """

    def __init__(
        self,
        *,
        trial: optuna.Trial,
        job: TrialJob,
        seeds: int,
        objective: Any,
        window: int,
        budget_steps: int | None,
        eval_every_steps: int,
        aggregate: str = "mean",
    ) -> None:
        self.trial, self.job, self.seeds = trial, job, seeds
        self.aggregate = aggregate  # trial.aggregate: how the seeds' values make the trial's
        self.objective, self.window, self.budget_steps = objective, window, budget_steps
        self.eval_every_steps = eval_every_steps
        self.runners: dict[int, Runner] = {}
        self.values: dict[int, dict[int, float]] = {}  # nominal step -> seed -> value
        self.done: set[int] = set()  # seeds that train no more
        self.multi = len(names(objective)) > 1  # several objectives: no reports (Optuna's rule)

    @property
    def pruned(self) -> bool:
        return self.job.pruned

    def monitor(self, index: int) -> MonitorBase:
        """Seed ``index``'s monitor: its evaluations, told to this reporter."""
        return _SeedReporter(self, index)

    def evaluated(self, index: int, runner: Runner) -> None:
        """Seed ``index`` evaluated: its value at its nominal step."""
        h = runner.history
        self.runners[index] = runner
        if self.multi:
            return
        value = objective_value(
            self.objective, h, window=self.window, budget_steps=self.budget_steps
        )
        nominal = round(h.env_steps / self.eval_every_steps) * self.eval_every_steps
        self.values.setdefault(nominal, {})[index] = value
        self._report()

    def ended(self, index: int) -> None:
        """Seed ``index`` trains no more (its budget, solved, stopped or failed): the steps it
        will not reach are the mean of the others'."""
        self.done.add(index)
        if self.multi:
            return
        with contextlib.suppress(TrialEnded):  # the trial ended elsewhere: its job says so
            self._report()

    def _report(self) -> None:
        """Every step at which each seed still training has evaluated, in order: the mean of
        the seeds' values there; prune every seed if the trial should be pruned."""
        for nominal in sorted(self.values):
            found = self.values[nominal]
            if any(i not in found and i not in self.done for i in range(self.seeds)):
                return  # a seed still on its way there (a seed reaches its steps in order)
            del self.values[nominal]
            if any(math.isnan(v) for v in found.values()):
                continue  # a seed without a finished episode yet: nothing to compare
            try:
                self.trial.report(
                    aggregate_one(self.aggregate, [found[i] for i in sorted(found)]), nominal
                )
            except optuna.exceptions.UpdateFinishedTrialError:
                raise TrialEnded.of(self.trial) from None
            if self.trial.should_prune():
                self.job.pruned = True
                for runner in self.runners.values():
                    runner.stop_reason = "pruned"


class _SeedReporter(MonitorBase):
    def __init__(self, pooled: SeedsReporter, index: int) -> None:
        self.pooled, self.index = pooled, index

    def evaluation(self, runner: Runner, returns: np.ndarray) -> None:
        self.pooled.evaluated(self.index, runner)

    def finish(self, runner: Runner, status: str) -> None:
        self.pooled.ended(self.index)
