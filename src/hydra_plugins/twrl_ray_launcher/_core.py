"""Runs a sweep's jobs as Ray tasks, on a cluster of any size, with Ray's public API only.

Why not Hydra's ``hydra-ray-launcher`` (1.2.2): it passes ``object_store_memory`` when
connecting to an existing cluster, which Ray refuses (hydra#2893); it collects results with
``ray.get`` in job order, so one job lost with its node raises out of the launcher and the
results of every other job of the batch are lost with it; Ctrl-C leaves its tasks running on
the cluster; jobs run wherever the driver's relative paths and ``${now:}`` happen to resolve on
the worker; and it pins ``cloudpickle<3`` and pulls in boto3 for its AWS launcher. This launcher:

- **returns every job's result**: a job whose worker process or node died comes back as a
  :class:`~twrl_exp.errors.JobLost` failure (an Optuna sweep runs another trial in its place),
  and the MLflow runs it left RUNNING are marked FAILED with the reason at once;
- **stops the cluster's work on Ctrl-C**: every task is cancelled (a job closes its run KILLED
  and fails its trial as interrupted), and tasks that do not stop within 30 s are killed;
- **resolves the sweep's folder in the driver**, so each job writes where the sweep said, and
  hands each job what a worker on another machine cannot read from the driver's disk (the
  description of the sweep's parent MLflow run);
- **records where each job ran**: the Ray node, task and job ids become tags of the job's
  MLflow runs (``ray.node_id``, ``ray.task_id``) and user attributes of its Optuna trial;
- **notices a lost head**: Ray's driver waits a minute for a head that died, then kills its own
  process, printing only Ray's "Failed to connect to GCS", with its runs left RUNNING. Here a
  thread probes the head's GCS port every second; when it has refused connections for
  ``HEAD_LOST_AFTER_S`` seconds, the launcher marks the runs of the jobs in flight FAILED with
  the reason, tags the sweep's parent run, and raises ``HeadLost`` (one sentence, how to
  resume), which an Optuna sweep turns into its trials failed as ``infrastructure``
  (``_head.py``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.twrl_ray_launcher._head import HeadWatch, answers
from twrl_exp import interrupts, processes, store
from twrl_exp.errors import ConfigError, JobLost
from twrl_exp.monitor.sweep import PARENT_FILE, read_parent

if TYPE_CHECKING:
    from hydra_plugins.twrl_ray_launcher.ray_launcher import RayLauncher

log = logging.getLogger(__name__)
JOB_KEY_TAG = "twrl.job_key"
STOP_GRACE_S = 30.0  # how long cancelled jobs get to close their records before they are killed
_watch: HeadWatch | None = None


# ---------------------------------------------------------------------------- connecting


def connect(settings: DictConfig) -> None:
    """``ray.init`` as the settings say, once per process; a cluster that cannot be reached, or
    on which no node could run a job, is one sentence."""
    _check_settings(settings)
    if not ray.is_initialized():
        # No address: a new Ray on this machine for this sweep (ray.init() would attach to
        # whatever `ray start` last ran here, even a cluster that has since died).
        address = settings.address or os.environ.get("RAY_ADDRESS") or "local"
        if address not in ("auto", "local"):
            _check_reachable(str(address))
        init: Any = OmegaConf.to_container(settings.init, resolve=True) or {}
        kwargs: dict[str, Any] = dict(init)
        kwargs.setdefault("logging_level", logging.WARNING)
        # Jobs print their own progress; on a cluster it would arrive here late and interleaved.
        # It stays in the Ray dashboard's logs (hydra.launcher.init.log_to_driver=true: here).
        kwargs.setdefault("log_to_driver", False)
        if address == "local":
            kwargs.setdefault("include_dashboard", False)
            if settings.num_cpus is not None:
                kwargs.setdefault("num_cpus", int(settings.num_cpus))
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, TimeoutError, ValueError) as exc:
            where = "this machine" if address == "local" else address
            raise ConfigError(
                f"Ray could not connect to {where} ({store.root_cause(exc)[:160]}); start the "
                "cluster (`make cluster-up`, or `ray start --head` on its head node) or fix "
                "hydra.launcher.address / RAY_ADDRESS."
            ) from exc
        global _watch
        _watch = HeadWatch(str(ray.get_runtime_context().gcs_address), _close_runs)
    _check_fits(settings)


def _check_settings(settings: DictConfig) -> None:
    for key, value, valid in (
        ("cpus_per_job", settings.cpus_per_job, settings.cpus_per_job > 0),
        ("gpus_per_job", settings.gpus_per_job, settings.gpus_per_job >= 0),
        ("max_retries", settings.max_retries, settings.max_retries >= 0),
        ("population", settings.population, settings.population >= 0),
        ("auth", settings.auth, settings.auth in (None, "token", "disabled")),
    ):
        if not valid:
            sign = {"cpus_per_job": "> 0", "auth": "token, disabled or null"}.get(key, ">= 0")
            raise ConfigError(f"hydra.launcher.{key}={value} is invalid: it must be {sign}.")


def _check_reachable(address: str) -> None:
    """A TCP connection to the head's port, in seconds: ray.init would wait a minute."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or address, int(port or 6379)), timeout=5):
            return
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"The Ray cluster at {address} cannot be reached ({reason.lower()}); start it "
            "(`make cluster-up` on this machine, `ray start --head` on a head node) or fix "
            "hydra.launcher.address / RAY_ADDRESS."
        ) from exc


def _check_fits(settings: DictConfig) -> None:
    """A job that needs more CPUs or GPUs than any node has would wait forever: refuse it."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    for kind, need in (("CPU", settings.cpus_per_job), ("GPU", settings.gpus_per_job)):
        largest = max((n.get("Resources", {}).get(kind, 0.0) for n in nodes), default=0.0)
        if need > largest:
            raise ConfigError(
                f"hydra.launcher.{kind.lower()}s_per_job={need:g} is more than any node of the "
                f"Ray cluster has (the largest has {largest:g} {kind}); lower it or add nodes."
            )


# ---------------------------------------------------------------------------- launching


@dataclass
class _Job:
    """One Ray task: one job, or the jobs of one population (``hydra.launcher.population``)."""

    idx: list[int]
    key: str
    overrides: list[list[str]]
    ref: Any

    def each(self, value: BaseException) -> list[JobReturn]:
        """Every job of the task, failed with ``value``."""
        return [
            JobReturn(overrides=o, status=JobStatus.FAILED, _return_value=value)
            for o in self.overrides
        ]


def launch(
    launcher: RayLauncher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> list[JobReturn]:
    config, context = launcher.config, launcher.hydra_context
    assert config is not None
    assert context is not None
    assert launcher.task_function is not None
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    connect(launcher.settings)
    if _watch is not None and _watch.lost:  # lost between two launches
        raise _watch.stop([], read_parent(Path(str(config.hydra.sweep.dir)).absolute()))
    # Resolved here, once: ${now:} and ${twrl_pid:} would resolve differently in each worker.
    sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    parent = read_parent(sweep_dir)
    shared = {
        "hydra_context": ray.put(context),
        "task_function": ray.put(launcher.task_function),
        "singleton_state": ray.put(Singleton.get_state()),
    }
    env = {processes.SWEEP_ENV: os.environ.get(processes.SWEEP_ENV) or processes.identity()}
    for name in ("TWRL_PROJECT_ROOT", "TWRL_CLUSTER_DIR"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    decorate: Any = ray.remote(**_task_options(launcher.settings))
    task: Any = decorate(_run_job)
    together: Any = decorate(_run_population)

    def sweep_config_of(idx: int, overrides: list[str]) -> DictConfig:
        sweep_config = context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.num = idx
            sweep_config.hydra.sweep.dir = str(sweep_dir)
        if "paths" in sweep_config:  # where data goes is the driver's to say (+cluster=local)
            OmegaConf.resolve(sweep_config.paths)
        return sweep_config

    configs = {
        initial_job_idx + i: sweep_config_of(initial_job_idx + i, list(o))
        for i, o in enumerate(job_overrides)
    }

    def submit(idx: list[int], overrides: list[list[str]]) -> _Job:
        for i, o in zip(idx, overrides, strict=True):
            log.info(f"\t#{i} : {store.redact(' '.join(filter_overrides(o)))}")
        key = uuid.uuid4().hex
        common = {"job_key": key, "env": env, "parent": parent, "cwd": str(Path.cwd()), **shared}
        if len(idx) == 1:
            ref = task.options(name=f"twrl job {idx[0]}").remote(
                sweep_config=configs[idx[0]], **common
            )
        else:
            ref = together.options(name=f"twrl population of jobs {idx[0]}-{idx[-1]}").remote(
                sweep_configs=[configs[i] for i in idx], **common
            )
        return _Job(idx, key, overrides, ref)

    size = int(launcher.settings.population)
    indices = sorted(configs)
    by_index = {initial_job_idx + i: list(o) for i, o in enumerate(job_overrides)}
    if size > 1:
        from hydra_plugins.twrl_population_launcher.population_launcher import groups

        tasks = [[indices[i] for i in g] for g in groups([configs[i] for i in indices], size)]
    else:
        tasks = [[i] for i in indices]
    waiting = [(g, [by_index[i] for i in g]) for g in tasks]
    return _gather(waiting, submit, launcher.settings.n_jobs, parent)


def _task_options(settings: DictConfig) -> dict[str, Any]:
    options: dict[str, Any] = {
        "num_cpus": float(settings.cpus_per_job),
        "num_gpus": float(settings.gpus_per_job),
        "max_retries": int(settings.max_retries),
        "retry_exceptions": False,  # a job's own error is its result, not a reason to retry
        "max_calls": 0 if settings.reuse_workers else 1,
    }
    options.update(OmegaConf.to_container(settings.remote, resolve=True) or {})  # type: ignore[arg-type]
    return options


def _gather(
    waiting: list[tuple[list[int], list[list[str]]]],
    submit: Any,
    n_jobs: int | None,
    parent: dict[str, Any] | None,
) -> list[JobReturn]:
    """Every job's result, in job order, as each task finishes (at most ``n_jobs`` tasks in
    flight); on Ctrl-C, cancel what runs and submit nothing more."""
    order = sorted(idx for group, _ in waiting for idx in group)
    results: dict[int, JobReturn] = {}
    pending: dict[Any, _Job] = {}
    if _watch is not None:  # what it closes if the sweep gets stuck after losing the head
        _watch.in_flight = lambda: [job.key for job in pending.values()]
        _watch.parent = parent
    queue = list(waiting)
    limit = n_jobs if n_jobs and n_jobs > 0 else len(queue)
    while queue or pending:
        if _watch is not None and _watch.lost:
            raise _watch.stop([job.key for job in pending.values()], parent)
        if interrupts.requested:
            _stop(pending, results, parent)
            for group, overrides in queue:  # never started
                for idx, o in zip(group, overrides, strict=True):
                    results[idx] = JobReturn(
                        overrides=o, status=JobStatus.FAILED, _return_value=KeyboardInterrupt()
                    )
            break
        while queue and len(pending) < limit:
            job = submit(*queue.pop(0))
            pending[job.ref] = job
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        if ready and _watch is not None and not answers(_watch.address):
            # The head does not answer: what Ray says of these jobs now (cancelled, lost) is
            # the head's loss; leave them in flight until the watch decides, which ends their
            # runs FAILED with that reason and fails their trials as infrastructure.
            time.sleep(0.5)
            continue
        for ref in ready:
            job = pending.pop(ref)
            results.update(zip(job.idx, _result(job, parent, cancelled=False), strict=True))
    return [results[idx] for idx in order]


def _result(job: _Job, parent: dict[str, Any] | None, *, cancelled: bool) -> list[JobReturn]:
    """The task's jobs' returns; ``cancelled``: the sweep itself cancelled it (Ctrl-C)."""
    try:
        value: JobReturn | list[JobReturn] = ray.get(job.ref)
        return value if isinstance(value, list) else [value]
    except ray.exceptions.RayTaskError as exc:  # the job function itself raised
        return job.each(exc.cause)
    except ray.exceptions.TaskCancelledError as exc:
        if not cancelled:  # Ray cancelled it on its own (its owner or the head gone): lost
            return _lost(job, parent, exc)
        _close_runs(parent, job.key, "KILLED", "interrupted: the sweep was stopped")
        return job.each(KeyboardInterrupt())
    except ray.exceptions.RayError as exc:  # its worker process or node died
        return _lost(job, parent, exc)


def _lost(job: _Job, parent: dict[str, Any] | None, exc: BaseException) -> list[JobReturn]:
    reason = f"lost: {_why_lost(exc)}"
    closed = _close_runs(parent, job.key, "FAILED", reason)
    jobs = ", ".join(f"#{i}" for i in job.idx)
    log.warning(f"Job {jobs} was {reason} ({closed} run(s) marked FAILED).")
    return job.each(JobLost(reason))


def _why_lost(exc: BaseException) -> str:
    if isinstance(exc, ray.exceptions.NodeDiedError):
        return "the Ray node running it died"
    if isinstance(exc, ray.exceptions.WorkerCrashedError):
        return "its Ray worker process died (killed, out of memory, or its node died)"
    return f"Ray lost it ({type(exc).__name__}: {store.root_cause(exc)[:160]})"


def _stop(pending: dict[Any, _Job], results: dict[int, JobReturn], parent: Any) -> None:
    """Ctrl-C: each job gets KeyboardInterrupt (it closes its run KILLED and fails its trial),
    then whatever has not stopped within ``STOP_GRACE_S`` is killed."""
    for ref in pending:
        ray.cancel(ref, force=False)
    deadline = time.monotonic() + STOP_GRACE_S
    while pending and time.monotonic() < deadline:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        for ref in ready:
            job = pending.pop(ref)
            results.update(zip(job.idx, _result(job, parent, cancelled=True), strict=True))
    for ref, job in pending.items():
        ray.cancel(ref, force=True)
        _close_runs(parent, job.key, "KILLED", "interrupted: the sweep was stopped")
        results.update(zip(job.idx, job.each(KeyboardInterrupt()), strict=True))
    pending.clear()


def _close_runs(parent: dict[str, Any] | None, key: str, status: str, reason: str) -> int:
    """End the MLflow runs a job left RUNNING (found by its job key tag); how many."""
    if parent is None:
        return 0
    try:
        client = store.open_client(parent["tracking_uri"])
        experiment = client.get_experiment_by_name(parent["experiment"])
        if experiment is None:
            return 0
        runs = client.search_runs(
            [experiment.experiment_id],
            f"tags.`{JOB_KEY_TAG}` = '{key}' and attributes.status = 'RUNNING'",
        )
        for run in runs:
            client.set_tag(run.info.run_id, store.END_REASON_TAG, reason)
            client.set_terminated(run.info.run_id, status)
        return len(runs)
    except Exception as exc:  # the store is unreachable: the next opener reaps them
        log.warning(f"Could not close the runs of a lost job: {store.root_cause(exc)}")
        return 0


# ---------------------------------------------------------------------------- in the worker


def _run_job(
    *,
    hydra_context: Any,
    task_function: Any,
    singleton_state: Any,
    sweep_config: DictConfig,
    job_key: str,
    env: dict[str, str],
    parent: dict[str, Any] | None,
    cwd: str,
) -> JobReturn:
    """One job, in a Ray worker process on any node: as Hydra's own launchers run it."""
    _in_worker(singleton_state, sweep_config, job_key, env, parent, cwd)
    return run_job(
        hydra_context=hydra_context,
        task_function=task_function,
        config=sweep_config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


def _run_population(
    *,
    hydra_context: Any,
    task_function: Any,
    singleton_state: Any,
    sweep_configs: list[DictConfig],
    job_key: str,
    env: dict[str, str],
    parent: dict[str, Any] | None,
    cwd: str,
) -> list[JobReturn]:
    """The jobs of one structure, in one Ray worker process, trained as one population (as
    ``hydra/launcher=population`` trains them): each job's folder, saved config and callbacks
    as Hydra makes them, each its own run."""
    del task_function  # each job is enlisted (train.enlist), then all trained together
    from hydra_plugins.twrl_population_launcher.population_launcher import settle
    from twrl_exp import train

    enlisted = [
        _run_job(
            hydra_context=hydra_context,
            task_function=train.enlist,
            singleton_state=singleton_state,
            sweep_config=sweep_config,
            job_key=job_key,
            env=env,
            parent=parent,
            cwd=cwd,
        )
        for sweep_config in sweep_configs
    ]
    ready = [r for r in enlisted if r.status == JobStatus.COMPLETED]
    settle(ready, train.train_jobs_together([r.return_value for r in ready]))
    return enlisted


def _in_worker(
    singleton_state: Any,
    sweep_config: DictConfig,
    job_key: str,
    env: dict[str, str],
    parent: dict[str, Any] | None,
    cwd: str,
) -> None:
    """A job's setting in a Ray worker: where it ran (its runs' tags), the driver's
    environment and folder, the sweep's parent run, Hydra's state."""
    runtime = ray.get_runtime_context()
    where = {
        "ray.node_id": runtime.get_node_id(),
        "ray.task_id": runtime.get_task_id() or "",
        "ray.job_id": runtime.get_job_id(),
        JOB_KEY_TAG: job_key,
    }
    os.environ.update(env)
    os.environ[store.RUN_TAGS_ENV] = json.dumps(where)
    if Path(cwd).is_dir():  # the driver's folder where this node has it (a shared disk)
        os.chdir(cwd)
    from twrl_exp.paths import make_importable

    make_importable()  # the user's own modules (my_rules.py), as the driver finds them
    sweep_dir = Path(str(sweep_config.hydra.sweep.dir))
    if parent is not None and not (sweep_dir / PARENT_FILE).exists():
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_FILE).write_text(json.dumps(parent))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = where["ray.task_id"] or job_key
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(sweep_config)
