"""How a sweep stops when something it depends on is gone for good (the Optuna storage past
its retry window, the Ray head, a launcher failing launch after launch): the trials in flight
failed as ``infrastructure`` (not counted toward ``n_trials``), the parent run FAILED with the
reason, and one sentence that says what was lost and how to resume."""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any

import optuna

from hydra_plugins.twrl_optuna_sweeper._storage import StorageUnavailable
from hydra_plugins.twrl_optuna_sweeper._trial import INFRASTRUCTURE_ATTR, fail_trial
from twrl_exp import store
from twrl_exp.errors import InfrastructureLost
from twrl_exp.monitor.sweep import SweepParent

log = logging.getLogger(__name__)
PARENT_END_TIMEOUT_S = 20.0  # how long a stopping sweep waits to close its parent run


def stopped(
    exc: InfrastructureLost,
    storage: Any,
    batch: list[optuna.Trial],
    parent: SweepParent | None,
) -> InfrastructureLost:
    """The sweep cannot go on: fail the trials in flight as ``infrastructure`` (one try
    each: the storage may be what was lost; a trial left RUNNING is failed as lost when the
    sweep resumes), end the parent FAILED with the reason, and say it in one sentence."""
    what = getattr(exc, "what", str(exc).rstrip("."))
    failed: list[int] = []
    window = getattr(storage, "window_s", None)
    if window is not None:
        storage.window_s = 0.0
    for trial in batch:
        try:
            if fail_trial(trial.study, trial._trial_id, INFRASTRUCTURE_ATTR, what):
                failed.append(trial.number)
        except Exception:
            continue
    if window is not None:
        storage.window_s = window
    said = []
    if failed:
        numbers = ", ".join(str(n) for n in failed)
        said.append(f"trial(s) {numbers} failed as infrastructure (not counted toward n_trials)")
    elif batch and isinstance(exc, StorageUnavailable):
        said.append("its running trials are failed as lost when it resumes")
    if parent is not None:
        _end_parent(parent, f"stopped: {what}")
        said.append("its parent run is FAILED")
    said.append("the study keeps every finished trial")
    resume = getattr(exc, "resume", "run the same command again once it is back")
    listed = ", ".join(said[:-1]) + (", and " if len(said) > 1 else "") + said[-1]
    return InfrastructureLost(f"{what}, so the sweep stopped: {listed}; {resume}.")


class LaunchFailed(InfrastructureLost):
    """The launcher itself failed several launches in a row (not a job: the machinery)."""

    resume = "fix the cause and run the same command again to resume the study"

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(what)


def _end_parent(parent: SweepParent, reason: str) -> None:
    """End the parent run FAILED with ``reason``, waiting at most ``PARENT_END_TIMEOUT_S``: the
    tracking server may be down with the storage (they share a database on a local cluster);
    then the parent stays RUNNING until the next sweep or run finds its process gone."""
    atexit.unregister(parent.finish)

    def end() -> None:
        parent.client.set_tag(parent.run_id, store.END_REASON_TAG, reason[:5000])
        parent.finish("FAILED")

    def quietly() -> None:
        try:
            end()
        except Exception as exc:
            log.warning(f"The sweep's parent run could not be closed: {store.root_cause(exc)}")

    worker = threading.Thread(target=quietly, name="twrl-parent-end", daemon=True)
    worker.start()
    worker.join(PARENT_END_TIMEOUT_S)
