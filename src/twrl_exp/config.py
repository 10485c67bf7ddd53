"""Structured-config schemas: every config group is type-checked against one of these.

The YAML files under ``conf/`` hold values; these dataclasses hold the types, the defaults and the
``_target_`` of the object each option builds. They are registered in Hydra's ConfigStore under
``schema/<group>/<option>`` and pulled in by each YAML file's defaults list, so a misspelt key or a
wrongly typed value is refused at composition time, before anything runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from twrl_exp import paths


class Vectorization(StrEnum):
    auto = "auto"
    native = "native"
    sync = "sync"
    async_ = "async"


class Activation(StrEnum):
    tanh = "tanh"
    relu = "relu"
    elu = "elu"
    gelu = "gelu"
    sigmoid = "sigmoid"


class Baseline(StrEnum):
    none = "none"
    average = "average"
    value = "value"


class OptimizerName(StrEnum):
    adam = "adam"
    rmsprop = "rmsprop"
    sgd = "sgd"


class LrDecay(StrEnum):
    none = "none"
    linear = "linear"


class TdTarget(StrEnum):
    sarsa = "sarsa"
    q_learning = "q_learning"
    expected_sarsa = "expected_sarsa"


class Objective(StrEnum):
    best_mean_return = "best_mean_return"
    final_eval_return = "final_eval_return"
    auc = "auc"
    neg_steps_to_solve = "neg_steps_to_solve"


class Traces(StrEnum):
    replacing = "replacing"
    accumulating = "accumulating"


class TdBackend(StrEnum):
    auto = "auto"
    numpy = "numpy"
    numba = "numba"


class Schedule(StrEnum):
    constant = "constant"
    linear = "linear"


class QLoss(StrEnum):
    huber = "huber"
    mse = "mse"


# --------------------------------------------------------------------------- env


@dataclass
class EnvConfig:
    """A Gymnasium vector env built from any registered id."""

    _target_: str = "twrl_exp.env.make_vector_env"
    _partial_: bool = True
    id: str = "CartPole-v1"
    num_envs: int = 8
    kwargs: dict[str, Any] = field(default_factory=dict)
    max_episode_steps: int | None = None
    reward_threshold: float | None = None
    vectorization: Vectorization = Vectorization.auto


# --------------------------------------------------------------------------- model


@dataclass
class MLPConfig:
    _target_: str = "twrl_exp.model.MLP"
    _partial_: bool = True
    name: str = "mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    activation: Activation = Activation.tanh
    critic_hidden_sizes: list[int] | None = None  # critics an update builds (null: hidden_sizes)
    dueling: bool = False  # Q = V + A - mean(A) (update=dqn)


@dataclass
class TileCodingConfig:
    _target_: str = "twrl_exp.model.TileCoding"
    _partial_: bool = True
    name: str = "tilecoding"
    num_tilings: int = 8
    tiles_per_dim: int = 8
    memory_size: int | None = None
    ranges: list[Any] | None = None  # [[low, high], ...]; checked by the model
    initial_value: float = 0.0


@dataclass
class TableConfig:
    _target_: str = "twrl_exp.model.Table"
    _partial_: bool = True
    name: str = "table"
    initial_value: float = 0.0


@dataclass
class NoModelConfig:
    _target_: str = "twrl_exp.model.NoModel"
    _partial_: bool = True
    name: str = "none"


# --------------------------------------------------------------------------- policy


@dataclass
class CategoricalConfig:
    _target_: str = "twrl_exp.policy.Categorical"
    _partial_: bool = True
    name: str = "categorical"


@dataclass
class NormalConfig:
    _target_: str = "twrl_exp.policy.Normal"
    _partial_: bool = True
    name: str = "normal"
    init_std: float = 1.0
    learn_std: bool = True
    min_std: float = 1e-3


@dataclass
class EGreedyConfig:
    _target_: str = "twrl_exp.policy.EGreedy"
    _partial_: bool = True
    name: str = "egreedy"
    epsilon: float = 0.1
    decay: float = 1.0  # per finished episode ...
    min_epsilon: float = 0.0
    exploration_fraction: float | None = None  # ... or linear per env step over this fraction
    final_epsilon: float = 0.05  # of train.max_env_steps, from epsilon to final_epsilon


@dataclass
class TanhNormalConfig:
    """A tanh-squashed Gaussian with state-dependent std (SAC)."""

    _target_: str = "twrl_exp.policy.TanhNormal"
    _partial_: bool = True
    name: str = "tanh_normal"


@dataclass
class DeterministicConfig:
    """``tanh(model(s))`` explored with Gaussian noise (TD3)."""

    _target_: str = "twrl_exp.policy.Deterministic"
    _partial_: bool = True
    name: str = "deterministic"
    exploration_noise: float = 0.1  # std of the exploration noise, in [-1, 1] action units


@dataclass
class GreedyConfig:
    _target_: str = "twrl_exp.policy.Greedy"
    _partial_: bool = True
    name: str = "greedy"


@dataclass
class RandomConfig:
    _target_: str = "twrl_exp.policy.RandomPolicy"
    _partial_: bool = True
    name: str = "random"


# --------------------------------------------------------------------------- update


@dataclass
class ReinforceConfig:
    """REINFORCE (Williams 1992) on whole episodes."""

    _target_: str = "twrl_exp.update.reinforce.reinforce"
    _partial_: bool = True
    name: str = "reinforce"
    gamma: float = 0.99
    steps_per_batch: int = 2000
    baseline: Baseline = Baseline.average
    baseline_decay: float = 0.9
    value_lr: float = 1e-2
    value_epochs: int = 1
    normalize_advantages: bool = True
    entropy_coef: float = 0.0
    max_grad_norm: float | None = None
    optimizer: OptimizerName = OptimizerName.adam
    lr: float = 5e-3
    weight_decay: float = 0.0
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    lr_decay: LrDecay = LrDecay.none
    final_lr_fraction: float = 0.0


@dataclass
class TdLambdaConfig:
    """Linear TD(lambda) control with eligibility traces (Sutton & Barto 2018, ch. 12)."""

    _target_: str = "twrl_exp.update.td_lambda.td_lambda"
    _partial_: bool = True
    name: str = "td_lambda"
    target: TdTarget = TdTarget.sarsa
    gamma: float = 1.0
    lam: float = 0.9
    alpha: float = 0.5
    traces: Traces = Traces.replacing
    backend: TdBackend = TdBackend.auto


@dataclass
class NoUpdateConfig:
    _target_: str = "twrl_exp.update.none.no_update"
    _partial_: bool = True
    name: str = "none"


@dataclass
class A2CConfig:
    """Advantage actor-critic (Mnih et al. 2016) on n-step rollouts; SB3's defaults."""

    _target_: str = "twrl_exp.update.actor_critic.a2c"
    _partial_: bool = True
    name: str = "a2c"
    n_steps: int = 5
    gamma: float = 0.99
    gae_lambda: float = 1.0
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float | None = 0.5
    optimizer: OptimizerName = OptimizerName.rmsprop
    lr: float = 7e-4
    optimizer_kwargs: dict[str, Any] = field(default_factory=lambda: {"alpha": 0.99, "eps": 1e-5})
    lr_schedule: Schedule = Schedule.constant
    normalize_advantages: bool = False


@dataclass
class PPOConfig:
    """Proximal policy optimisation (Schulman et al. 2017); CleanRL's ppo.py defaults."""

    _target_: str = "twrl_exp.update.actor_critic.ppo"
    _partial_: bool = True
    name: str = "ppo"
    n_steps: int = 128
    gamma: float = 0.99
    gae_lambda: float = 0.95
    update_epochs: int = 4
    num_minibatches: int = 4
    clip_coef: float = 0.2
    clip_schedule: Schedule = Schedule.constant
    clip_vloss: bool = True
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float | None = 0.5
    target_kl: float | None = None
    optimizer: OptimizerName = OptimizerName.adam
    lr: float = 2.5e-4
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    lr_schedule: Schedule = Schedule.linear
    normalize_advantages: bool = True


@dataclass
class DQNConfig:
    """Deep Q-learning with replay, target network, Double DQN, n-step returns; CleanRL's."""

    _target_: str = "twrl_exp.update.dqn.dqn"
    _partial_: bool = True
    name: str = "dqn"
    buffer_size: int = 10_000
    batch_size: int = 128
    learning_starts: int = 10_000
    train_freq: int = 10
    gradient_steps: int = 1
    n_step: int = 1
    gamma: float = 0.99
    lr: float = 2.5e-4
    optimizer: OptimizerName = OptimizerName.adam
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    target_update_interval: int = 500
    tau: float = 1.0
    double_q: bool = True
    loss: QLoss = QLoss.huber
    max_grad_norm: float | None = 10.0


@dataclass
class SACConfig:
    """Soft actor-critic with twin critics and automatic temperature (Haarnoja et al. 2018)."""

    _target_: str = "twrl_exp.update.off_policy_ac.sac"
    _partial_: bool = True
    name: str = "sac"
    buffer_size: int = 1_000_000
    batch_size: int = 256
    learning_starts: int = 5_000
    train_freq: int = 1
    gradient_steps: int = 1
    gamma: float = 0.99
    tau: float = 0.005
    lr: float = 3e-4
    q_lr: float | None = 1e-3
    ent_coef: str = "auto"  # auto (tuned to target_entropy) or a fixed number
    target_entropy: float | None = None  # null: -dim(actions)
    policy_delay: int = 1
    max_grad_norm: float | None = None


@dataclass
class TD3Config:
    """Twin delayed DDPG (Fujimoto et al. 2018)."""

    _target_: str = "twrl_exp.update.off_policy_ac.td3"
    _partial_: bool = True
    name: str = "td3"
    buffer_size: int = 1_000_000
    batch_size: int = 256
    learning_starts: int = 25_000
    train_freq: int = 1
    gradient_steps: int = 1
    gamma: float = 0.99
    tau: float = 0.005
    lr: float = 3e-4
    q_lr: float | None = None
    policy_delay: int = 2
    target_policy_noise: float = 0.2
    target_noise_clip: float = 0.5
    max_grad_norm: float | None = None


# --------------------------------------------------------------------------- monitor


@dataclass
class MlflowConfig:
    enabled: bool = True
    tracking_uri: str | None = None
    experiment: str | None = None
    run_name: str | None = None
    log_model: bool = True
    system_metrics: bool = True  # CPU, memory, disk and network every 10 s (MLflow's monitor)
    ui_url: str | None = None  # where `mlflow ui` serves (null: the tracking server, else :5000)
    flush_every_s: float = 1.0  # metric rows leave the training process this often
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class CheckpointConfig:
    enabled: bool = True
    every_steps: int | None = 50_000
    every_s: float | None = 60.0  # also every minute of wall time: a killed run loses little


@dataclass
class VideoConfig:
    enabled: bool = True
    every_evals: int = 0  # also record every N-th evaluation (0: only the final policy)
    final: bool = True
    fps: int = 30
    max_frames: int = 1000


@dataclass
class MonitorConfig:
    console: bool = True
    progress_every_s: float = 10.0  # a plain progress line this often when not on a terminal
    curve: bool = True  # learning-curve PNG artifact
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    video: VideoConfig = field(default_factory=VideoConfig)


# --------------------------------------------------------------------------- top level


@dataclass
class TrainLoopConfig:
    max_env_steps: int | None = 200_000
    max_episodes: int | None = None
    stop_when_solved: bool = False
    solve_window: int = 100


@dataclass
class EvalConfig:
    every_steps: int | None = 25_000
    episodes: int = 10
    num_envs: int = 5
    final: bool = True
    deterministic: bool = True  # greedy actions; false: sampled, as stochastic policies act


@dataclass
class PathsConfig:
    """Where a run's data goes (``paths.*``); defaults: :func:`twrl_exp.paths.project_dir`."""

    root: str = "${twrl_project:}"  # the project: $TWRL_PROJECT_ROOT, the git repo around cwd, cwd
    mlflow_uri: str | None = None  # null: $MLFLOW_TRACKING_URI, else sqlite:///<root>/mlflow.db
    # Optuna sweeps' storage URL (postgresql+psycopg://...); null: $TWRL_OPTUNA_STORAGE, else a
    # SQLite file per study, <optuna_dir>/<study>.db
    optuna_storage: str | None = None
    optuna_dir: str = "${paths.root}/optuna"
    experiment_dir: str = "${paths.root}/conf/experiment"  # sweeps' best trials, +experiment=


@dataclass
class TrialConfig:
    """What a run returns, and (set by the Optuna sweeper) which trial of which study it is."""

    objective: Objective = Objective.best_mean_return
    seeds: int = 1  # seeds seed, seed+1, ...; the objective is their mean
    study_name: str | None = None
    storage: str | None = None
    number: int | None = None
    heartbeat_interval: int | None = None


@dataclass
class RunConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    model: Any = MISSING
    policy: Any = MISSING
    update: Any = MISSING
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    trial: TrialConfig = field(default_factory=TrialConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0
    torch_threads: int = 1
    resume: str | None = None  # an MLflow run id: continue that run from its checkpoint
    rerun: str | None = None  # an MLflow run id: a new run with exactly that run's config


GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "model": {
        "mlp": MLPConfig,
        "tilecoding": TileCodingConfig,
        "table": TableConfig,
        "none": NoModelConfig,
    },
    "policy": {
        "categorical": CategoricalConfig,
        "normal": NormalConfig,
        "egreedy": EGreedyConfig,
        "greedy": GreedyConfig,
        "random": RandomConfig,
        "tanh_normal": TanhNormalConfig,
        "deterministic": DeterministicConfig,
    },
    "update": {
        "reinforce": ReinforceConfig,
        "td_lambda": TdLambdaConfig,
        "none": NoUpdateConfig,
        "a2c": A2CConfig,
        "ppo": PPOConfig,
        "dqn": DQNConfig,
        "sac": SACConfig,
        "td3": TD3Config,
    },
}


USER_GROUPS = ("env", "model", "policy", "update", "monitor")
APPENDED_GROUPS = ("sweep", "experiment", "cluster")  # chosen with +group=option


def groups_help() -> str:
    """The ``--help`` list of config groups: the ones a user picks, not internal ones."""
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    lines = [f"{g}=  {', '.join(loader.get_group_options(g))}" for g in USER_GROUPS]
    for group in APPENDED_GROUPS:
        options = loader.get_group_options(group)
        if options:
            lines.append(f"+{group}=  {', '.join(options)}")
    lines.append(f"hydra/launcher=  {', '.join(loader.get_group_options('hydra/launcher'))}")
    return "\n".join(lines)


def _cluster_uri(key: str) -> str:
    from twrl_exp.cluster import uri

    return uri(key)


def register_configs() -> None:
    """Register every schema in Hydra's ConfigStore, and the ``twrl_pid`` resolver that makes
    run and sweep folders unique among processes started in the same second (idempotent)."""
    if not OmegaConf.has_resolver("twrl_project"):
        OmegaConf.register_new_resolver("twrl_project", lambda: str(paths.project_dir()))
    if not OmegaConf.has_resolver("twrl_pid"):
        # Cached like Hydra's own ${now:}: a launcher's workers get the sweep config with the
        # resolver cache of the process that launched them (Hydra copies it into every job's
        # config), so all of a sweep's jobs compute the sweep's folder, not one of their own.
        OmegaConf.register_new_resolver("twrl_pid", os.getpid, use_cache=True)
    if not OmegaConf.has_resolver("twrl_groups"):
        OmegaConf.register_new_resolver("twrl_groups", groups_help)
    if not OmegaConf.has_resolver("twrl_cluster"):  # +cluster=local: the local services' URIs
        OmegaConf.register_new_resolver("twrl_cluster", _cluster_uri)
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for group, options in GROUP_SCHEMAS.items():
        for name, node in options.items():
            cs.store(group=f"schema/{group}", name=name, node=node)
    register_checkout_sweeps(cs)


def register_checkout_sweeps(cs: ConfigStore) -> None:
    """``+sweep=<name>`` for the checkout's ``sweeps/*.yaml`` (a wheel has them as files in
    ``twrl_exp/conf/sweep``): the repository keeps sweeps at its root, with no symlink that a
    wheel or a Windows checkout would lose."""
    root = paths.source_root()
    if root is None or (root / "conf" / "sweep").exists():
        return
    for file in sorted((root / "sweeps").glob("*.yaml")):
        package = "_global_" if "# @package _global_" in file.read_text().splitlines()[0] else None
        cs.store(group="sweep", name=file.stem, node=OmegaConf.load(file), package=package)
