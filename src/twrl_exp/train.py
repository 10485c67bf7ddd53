"""``run(cfg) -> float`` (a tuple of floats for several objectives) and the ``@hydra.main``
command line around it.

python train.py env=cartpole policy=categorical model=mlp update=reinforce
python train.py -m update.lr=1e-3,1e-2
python train.py resume=<mlflow run id>     # continue a run from its last checkpoint
python train.py rerun=<mlflow run id>      # a new run with exactly that run's config
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from twrl_exp import cli_errors, interrupts, logged, processes, seeding, store
from twrl_exp.build import build, check_run_config, make_runner
from twrl_exp.cli_errors import say
from twrl_exp.config import register_configs
from twrl_exp.errors import ConfigError, DivergedError, RecordingError
from twrl_exp.monitor import report, sweep, writer
from twrl_exp.monitor.console import ConsoleMonitor
from twrl_exp.monitor.setup import make_monitors, run_name, short_override
from twrl_exp.monitor.sweep import read_parent
from twrl_exp.objectives import Value, aggregate, names
from twrl_exp.objectives import values as objective_values
from twrl_exp.paths import commands, config_dir, tracking_uri_of
from twrl_exp.population import Member, Population, alone_because
from twrl_exp.runner import Monitor, Runner

register_configs()
SWEEP_ENV = processes.SWEEP_ENV
# What ends a run with one sentence rather than a traceback, and the exit code it gets.
_SENTENCE_ERRORS: dict[type[BaseException], int] = {
    ConfigError: 2,
    DivergedError: 1,
    RecordingError: 1,
}


def _tracking_uri(cfg: DictConfig) -> str:
    return tracking_uri_of(cfg)


@dataclass
class _Prepared:
    """A run built, its record opened (or the error that stopped that), not yet trained."""

    cfg: DictConfig
    built: Any
    monitors: list[Monitor]
    tracker: Any
    runner: Runner
    run_dir: Path
    name_suffix: str
    brief: bool
    opened: bool = False
    error: BaseException | None = None
    member: Member | None = None


def _prepare(
    cfg: DictConfig,
    *,
    run_dir: Path,
    name_suffix: str,
    context: dict[str, str],
    checkpoint: dict[str, Any] | None = None,
    extra_monitors: list[Monitor] | None = None,
    brief: bool = False,
    member: bool = False,
) -> _Prepared:
    """Build one seed of one configuration and open its record, loading ``checkpoint`` (a
    resume); ``member``: as a population's member (torch's draws from its own generator)."""
    if cfg.monitor.mlflow.enabled:  # the writer opens the store while the run is built
        with contextlib.suppress(Exception):  # anything wrong is said when the run is created
            writer.shared().prepare(_tracking_uri(cfg))
    threads = torch.get_num_threads()
    built = build(cfg)
    if member:  # a member (a refill too) trains with its population's threads, not its own
        torch.set_num_threads(threads)
    monitors, tracker = make_monitors(cfg, run_dir, built.env_id, name_suffix, context, brief=brief)
    monitors[:0] = extra_monitors or []
    runner = make_runner(cfg, built, monitors)
    prepared = _Prepared(cfg, built, monitors, tracker, runner, run_dir, name_suffix, brief)
    if member:
        prepared.member = Member.after_build(runner)
    if tracker is not None:
        tracker.request()  # the writer creates the run while the checkpoint loads
    try:
        if checkpoint is not None:
            runner.load_state_dict(checkpoint)
        if tracker is not None:
            tracker.open(runner)
        prepared.opened = True
    except (KeyboardInterrupt, Exception) as exc:
        prepared.error = exc
    return prepared


def _train_once(
    cfg: DictConfig,
    *,
    run_dir: Path,
    name_suffix: str,
    context: dict[str, str],
    checkpoint: dict[str, Any] | None = None,
    extra_monitors: list[Monitor] | None = None,
    brief: bool = False,
) -> Runner:
    """One seed of one configuration: build, record, train, and close everything (``brief``:
    a sweep's job, which ends with one line; the sweep's table says the rest).

    Whatever happens, the run's record ends in a terminal state: FINISHED, KILLED on Ctrl-C,
    FAILED (with ``twrl.end_reason``) on any error, the recorder's own included.
    """
    prepared = _prepare(
        cfg,
        run_dir=run_dir,
        name_suffix=name_suffix,
        context=context,
        checkpoint=checkpoint,
        extra_monitors=extra_monitors,
        brief=brief,
    )
    runner = prepared.runner
    if prepared.error is None:
        try:
            with interrupts.deferred(lambda: setattr(runner, "stop_requested", True)):
                runner.run()
        except (KeyboardInterrupt, Exception) as exc:
            prepared.error = exc
    return _conclude(prepared)


def _conclude(prepared: _Prepared) -> Runner:
    """End a prepared run's record as its training ended (``prepared.error``: how it did not),
    close its envs, print its report; raise what ended it."""
    cfg, runner, tracker, monitors = (
        prepared.cfg,
        prepared.runner,
        prepared.tracker,
        prepared.monitors,
    )
    error = prepared.error
    if error is None:
        status, reason = "FINISHED", None
    elif isinstance(error, KeyboardInterrupt):
        status, reason = "KILLED", "interrupted"
    else:
        status = "FAILED"
        reason = getattr(error, "end_reason", None) or (  # a full disk says `disk full: ...`
            str(error) if isinstance(error, DivergedError) else f"{type(error).__name__}: {error}"
        )
    if tracker is not None:
        value = _objective(cfg, runner)
        tracker.objective = (
            dict(zip(names(cfg.trial.objective), value, strict=True))
            if isinstance(value, tuple)
            else value
        )
    problems: list[str] = []
    full: store.DiskFullError | None = None
    if prepared.opened:
        problems, full = _finish(runner, monitors, tracker, status, reason)
    elif tracker is not None and tracker.created():  # failed or interrupted while opening
        problems, full = _finish(runner, [tracker], tracker, status, reason)
    prepared.built.close()
    if prepared.opened:
        final = "FAILED" if problems and status == "FINISHED" else status
        why = reason or ("; ".join(problems) if problems else None)
        name = run_name(cfg, prepared.built.env_id, prepared.name_suffix)
        _report(cfg, runner, tracker, prepared.run_dir, final, why, name, brief=prepared.brief)
    if error is None and full is not None:  # a disk filled up while the run was ending
        error = full
    if error is not None:
        if isinstance(error, store.DiskFullError) and tracker is not None:
            error.run_id = error.run_id or tracker.run_id  # its fix: resume this run
        raise error
    if problems:
        raise RecordingError("; ".join(problems))
    return runner


def _objective(cfg: DictConfig, runner: Runner) -> Value:
    """``cfg.trial.objective`` of the run so far: what it returns to a sweep (a tuple: the
    values of a multi-objective sweep's objectives)."""
    return objective_values(
        cfg.trial.objective,
        runner.history,
        window=cfg.train.solve_window,
        budget_steps=cfg.train.max_env_steps,
    )


def _finish(
    runner: Runner, monitors: list[Monitor], tracker: Any, status: str, reason: str | None
) -> tuple[list[str], store.DiskFullError | None]:
    """Let every monitor finish (the tracker last, with the status the others leave), saying
    what slow work is being done when a console is on. Returns what went wrong, and the first
    full disk met (a checkpoint at the end, say), which the run then fails with."""
    console = next((m for m in monitors if isinstance(m, ConsoleMonitor)), None)
    problems: list[str] = []
    full: store.DiskFullError | None = None
    if tracker is not None and runner.stop_reason is not None:
        try:
            tracker.set_tag("stopped", runner.stop_reason)
        except Exception as exc:
            problems.append(f"the stop reason could not be recorded ({exc})")
    for monitor in [m for m in monitors if m is not tracker] + [tracker]:
        if monitor is None:
            continue
        if monitor is tracker and problems and status == "FINISHED":
            status, reason = "FAILED", "; ".join(problems)
        note = getattr(monitor, "finishing", lambda _: None)(status)
        if console is not None and note:
            console.note(note)
        try:
            if monitor is tracker:
                tracker.finish(runner, status, reason)
            else:
                monitor.finish(runner, status)
        except store.DiskFullError as exc:
            full = full or exc
            problems.append(exc.end_reason)
        except RecordingError as exc:
            problems.append(str(exc))
        except Exception as exc:
            problems.append(f"{type(monitor).__name__} failed ({exc})")
    return problems, full


def _report(
    cfg: DictConfig,
    runner: Runner,
    tracker: Any,
    run_dir: Path,
    status: str,
    reason: str | None,
    name: str,
    *,
    brief: bool = False,
) -> None:
    """The run's last lines: status, run id, link, video and curve, what to type next (only
    the first, and why it failed, when ``brief``)."""
    if tracker is None and not cfg.monitor.console:
        return
    local = {
        label: path
        for label, path in (
            ("video", run_dir / "videos" / "final.mp4"),
            ("checkpoint", run_dir / "checkpoints" / "last.pt"),
        )
        if path.exists()
    }
    rows = report.lines(
        status=status,
        name=name,
        tracker=tracker,
        local_files=local,
        reason=reason,
        ui_url=cfg.monitor.mlflow.ui_url,
    )
    if brief:
        rows = [row for row in rows if row[0] in ("", "why")]
    report.print_report(Console(soft_wrap=True), rows, status)


def _sources(
    cfg: DictConfig, overrides: list[str], context: dict[str, str]
) -> tuple[DictConfig, dict[str, Any] | None]:
    """For ``resume=``/``rerun=``: the logged run's validated config (and checkpoint)."""
    if cfg.resume:
        source = logged.resume_source(_tracking_uri(cfg), cfg.resume, overrides)
        context["resumed_from"] = source.run_id
        _record_options(context, source.choices or {})
        _tell_preset(source.config, source.choices or {})
        if source.status == "FINISHED":
            Console(stderr=True).print(
                f"resume={source.run_id}: the run had FINISHED, so it is kept as it is; its "
                "continuation is a new run of the same name (tagged twrl.resumed_from), which the "
                "leaderboard counts in its place.",
                markup=False,
                highlight=False,
            )
        if source.checkpoint is None:
            Console(stderr=True).print(
                f"resume={source.run_id}: the run has no checkpoint, so it starts over from env "
                "step 0 (as a new run that replaces it).",
                markup=False,
                highlight=False,
            )
        return source.config, source.checkpoint
    if cfg.rerun:
        context["rerun_of"] = cfg.rerun
        config, options = logged.rerun_config(_tracking_uri(cfg), cfg.rerun, overrides)
        _record_options(context, options)
        _tell_preset(config, options)
        return config, None
    return cfg, None


def _tell_preset(cfg: DictConfig, options: Mapping[str, str]) -> None:
    """The tuned preset of a logged run's groups (``options``), on the console of a command
    line's run (not a sweep's job, nor a run started from Python)."""
    if not cfg.monitor.console or not HydraConfig.initialized():
        return
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return
    note = _preset_note(options)
    if note:
        Console(soft_wrap=True).print(note, markup=False, highlight=False, style="dim")


def _record_options(context: dict[str, str], options: dict[str, str]) -> None:
    """A run from a logged one records that run's group options, not the defaults Hydra
    composed before the logged config was read."""
    for key in [k for k in context if k.startswith(logged.CHOICE_TAG)]:
        del context[key]
    context.update({f"{logged.CHOICE_TAG}{g}": c for g, c in options.items()})


def run(
    cfg: DictConfig,
    *,
    run_dir: Path | None = None,
    overrides: list[str] | None = None,
    name_suffix: str = "",
    sweep_dir: Path | None = None,
    choices: dict[str, str] | None = None,
) -> Value:
    """Train as ``cfg`` says; return ``cfg.trial.objective`` (over ``cfg.trial.seeds``: their
    ``cfg.trial.aggregate``, the mean by default).

    ``overrides`` are the command line's (applied on top of a resumed run's logged config);
    ``name_suffix`` distinguishes the runs of a sweep; ``sweep_dir`` is a multirun's folder,
    where the sweep's parent MLflow run is described; ``choices`` are the composed group options
    (recorded as ``twrl.choice.*`` tags). When ``cfg.trial.number`` is set the run is a trial of
    an Optuna study: it reports to it, may be pruned, and tells it the result.
    """
    with ExitStack() as stack:
        if run_dir is None:  # a programmatic run keeps nothing locally
            run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="twrl-run-")))
        return _run(cfg, run_dir, overrides or [], name_suffix, sweep_dir, choices or {})


def _run(
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str],
    name_suffix: str,
    sweep_dir: Path | None,
    choices: dict[str, str],
) -> Value:
    check_run_config(cfg)
    context = {f"{logged.CHOICE_TAG}{g}": c for g, c in choices.items() if g in logged.GROUPS}
    resumed = bool(cfg.resume)
    cfg, checkpoint = _sources(cfg, overrides, context)
    parent = read_parent(sweep_dir)
    if parent is not None:
        context.update(
            {
                "experiment": parent["experiment"],
                "tracking_uri": parent["tracking_uri"],
                "mlflow.parentRunId": parent["run_id"],
            }
        )
    _watch_sweep()
    brief = sweep_dir is not None  # a sweep's job
    if cfg.trial.number is None:
        return _seeds(cfg, run_dir, name_suffix, context, checkpoint, resumed, None, brief)
    from hydra_plugins.twrl_optuna_sweeper import _trial as optuna_trial

    job = optuna_trial.TrialJob.load(
        cfg.trial.study_name, cfg.trial.storage, cfg.trial.number, cfg.trial.heartbeat_interval
    )
    context.update({"optuna.study": cfg.trial.study_name, "optuna.trial": str(cfg.trial.number)})
    with job:
        return _seeds(cfg, run_dir, name_suffix, context, checkpoint, resumed, job, brief)


def _seeds(
    cfg: DictConfig,
    run_dir: Path,
    name_suffix: str,
    context: dict[str, str],
    checkpoint: dict[str, Any] | None,
    resumed: bool,
    job: Any,
    brief: bool = False,
) -> Value:
    """Every seed of a run (``cfg.trial.seeds``); their objectives' ``trial.aggregate``. Seeds
    of a rule with a population form train together (``trial.population``), except in an
    Optuna trial."""
    if job is None and not resumed and _as_population(cfg):
        population_job = PopulationJob(cfg, run_dir, [], name_suffix, context=context, brief=True)
        outcome = train_population([population_job])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
    values: list[Value] = []
    env_steps, train_time = 0, 0.0
    for index in range(1 if resumed else cfg.trial.seeds):
        seed_cfg = cfg.copy()
        seed_cfg.seed = seeding.run_seeds(cfg.seed, cfg.trial.seeds)[index]
        suffix = name_suffix
        reporter = None
        if job is not None:
            reporter = job.reporter(
                objective=cfg.trial.objective,
                window=cfg.train.solve_window,
                budget_steps=cfg.train.max_env_steps,
                eval_every_steps=cfg.eval.every_steps or 1,
                step_offset=index * (cfg.train.max_env_steps or 1_000_000_000),
            )
        runner = _train_once(
            seed_cfg,
            run_dir=run_dir if cfg.trial.seeds == 1 else run_dir / f"seed{seed_cfg.seed}",
            name_suffix=suffix.strip(),
            context=context,
            checkpoint=checkpoint,
            extra_monitors=[reporter] if reporter is not None else None,
            brief=brief,
        )
        values.append(_objective(cfg, runner))
        env_steps += runner.history.env_steps
        train_time += runner.history.train_time
        if reporter is not None and reporter.pruned:
            break
    value = aggregate(cfg.trial.aggregate, values)
    if job is not None:
        job.finish(value, env_steps=env_steps, train_time=train_time)
    return value


@dataclass
class PopulationJob:
    """One job trained as part of a population: what :func:`run` takes."""

    cfg: DictConfig
    run_dir: Path
    overrides: list[str]
    name_suffix: str = ""
    sweep_dir: Path | None = None
    choices: dict[str, str] = field(default_factory=dict)
    context: dict[str, str] | None = None  # the runs' tags, where the caller made them
    brief: bool | None = None  # one line per run (a sweep's job); None: in a sweep


def train_population(
    jobs: Sequence[PopulationJob], refill: Callable[[], PopulationJob | None] | None = None
) -> list[Value | BaseException]:
    """Train ``jobs`` (one structure: :func:`twrl_exp.population.structure_key`; a ``resume=``
    job goes on from its run's checkpoint) as one population, every seed of every job
    (``trial.seeds``) a member and its own run, recorded as a single run is; a job that is an
    Optuna trial reports to it (the mean over its seeds at each evaluation step), may be pruned
    and tells it its result. Each run is concluded as soon as it ends, and ``refill`` (if
    given) is asked for a job whose runs take the slots that free up. Returns each job's
    objective (the mean over its seeds), or what ended it, ``jobs`` first, then those
    ``refill`` gave; a Ctrl-C ends every run KILLED, then is raised."""
    group = _Group(refill)
    for job in jobs:
        group.add(job)
    for prepared in [p for p in group.waiting if p.error is not None]:
        group.conclude(prepared)
    ready = list(group.waiting)
    if len(ready) > 1 and ready[0].cfg.monitor.console:
        Console(soft_wrap=True).print(
            f"{len(ready)} runs train together as one population, each its own MLflow run; "
            "the progress shown is the first one's.",
            markup=False,
            highlight=False,
            style="dim",
        )
    interrupted = _train_together(ready, group) if ready else False
    while group.queued and not interrupted:  # refilled members no slot freed up for
        ready = [group.by_member[id(member)] for member in group.queued]
        group.queued.clear()
        interrupted = _train_together(ready, group)
    for prepared in list(group.waiting):  # those Ctrl-C or a learner's error stopped
        member = prepared.member
        if interrupted and prepared.error is None and member is not None and not member.ended:
            prepared.error = KeyboardInterrupt()
        group.conclude(prepared)
    if interrupted:
        raise KeyboardInterrupt
    return group.outcomes


@dataclass
class _JobState:
    job: PopulationJob
    members: int = 0  # its runs not yet concluded
    values: list[Value] = field(default_factory=list)
    env_steps: int = 0
    train_time: float = 0.0
    error: BaseException | None = None
    trial: Any = None  # its Optuna trial (a TrialJob), if it is one
    outcome: Value | BaseException | None = None


class _Group:
    """The jobs of one population: their runs prepared, concluded as they end, each job's
    outcome once its last run is concluded."""

    def __init__(self, refill: Callable[[], PopulationJob | None] | None) -> None:
        self.refill = refill
        self.states: list[_JobState] = []
        self.job_of: dict[int, _JobState] = {}  # id(prepared) -> its job
        self.waiting: list[_Prepared] = []  # prepared, not yet concluded
        self.by_member: dict[int, _Prepared] = {}  # id(member) -> its prepared run
        self.queued: list[Member] = []  # refilled members waiting for a slot

    @property
    def outcomes(self) -> list[Value | BaseException]:
        return [s.outcome if s.outcome is not None else 0.0 for s in self.states]

    def add(self, job: PopulationJob) -> list[_Prepared]:
        """Prepare every run of ``job``; a job that cannot be built ends at once."""
        state = _JobState(job)
        self.states.append(state)
        try:
            prepared, state.trial = _prepare_members(job, quiet=bool(self.by_member))
        except Exception as exc:
            state.error = exc
            self._settle(state)
            return []
        state.members = len(prepared)
        for p in prepared:
            self.job_of[id(p)] = state
            self.waiting.append(p)
            if p.member is not None:
                self.by_member[id(p.member)] = p
        return prepared

    def conclude(self, prepared: _Prepared) -> None:
        """End ``prepared``'s record as its training ended; its job's outcome once it was the
        job's last run."""
        state = self.job_of[id(prepared)]
        self.waiting.remove(prepared)
        if prepared.member is not None:
            self.by_member.pop(id(prepared.member), None)
        if state.error is not None and prepared.error is None:
            prepared.error = state.error  # another seed of its job failed to be built
        try:
            runner = _conclude(prepared)
            state.values.append(_objective(prepared.cfg, runner))
        except (KeyboardInterrupt, Exception) as exc:
            state.error = state.error or exc
        state.env_steps += prepared.runner.history.env_steps
        state.train_time += prepared.runner.history.train_time
        state.members -= 1
        if state.members == 0:
            self._settle(state)

    def _settle(self, state: _JobState) -> None:
        """The job's outcome, told to its Optuna trial (if any)."""
        error = state.error
        how = state.job.cfg.trial.aggregate
        state.outcome = error if error is not None else aggregate(how, state.values)
        trial = state.trial
        if trial is None:
            return
        if error is None:
            trial.finish(state.outcome, env_steps=state.env_steps, train_time=state.train_time)
            trial.__exit__(None, None, None)
        else:
            trial.__exit__(type(error), error, error.__traceback__)

    def ended(self, slot: int, member: Member) -> Member | None:
        """``Population.run``'s ``on_end``: conclude the member's run, and give the first run of
        the next job ``refill`` gives to take its slot (None: the slot stays empty)."""
        del slot
        prepared = self.by_member[id(member)]
        prepared.error = prepared.error or member.error
        self.conclude(prepared)
        while not self.queued and self.refill is not None and (job := self.refill()) is not None:
            runs = self.add(job)
            for p in [p for p in runs if p.error is not None]:
                self.conclude(p)
            # A job of several seeds takes this slot and the next ones that free up.
            self.queued += [p.member for p in runs if p.error is None and p.member is not None]
        return self.queued.pop(0) if self.queued else None


def _prepare_members(job: PopulationJob, *, quiet: bool) -> tuple[list[_Prepared], Any]:
    """Every seed of ``job``, built and its record opened, as a population's members, and the
    Optuna trial it is (entered: its job's process and heartbeat recorded), if any. Only the
    population's first member shows progress on the console (one live display at a time): the
    others (and ``quiet``'s) have ``monitor.console=false``, and each still ends with its line."""
    cfg = job.cfg
    check_run_config(cfg)
    context = dict(job.context or _job_context(job))
    resumed = bool(cfg.resume)  # resume=: the logged run goes on, from its checkpoint
    cfg, checkpoint = _sources(cfg, job.overrides, context)
    trial: Any = None
    if cfg.trial.number is not None:
        from hydra_plugins.twrl_optuna_sweeper import _trial as optuna_trial

        trial = optuna_trial.TrialJob.load(
            cfg.trial.study_name, cfg.trial.storage, cfg.trial.number, cfg.trial.heartbeat_interval
        ).__enter__()
        context.update(
            {"optuna.study": cfg.trial.study_name, "optuna.trial": str(cfg.trial.number)}
        )
    members: list[_Prepared] = []
    try:
        seeds = seeding.run_seeds(cfg.seed, cfg.trial.seeds)[: 1 if resumed else None]
        # A trial's seeds train at once: it reports the mean over them at each evaluation
        # step, and a pruned trial stops them all.
        pooled = None
        if trial is not None:
            pooled = trial.seeds_reporter(
                seeds=len(seeds),
                objective=cfg.trial.objective,
                aggregate=str(cfg.trial.aggregate),
                window=cfg.train.solve_window,
                budget_steps=cfg.train.max_env_steps,
                eval_every_steps=cfg.eval.every_steps or 1,
            )
        for index, seed in enumerate(seeds):
            seed_cfg = cfg.copy()
            seed_cfg.seed = seed
            if quiet or members:
                seed_cfg.monitor.console = False
            reporter: list[Monitor] = [] if pooled is None else [pooled.monitor(index)]
            members.append(
                _prepare(
                    seed_cfg,
                    run_dir=job.run_dir if cfg.trial.seeds == 1 else job.run_dir / f"seed{seed}",
                    name_suffix=job.name_suffix.strip(),
                    context=context,
                    checkpoint=checkpoint,
                    extra_monitors=reporter,
                    brief=job.sweep_dir is not None if job.brief is None else job.brief,
                    member=True,
                )
            )
    except BaseException as exc:
        if trial is not None:
            trial.__exit__(type(exc), exc, exc.__traceback__)
        raise
    return members, trial


def _job_context(job: PopulationJob) -> dict[str, str]:
    """A sweep's job's tags: its group options and its sweep's parent run."""
    context = {f"{logged.CHOICE_TAG}{g}": c for g, c in job.choices.items() if g in logged.GROUPS}
    parent = read_parent(job.sweep_dir)
    if parent is not None:
        context.update(
            {
                "experiment": parent["experiment"],
                "tracking_uri": parent["tracking_uri"],
                "mlflow.parentRunId": parent["run_id"],
            }
        )
    return context


def _as_population(cfg: DictConfig) -> bool:
    """Whether ``cfg``'s seeds train as one population; where they cannot, the console says
    why once."""
    if cfg.trial.seeds < 2 or not cfg.trial.population:
        return False
    reason = alone_because(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    if reason is not None and cfg.monitor.console:
        Console(soft_wrap=True).print(
            f"trial.seeds={cfg.trial.seeds}: the seeds train one after another, not as one "
            f"population ({reason}).",
            markup=False,
            highlight=False,
            style="dim",
        )
    return reason is None


def _train_together(ready: list[_Prepared], group: _Group) -> bool:
    """Train ``ready`` members as one population, each concluded by ``group`` as it ends (and
    its slot refilled from ``group``). Returns whether Ctrl-C stopped it."""
    members = [p.member for p in ready if p.member is not None]
    try:
        population = Population(members)
    except ConfigError:  # members the stacked learners cannot take: one by one, as plain runs
        return _one_by_one(ready)
    single = torch.get_num_threads()
    torch.set_num_threads(population_threads(ready[0].cfg))
    try:
        with interrupts.deferred(population.stop):
            population.run(on_end=group.ended)
    except KeyboardInterrupt:
        return True
    except Exception as exc:  # the stacked learner's own: every member still training ends
        for live in population.members:
            if not live.ended:
                live.error, live.ended = exc, True
    finally:
        torch.set_num_threads(single)
    for prepared in group.waiting:
        if prepared.member is not None and prepared.member.ended:
            prepared.error = prepared.error or prepared.member.error
    return False


def population_threads(cfg: DictConfig) -> int:
    """The torch threads a population trains with: ``trial.population_threads``; else
    ``OMP_NUM_THREADS`` where it is set (a Ray task's CPUs: Ray sets it; a batch scheduler's
    share); else every core this process may use. Measured (PPO CartPole preset, 2 cores, 30k
    steps): 32 members take 48 s on 2 threads against 62 s on 1, 4 members 13.2 s against
    13.8 s; a single run keeps ``torch_threads`` (1 is faster for its small matmuls)."""
    if cfg.trial.population_threads is not None:
        return int(cfg.trial.population_threads)
    given = os.environ.get("OMP_NUM_THREADS", "")
    if given.isdigit() and int(given) >= 1:
        return int(given)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows: no affinity mask
        return max(1, os.cpu_count() or 1)


def _one_by_one(ready: list[_Prepared]) -> bool:
    for prepared in ready:
        member, runner = prepared.member, prepared.runner
        assert member is not None
        runner.agent.torch_rng = None  # a plain run draws from torch's global RNG
        torch.set_rng_state(member.generator.get_state())
        try:
            with interrupts.deferred(partial(setattr, runner, "stop_requested", True)):
                runner.run()
            member.ended = True
        except KeyboardInterrupt:
            return True
        except Exception as exc:
            prepared.error = exc
            member.ended = True
    return False


_watching: list[str] = []


def _watch_sweep() -> None:
    """In a launcher's worker process, stop (and exit) when the sweep that launched it dies."""
    launcher = os.environ.get(SWEEP_ENV)
    if not _in_worker() or launcher in _watching or processes.alive(launcher or "") is None:
        return
    assert launcher is not None
    _watching.append(launcher)
    processes.watch(launcher, interrupts.orphan)


def _in_worker() -> bool:
    launcher = os.environ.get(SWEEP_ENV)
    return bool(launcher) and launcher != processes.identity()


def _discard_output_dir() -> None:
    """A run refused for bad input leaves nothing behind, not even Hydra's output folder."""
    try:
        out = Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # Hydra failed before our task ran: its log file says where it is
        import logging

        logs = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
        if not logs:
            return
        out = Path(logs[0].baseFilename).parent
    if out.is_dir() and not (out / "checkpoints").exists():
        shutil.rmtree(out, ignore_errors=True)
        for parent in (out.parent, out.parent.parent):  # outputs/<date>/, outputs/, if empty
            if parent.is_dir() and parent != Path.cwd() and not any(parent.iterdir()):
                parent.rmdir()


def _job(cfg: DictConfig) -> PopulationJob:
    """What Hydra's job context says of the run of ``cfg``: its folder, overrides, name suffix,
    sweep folder and group options."""
    hc = HydraConfig.get()
    sweep_dir = Path(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None
    overrides = list(hc.overrides.task) + _LOGGED_GROUP_OVERRIDES
    return PopulationJob(
        cfg,
        run_dir=Path(hc.runtime.output_dir),
        overrides=overrides,
        name_suffix=_job_suffix(cfg, overrides, read_parent(sweep_dir)),
        sweep_dir=sweep_dir,
        choices={k: str(v) for k, v in hc.runtime.choices.items() if v is not None},
    )


def enlist(cfg: DictConfig) -> PopulationJob:
    """``hydra/launcher=population``'s task function: the job, to be trained with others."""
    return _job(cfg)


def train_jobs_together(
    jobs: Sequence[PopulationJob], refill: Callable[[], PopulationJob | None] | None = None
) -> list[Value | BaseException]:
    """``hydra/launcher=population``: :func:`train_population`, each failed job's sentence
    said (and a refused one recorded under the sweep's parent run), as a sweep's job says it."""
    given: list[PopulationJob] = list(jobs)

    def next_job() -> PopulationJob | None:
        job = refill() if refill is not None else None
        if job is not None:
            given.append(job)
        return job

    outcomes = train_population(jobs, refill=next_job if refill is not None else None)
    for job, outcome in zip(given, outcomes, strict=True):
        if isinstance(outcome, tuple(_SENTENCE_ERRORS)):
            say(str(outcome))
            outcome.reported = True  # type: ignore[union-attr]
            parent = read_parent(job.sweep_dir)
            if parent is not None and isinstance(outcome, ConfigError):
                name = f"refused job {job.name_suffix}".strip()
                sweep.record_failed_job(parent, name, job.overrides, str(outcome))
    return outcomes


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _hydra_main(cfg: DictConfig) -> Value:
    job = _job(cfg)
    multirun = job.sweep_dir is not None
    sweep_dir, overrides, suffix = job.sweep_dir, job.overrides, job.name_suffix
    # resume=/rerun= run a logged run's groups: its preset is told once they are read.
    note = None if cfg.resume or cfg.rerun else _preset_note(HydraConfig.get().runtime.choices)
    if note and cfg.monitor.console and not multirun:
        Console(soft_wrap=True).print(note, markup=False, highlight=False, style="dim")
    try:
        return run(
            cfg,
            run_dir=job.run_dir,
            overrides=overrides,
            name_suffix=suffix,
            sweep_dir=sweep_dir,
            choices=job.choices,
        )
    except KeyboardInterrupt:
        if interrupts.orphaned:
            os._exit(1)  # the sweep is gone: nobody waits for this worker
        if multirun and _in_worker():
            return float("nan")  # the run is KILLED; the sweep process reports the interrupt
        raise
    except tuple(_SENTENCE_ERRORS) as exc:
        if isinstance(exc, ConfigError | store.DiskFullError):
            _discard_output_dir()
        say(str(exc))
        exc.reported = True  # type: ignore[attr-defined]
        if not multirun:
            sys.exit(_SENTENCE_ERRORS[_kind(exc)])
        parent = read_parent(sweep_dir)
        if parent is not None and isinstance(exc, ConfigError):
            sweep.record_failed_job(parent, f"refused job {suffix}".strip(), overrides, str(exc))
        raise  # this job fails; the sweep goes on


def _kind(exc: BaseException) -> type[BaseException]:
    return next(kind for kind in _SENTENCE_ERRORS if isinstance(exc, kind))


def _job_suffix(cfg: DictConfig, overrides: list[str], parent: dict[str, Any] | None) -> str:
    """What tells a sweep's runs apart: the trial number, or the swept values (short keys)."""
    if cfg.trial.number is not None:
        return f"t{cfg.trial.number}"
    if parent is None:
        return ""
    keys = list(parent.get("swept_keys", []))
    swept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in keys]
    return " ".join(short_override(o, keys) for o in swept)


# resume=/rerun= with values for the logged run's groups (update.alpha=0.1 for a TD(lambda)
# run): Hydra would check them against the default groups (update=reinforce has no alpha), so
# they are kept from Hydra and applied to the logged config, which has the run's own groups.
_LOGGED_GROUP_OVERRIDES: list[str] = []


def _defer_logged_group_values(argv: list[str]) -> list[str]:
    if not any(re.match(r"^(resume|rerun)=.", a) for a in argv):
        return argv
    group_values = re.compile(rf"^({'|'.join(logged.GROUPS)})\.[^=]+=")
    _LOGGED_GROUP_OVERRIDES[:] = [a for a in argv if group_values.match(a)]
    return [a for a in argv if a not in _LOGGED_GROUP_OVERRIDES]


def _with_env_preset(argv: list[str]) -> list[str]:
    """``env.id=X`` without ``env=...`` means a custom env: give it the generic ``env=custom``
    preset rather than the default CartPole one (16 envs, CartPole's tuned budget).

    ``+cluster=...`` goes last, wherever it was typed: Hydra applies appended configs in order,
    and the cluster's launcher must win over the one a sweep file (``+sweep=``) chooses."""
    ids = any(re.match(r"^env\.id=", a) for a in argv)
    groups = any(re.match(r"^[+~]?env=", a) for a in argv)
    argv = [*argv, "env=custom"] if ids and not groups else argv
    cluster = [a for a in argv if a.startswith("+cluster=")]
    return [a for a in argv if a not in cluster] + cluster


def _preset_note(choices: Mapping[str, Any]) -> str | None:
    """Which tuned preset (conf/tuned/) a composition of these group ``choices`` got, if any:
    the command line's (Hydra's ``tuned`` choice), or a logged run's groups (resume=, rerun=),
    whose preset is the one its own groups name."""
    from hydra.core.global_hydra import GlobalHydra

    groups = [choices.get(g) for g in logged.GROUPS]
    name = choices.get("tuned") or ("-".join(map(str, groups)) if all(groups) else None)
    if not name:
        return None
    if name in GlobalHydra.instance().config_loader().get_group_options("tuned"):
        return f"preset: tuned/{name}.yaml (hyperparameters and budget; the command line wins)"
    return f"preset: none for {name} (generic defaults; conf/tuned/{name}.yaml would be one)"


def init_project(folder: str) -> int:
    """``twrl-train --init DIR``: a starter research repository (see its README)."""
    from importlib.resources import files

    target = Path(folder).resolve()
    if target.exists() and any(target.iterdir()):
        say(f"--init {folder}: {target} is not empty; give a new or empty folder.")
        return 2
    template = files("twrl_exp") / "template"

    def copy(node: Any, to: Path) -> None:
        for child in node.iterdir():
            if child.name == "__pycache__":
                continue
            name = ".gitignore" if child.name == "gitignore" else child.name
            if child.is_dir():
                (to / name).mkdir(parents=True, exist_ok=True)
                copy(child, to / name)
            else:
                (to / name).write_bytes(child.read_bytes())

    target.mkdir(parents=True, exist_ok=True)
    copy(template, target)
    print(f"A research repository is ready in {target}: cd there and see README.md.")
    return 0


def cli() -> None:
    """``twrl-train``: ``python train.py`` for an installed twrl-exp, run in the user's project.

    The project folder (and the working directory) are importable, as ``python -m`` would make
    them, so a config's ``_target_: my_rules.MyRule`` or ``env.id=my_envs:Env-v0`` finds the
    user's own modules; the project's ``conf/`` joins the config search path unless ``-cd``
    names another. ``twrl-train --init DIR`` lays out a starter repository."""
    if len(sys.argv) >= 2 and sys.argv[1] == "--init":
        if len(sys.argv) != 3:
            say("usage: twrl-train --init DIR (a new or empty folder).")
            sys.exit(2)
        sys.exit(init_project(sys.argv[2]))
    from twrl_exp.monitor.writer import prestart
    from twrl_exp.paths import make_importable

    prestart()

    make_importable()
    main()


def _with_project_configs(argv: list[str]) -> list[str]:
    """The project's ``conf/`` (its own options, the experiments its sweeps saved) on the config
    search path, as ``-cd conf`` would put it, unless ``-cd`` names another."""
    from twrl_exp.paths import user_config_dir

    user = user_config_dir()
    given = any(a in ("-cd", "--config-dir") or a.startswith("--config-dir=") for a in argv)
    return ["--config-dir", str(user), *argv] if user is not None and not given else argv


def main() -> None:
    """``python train.py``: user errors in one sentence (exit 2), Ctrl-C as exit 130."""
    argv = _with_env_preset(_defer_logged_group_values(sys.argv[1:]))
    sys.argv[1:] = _with_project_configs(argv)
    # Composition errors reach us as exceptions (not Hydra's multi-line report), so they can be
    # told in one sentence; anything unexpected still shows its traceback.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    os.environ.setdefault(SWEEP_ENV, processes.identity())
    try:
        try:
            _hydra_main()
        finally:
            sweep.end_failed_sweep()  # a grid stopped by a failed job still gets its table
    except KeyboardInterrupt:
        interrupts.requested = True
    except tuple(_SENTENCE_ERRORS) as exc:
        if not getattr(exc, "reported", False):  # a sweep's job already said it
            say(str(exc))
        sys.exit(_SENTENCE_ERRORS[_kind(exc)])
    except Exception as exc:
        # Hydra's MissingConfigException is an OSError too: a composition error first.
        sentence = cli_errors.describe(exc)
        fault = store.folder_error(exc) if sentence is None and isinstance(exc, OSError) else None
        if fault is not None:  # Hydra could not make the output folder: full, read-only
            _discard_output_dir()
            say(str(fault))
            sys.exit(_SENTENCE_ERRORS[_kind(fault)])
        if sentence is None:
            raise
        say(sentence)
        sys.exit(2)
    if interrupts.requested:
        say(
            "the run is marked KILLED in MLflow and its last checkpoint is kept "
            f"({commands()[0]} resume=<run id> continues it).",
            style="yellow",
            label="interrupted",
        )
        sys.exit(130)


if __name__ == "__main__":
    main()
