"""The sweeper's config (``hydra/sweeper=twrl_optuna``), registered in Hydra's ConfigStore.

No ``from __future__ import annotations`` here: Hydra loads plugin modules outside
``sys.modules`` while scanning, where dataclasses cannot resolve string annotations.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class SamplerConf:
    name: str = "tpe"  # tpe | random | cmaes | grid | gp
    seed: int | None = 0
    n_startup_trials: int = 8  # random trials before TPE / GP model the space


@dataclass
class PrunerConf:
    name: str = "median"  # median | successive_halving | hyperband | none
    n_startup_trials: int = 5  # median: trials that are never pruned
    n_warmup_steps: int = 0  # median: env steps before pruning is considered
    interval_steps: int = 1
    reduction_factor: int = 3  # successive_halving, hyperband
    min_resource: int | None = None  # successive_halving, hyperband (env steps; null = auto)
    max_resource: int | None = None  # hyperband (env steps; null = auto)


@dataclass
class TwrlOptunaSweeperConf:
    _target_: str = "hydra_plugins.twrl_optuna_sweeper.sweeper.TwrlOptunaSweeper"
    study_name: str = "twrl"
    # Any Optuna storage: sqlite:///..., postgresql://..., or a journal file (*.log / *.jsonl).
    # null: a SQLite file per study, <project root>/optuna/<study_name>.db
    storage: str | None = None
    # null: each objective's own (maximize; minimize for seconds_to_solve); maximize | minimize;
    # with several objectives, a list of them, one per objective
    direction: Any = None
    n_trials: int = 20  # the study's total: re-running a killed sweep completes it
    n_jobs: int = 1  # trials launched together (parallel with hydra/launcher=joblib)
    # best_mean_return | final_eval_return | auc | neg_steps_to_solve | seconds_to_solve, or a
    # list of them: a multi-objective study (no pruner: pruner.name=none), whose Pareto front the
    # sweep reports and whose point `pick` chooses is saved as the experiment
    objective: Any = "best_mean_return"
    # Several objectives: the point of the Pareto front saved as +experiment=<study_name>: knee
    # (nearest the ideal point, each objective scaled over the front), an objective's name (the
    # front's best on it) or a trial number of the front
    pick: Any = "knee"
    seeds_per_trial: int = 1  # the objective is the mean over seeds seed, seed+1, ...
    sampler: SamplerConf = field(default_factory=SamplerConf)
    pruner: PrunerConf = field(default_factory=PrunerConf)
    params: dict[str, str] = field(default_factory=dict)  # key: Hydra sweep syntax
    heartbeat_interval: int = 10  # s; RDB storages: a job silent for grace_period is stale
    grace_period: int = 60
    # s; RDB storages: a database that does not answer (a restart) is waited for this long,
    # by the sweep and by each job, before the sweep stops (one sentence) or the job's trial is
    # failed as infrastructure (not counted). Keep it >= grace_period, so that a rerun finds
    # the trials a stopped sweep left RUNNING stale.
    storage_retry_s: int = 60
    experiment_dir: str | None = None  # where the best config is saved (null: conf/experiment)
    plots: bool = True  # Optuna's plots as artifacts of the sweep's parent MLflow run


ConfigStore.instance().store(
    group="hydra/sweeper", name="twrl_optuna", node=TwrlOptunaSweeperConf, provider="twrl-exp"
)
