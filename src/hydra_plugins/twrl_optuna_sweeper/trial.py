"""The job side of a sweep: rebuild this job's Optuna trial from the shared storage, report
intermediate objective values at every evaluation, stop when the pruner says so, and tell the
study the result. Works the same in-process and in a launcher's worker process or machine."""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from hydra_plugins.twrl_optuna_sweeper.strategies import make_pruner
from twrl_exp.objectives import objective_value
from twrl_exp.runner import MonitorBase, Runner

# Heartbeats (stale-trial detection) are marked experimental in Optuna; we rely on them knowingly.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def open_storage(
    url: str, heartbeat_interval: int | None = None, grace_period: int | None = None
) -> BaseStorage:
    """An Optuna storage from a URL: RDB (sqlite, postgresql, mysql) or a journal file."""
    if url.endswith((".log", ".jsonl")) and "://" not in url:
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(url))
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return RDBStorage(
        url,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
    )


def load_trial(
    study_name: str, storage: str, number: int, heartbeat_interval: int | None
) -> optuna.Trial:
    store = open_storage(storage, heartbeat_interval, None)
    study = optuna.load_study(study_name=study_name, storage=store)
    pruner = study.user_attrs.get("pruner")
    if pruner is not None:  # the sweeper's pruner, so that should_prune() decides as it would
        study = optuna.load_study(
            study_name=study_name, storage=store, pruner=make_pruner(SimpleNamespace(**pruner))
        )
    trial_id = store.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return optuna.Trial(study, trial_id)


class TrialReporter(MonitorBase):
    """Reports ``objective`` at each evaluation and stops the run if the trial is pruned.

    Steps are nominal env steps (multiples of the evaluation interval) plus ``step_offset``
    (one budget per earlier seed of the trial), so trials report at the same steps.
    """

    def __init__(
        self,
        *,
        trial: optuna.Trial,
        objective: str,
        window: int,
        budget_steps: int | None,
        eval_every_steps: int,
        step_offset: int,
        heartbeat_interval: int | None,
    ) -> None:
        self.trial = trial
        self.objective, self.window, self.budget_steps = objective, window, budget_steps
        self.eval_every_steps, self.step_offset = eval_every_steps, step_offset
        self.heartbeat_interval = heartbeat_interval
        self._last_beat = 0.0
        self.pruned = False

    def _beat(self) -> None:
        storage = self.trial.storage
        if self.heartbeat_interval and isinstance(storage, RDBStorage):
            now = time.monotonic()
            if now - self._last_beat >= self.heartbeat_interval:
                storage.record_heartbeat(self.trial._trial_id)
                self._last_beat = now

    def start(self, runner: Runner) -> None:
        self._beat()

    def tick(self, runner: Runner) -> None:
        self._beat()

    def evaluation(self, runner: Runner, returns: np.ndarray) -> None:
        h = runner.history
        value = objective_value(
            self.objective, h, window=self.window, budget_steps=self.budget_steps
        )
        if math.isnan(value):
            return
        nominal = round(h.env_steps / self.eval_every_steps) * self.eval_every_steps
        self.trial.report(value, self.step_offset + nominal)
        if self.trial.should_prune():
            self.pruned = True
            runner.stop_reason = "pruned"


def finish_trial(trial: optuna.Trial, value: float, pruned: bool) -> None:
    """Tell the study this trial's outcome (unless something already did)."""
    study = trial.study
    if pruned:
        study.tell(trial.number, state=TrialState.PRUNED, skip_if_finished=True)
    elif math.isnan(value):
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    else:
        study.tell(trial.number, value, skip_if_finished=True)
