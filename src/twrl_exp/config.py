"""Structured-config schemas: every config group is type-checked against one of these, and they
are the one home of every option's default.

Each dataclass holds the types, the default values and the ``_target_`` of the object an option
builds. They are registered in Hydra's ConfigStore under ``schema/<group>/<option>`` and pulled in
by each YAML file's defaults list (``conf/{model,policy,update}/<option>.yaml`` add no values of
their own), so a misspelt key or a wrongly typed value is refused at composition time, before
anything runs. The constructors they name take every option as a keyword argument without a
default: :func:`make` builds an option from Python with these defaults, as the command line does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.utils import get_object
from omegaconf import MISSING, OmegaConf

from twrl_exp import paths
from twrl_exp.choices import (
    RENAMED,
    Activation,
    Aggregate,
    Baseline,
    EnvBackend,
    EnvPreprocess,
    Objective,
    OptimizerName,
    QLoss,
    Schedule,
    TdBackend,
    TdTarget,
    Traces,
    ValueEstimator,
    Vectorization,
)
from twrl_exp.errors import ConfigError

# --------------------------------------------------------------------------- env
# Each conf/env/<option>.yaml is a preset of this one schema (its id, num_envs, ...).


@dataclass
class EnvConfig:
    """A Gymnasium vector env built from any registered id."""

    _target_: str = "twrl_exp.env.make_vector_env"
    _partial_: bool = True
    id: str = "CartPole-v1"  # any Gymnasium id, or my_pkg.envs:Foo-v0 (imports my_pkg.envs)
    num_envs: int = 8
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to gymnasium.make_vec
    max_episode_steps: int | None = None  # null: the id's registered limit
    reward_threshold: float | None = None  # null: the id's registered threshold
    # auto: a native numpy vector env where there is one (CartPole, MountainCar), else sync
    vectorization: Vectorization = Vectorization.auto
    # gymnasium, or envpool (EnvPool's C++ envs where it has the id: classic control, MuJoCo,
    # Atari; the same next-step autoreset and truncation; twrl-exp[envpool])
    backend: EnvBackend = EnvBackend.gymnasium
    # atari: the standard Atari stack (no-op starts, frame skip 4 with max-pooling, 84x84 grey,
    # FIRE on reset, 4 frames stacked; in training only, a lost life ends the episode and
    # rewards are clipped to their sign); twrl_exp.env.atari, twrl-exp[atari]
    preprocess: EnvPreprocess = EnvPreprocess.none
    # SB3's VecNormalize, held by the agent (twrl_exp.normalize): observations by their running
    # mean and std, rewards by the running std of the discounted return (the update's gamma),
    # both clipped to +-normalize_clip; saved with the agent, frozen at evaluation
    normalize_obs: bool = False
    normalize_reward: bool = False
    normalize_clip: float = 10.0


# --------------------------------------------------------------------------- model


@dataclass
class MLPConfig:
    """A multilayer perceptron (CleanRL's 64-64 tanh with orthogonal init)."""

    _target_: str = "twrl_exp.model.MLP"
    _partial_: bool = True
    name: str = "mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    activation: Activation = Activation.tanh
    critic_hidden_sizes: list[int] | None = None  # critics (a2c, ppo, sac, td3): null: as above
    dueling: bool = False  # dueling Q head, Q = V + A - mean(A) (update=dqn; Wang et al. 2016)
    # orthogonal init (hidden gain sqrt(2), output 0.01; critics' output 1); false: torch's
    # default init, as SB3's ortho_init=False in some of the zoo's presets
    ortho_init: bool = True


@dataclass
class CNNConfig:
    """A convolutional network over image observations (twrl_exp.model.cnn): a torso, then
    fully connected layers: the Nature DQN's (Mnih et al. 2015) on frames, MinAtar's (Young & Tian
    2019) on small grids."""

    _target_: str = "twrl_exp.model.CNN"
    _partial_: bool = True
    name: str = "cnn"
    arch: str = "auto"  # nature (84x84 frames) | impala (residual) | minatar (10x10 grids) |
    # auto: nature for images of at least 36x36, else minatar
    hidden_sizes: list[int] = field(default_factory=lambda: [512])
    activation: Activation = Activation.relu
    critic_hidden_sizes: list[int] | None = None  # a2c/ppo critics' layers (null: as above)
    channels_first: bool | None = None  # null: the observation's short end is its channels
    dueling: bool = False  # dueling Q head (update=dqn)


@dataclass
class TileCodingConfig:
    """Tile coding: ``num_tilings`` offset grids over a Box (Sutton & Barto 2018, sec. 9.5.4)."""

    _target_: str = "twrl_exp.model.TileCoding"
    _partial_: bool = True
    name: str = "tilecoding"
    num_tilings: int = 8
    tiles_per_dim: int = 8
    memory_size: int | None = None  # an int hashes tiles into that many weights (many dimensions)
    ranges: list[Any] | None = None  # [[low, high], ...] per dimension; null: observation bounds
    initial_value: float = 0.0  # initial weight; Q starts at num_tilings * initial_value


@dataclass
class TableConfig:
    """One weight per (discrete state, action)."""

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
    """A diagonal Gaussian with a state-independent standard deviation."""

    _target_: str = "twrl_exp.policy.Normal"
    _partial_: bool = True
    name: str = "normal"
    init_std: float = 1.0
    learn_std: bool = True  # false keeps the standard deviation fixed at init_std
    min_std: float = 1e-3
    # gSDE (Raffin et al. 2022): noise z(s) @ W from the model's last hidden layer z, W's scale
    # starting at init_std; new W every sde_sample_freq vector steps and after each update (-1:
    # only after updates). model=mlp only.
    use_sde: bool = False
    sde_sample_freq: int = -1


@dataclass
class EGreedyConfig:
    """Epsilon-greedy; a constant 0.1 by default (Sutton & Barto 2018, ex. 6.6)."""

    _target_: str = "twrl_exp.policy.EGreedy"
    _partial_: bool = True
    name: str = "egreedy"
    epsilon: float = 0.1
    decay: float = 1.0  # epsilon * decay**episodes (per finished episode) ...
    min_epsilon: float = 0.0
    exploration_fraction: float | None = None  # ... or linear per env step, epsilon to
    final_epsilon: float = 0.05  # final_epsilon over this fraction of train.max_env_steps (DQN)


@dataclass
class TanhNormalConfig:
    """A tanh-squashed Gaussian with state-dependent std (SAC)."""

    _target_: str = "twrl_exp.policy.TanhNormal"
    _partial_: bool = True
    name: str = "tanh_normal"
    # gSDE (Raffin et al. 2022), as policy=normal's; init_std: the noise matrix's initial scale
    # (SB3's SAC log_std_init -3; without gSDE the std is the model's output).
    use_sde: bool = False
    sde_sample_freq: int = -1
    init_std: float = 0.049787068367863944  # exp(-3)


@dataclass
class DeterministicConfig:
    """``tanh(model(s))`` explored with Gaussian noise (TD3; CleanRL's and the zoo's 0.1)."""

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
# Learning-rate schedules share one vocabulary: lr_schedule (constant | linear: from lr to
# lr * lr_final_fraction at train.max_env_steps) and lr_final_fraction; an entropy bonus is
# ent_coef. RENAMED below lists the spellings these replaced.


@dataclass
class ReinforceConfig:
    """REINFORCE (Williams 1992) on whole episodes; our own defaults, which the tuned CartPole
    and Pendulum presets (conf/tuned/*-reinforce.yaml) were validated with."""

    _target_: str = "twrl_exp.update.reinforce.reinforce"
    _partial_: bool = True
    name: str = "reinforce"
    gamma: float = 0.99
    steps_per_batch: int = 2000  # env steps of whole episodes per gradient step
    # none | average (time-dependent running mean return) | value (a learned state value)
    baseline: Baseline = Baseline.average
    baseline_decay: float = 0.9
    value_lr: float = 1e-2  # learned state-value baseline (baseline=value)
    value_epochs: int = 1
    normalize_advantages: bool = True
    ent_coef: float = 0.0
    max_grad_norm: float | None = None
    optimizer: OptimizerName = OptimizerName.adam
    lr: float = 5e-3
    weight_decay: float = 0.0
    # passed to the optimizer, e.g. {betas: [0.9, 0.999]}, {momentum: 0.9}, {alpha: 0.99}
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    lr_schedule: Schedule = Schedule.constant
    lr_final_fraction: float = 0.0


@dataclass
class TdLambdaConfig:
    """Linear TD(lambda) control with eligibility traces (Sutton & Barto 2018, ch. 12)."""

    _target_: str = "twrl_exp.update.td_lambda.td_lambda"
    _partial_: bool = True
    name: str = "td_lambda"
    target: TdTarget = TdTarget.sarsa  # sarsa | q_learning (Watkins) | expected_sarsa
    gamma: float = 1.0
    lam: float = 0.9
    alpha: float = 0.5  # step size of the whole function: alpha / num_tilings per tile
    traces: Traces = Traces.replacing
    # numba (pip install "twrl-exp[fast]"): the same step compiled, identical results;
    # auto: numba if installed, else numpy
    backend: TdBackend = TdBackend.auto


@dataclass
class NoUpdateConfig:
    _target_: str = "twrl_exp.update.none.no_update"
    _partial_: bool = True
    name: str = "none"


@dataclass
class A2CConfig:
    """Advantage actor-critic (Mnih et al. 2016) on n-step rollouts; SB3's A2C defaults
    (RMSprop with alpha 0.99 and eps 1e-5, lr 7e-4, 5 steps, no entropy bonus)."""

    _target_: str = "twrl_exp.update.actor_critic.a2c"
    _partial_: bool = True
    name: str = "a2c"
    n_steps: int = 5  # rollout length per env (a rollout is n_steps x env.num_envs)
    gamma: float = 0.99
    gae_lambda: float = 1.0  # 1: n-step returns
    value_estimator: ValueEstimator = ValueEstimator.gae  # gae | vtrace (Espeholt et al. 2018)
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float | None = 0.5
    optimizer: OptimizerName = OptimizerName.rmsprop
    lr: float = 7e-4
    optimizer_kwargs: dict[str, Any] = field(default_factory=lambda: {"alpha": 0.99, "eps": 1e-5})
    lr_schedule: Schedule = Schedule.constant
    lr_final_fraction: float = 0.0
    normalize_advantages: bool = False


@dataclass
class PPOConfig:
    """Proximal policy optimisation (Schulman et al. 2017); CleanRL's ppo.py defaults (Adam with
    eps 1e-5, lr 2.5e-4 annealed linearly to 0, entropy bonus 0.01), except that the value
    loss is not clipped (SB3's and the zoo's default; CleanRL clips it: clip_vloss=true)."""

    _target_: str = "twrl_exp.update.actor_critic.ppo"
    _partial_: bool = True
    name: str = "ppo"
    n_steps: int = 128  # rollout length per env (a rollout is n_steps x env.num_envs)
    gamma: float = 0.99
    gae_lambda: float = 0.95
    value_estimator: ValueEstimator = ValueEstimator.gae  # gae | vtrace (Espeholt et al. 2018)
    update_epochs: int = 4
    num_minibatches: int = 4
    clip_coef: float = 0.2
    clip_schedule: Schedule = Schedule.constant  # linear: to 0 at train.max_env_steps
    # Clip the value loss (Andrychowicz et al. 2021 found it rarely helps) to within
    # clip_vloss_coef of the rollout's values: its own range, never annealed (null: clip_coef)
    clip_vloss: bool = False
    clip_vloss_coef: float | None = None
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    max_grad_norm: float | None = 0.5
    target_kl: float | None = None  # stop an update's epochs once the approximate KL exceeds it
    optimizer: OptimizerName = OptimizerName.adam
    lr: float = 2.5e-4
    optimizer_kwargs: dict[str, Any] = field(default_factory=lambda: {"eps": 1e-5})
    lr_schedule: Schedule = Schedule.linear
    lr_final_fraction: float = 0.0
    normalize_advantages: bool = True


@dataclass
class DQNConfig:
    """Deep Q-learning (Mnih et al. 2015). CleanRL's dqn.py replay and target settings (buffer
    1e4, batch 128, learning from 1e4 steps, every 10 steps, target copied every 500, lr 2.5e-4);
    unlike dqn.py (squared loss, no clipping, max target) a Huber loss clipped at a gradient norm
    of 10, as SB3, and Double DQN (van Hasselt et al. 2016). Exploration is the policy's:
    policy=egreedy's constant 0.1 unless set (dqn.py anneals 1 to 0.05 over half the budget:
    policy.epsilon=1 policy.exploration_fraction=0.5)."""

    _target_: str = "twrl_exp.update.dqn.dqn"
    _partial_: bool = True
    name: str = "dqn"
    buffer_size: int = 10_000
    batch_size: int = 128
    learning_starts: int = 10_000  # env steps before learning starts
    train_freq: int = 10  # learn every N env steps ...
    gradient_steps: int = 1  # ... this many batches (-1: as many as env steps since)
    n_step: int = 1
    gamma: float = 0.99
    lr: float = 2.5e-4
    optimizer: OptimizerName = OptimizerName.adam
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    target_update_interval: int = 500  # env steps between target updates ...
    tau: float = 1.0  # ... by Polyak averaging with tau (1: a hard copy)
    double_q: bool = True
    loss: QLoss = QLoss.huber
    max_grad_norm: float | None = 10.0
    # proportional prioritised replay (Schaul et al. 2016): priorities (|TD error| + eps)^alpha,
    # importance weights with beta annealed from priority_beta to 1 over train.max_env_steps
    prioritized: bool = False
    priority_alpha: float = 0.6
    priority_beta: float = 0.4
    priority_eps: float = 1e-6


@dataclass
class SACConfig:
    """Soft actor-critic with twin critics and automatic temperature (Haarnoja et al. 2018);
    CleanRL's sac_continuous_action.py defaults (actor lr 3e-4; critics and temperature q_lr
    1e-3; learning from 5e3 steps; batch 256; tau 0.005), except that the actor steps once per
    critic step (policy_delay 1, as SB3) where CleanRL steps it twice every second one."""

    _target_: str = "twrl_exp.update.off_policy_ac.sac"
    _partial_: bool = True
    name: str = "sac"
    buffer_size: int = 1_000_000
    batch_size: int = 256
    learning_starts: int = 5_000
    # uniformly random actions until learning_starts (SB3, CleanRL); false: the policy's own
    random_start: bool = True
    train_freq: int = 1
    gradient_steps: int = 1
    gamma: float = 0.99
    tau: float = 0.005
    lr: float = 3e-4  # actor
    q_lr: float | None = 1e-3  # critics and temperature (null: lr)
    ent_coef: str = "auto"  # auto (tuned to target_entropy) or a fixed temperature
    target_entropy: float | None = None  # null: -dim(actions)
    policy_delay: int = 1
    max_grad_norm: float | None = None


@dataclass
class TD3Config:
    """Twin delayed DDPG (Fujimoto et al. 2018); CleanRL's td3_continuous_action.py defaults
    (lr 3e-4 for actor and critics, learning from 25e3 steps, batch 256, target noise 0.2
    clipped at 0.5, actor and targets every second step). SB3 and the zoo use lr 1e-3 (the
    tuned Pendulum preset does)."""

    _target_: str = "twrl_exp.update.off_policy_ac.td3"
    _partial_: bool = True
    name: str = "td3"
    buffer_size: int = 1_000_000
    batch_size: int = 256
    learning_starts: int = 25_000
    # uniformly random actions until learning_starts (SB3, CleanRL); false: the policy's own
    random_start: bool = True
    train_freq: int = 1
    gradient_steps: int = 1
    gamma: float = 0.99
    tau: float = 0.005
    lr: float = 3e-4  # actor (and critics unless q_lr)
    q_lr: float | None = None  # critics (null: lr)
    policy_delay: int = 2  # critic updates per actor (and target) update
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
    # More observers, each built from its `_target_` (twrl_exp.monitor.observers): chosen with
    # +monitor/observers=<name> (conf/monitor/observers/<name>.yaml, whose key is <name>)
    observers: dict[str, Any] = field(default_factory=dict)


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

    # twrl_exp.objectives.OBJECTIVES: one name, or a list of names (a multi-objective study's
    # trial returns one value per objective)
    objective: Any = Objective.best_mean_return.value
    seeds: int = 1  # seeds seed, seed+1, ...; the objective is their aggregate:
    # mean, iqm, or ci_low (the lower end of the 95% bootstrap interval of their IQM)
    aggregate: Aggregate = Aggregate.mean
    # seeds > 1 of a rule with a population form (twrl_exp.population.VECTORISABLE:
    # reinforce, ppo, a2c, dqn, sac, td3 with model=mlp) train together in one process, each
    # its own run; false: one by one
    population: bool = True
    # torch threads while a population trains (its batched matmuls share cores well; a single
    # run's small ones do not: torch_threads); null: $OMP_NUM_THREADS where set (a Ray task's
    # CPUs), else every core this process may use
    population_threads: int | None = None
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
    # where the networks learn: cpu (the fastest for classic control's small MLPs), cuda,
    # cuda:N, or auto (CUDA where torch sees a GPU); populations train on the CPU
    device: str = "cpu"
    resume: str | None = None  # an MLflow run id: continue that run from its checkpoint
    rerun: str | None = None  # an MLflow run id: a new run with exactly that run's config


GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "model": {
        "mlp": MLPConfig,
        "cnn": CNNConfig,
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


# Old spellings of options, refused in one sentence naming the new key (cli_errors) and
# translated, with the same meaning, in the logged configs of older runs (logged.py):
# old key -> (new key, old value -> new value).


def renamed(key: str, value: str | None = None) -> str | None:
    """One sentence refusing the old spelling ``key`` (with its ``value``, if given) that names
    the new key, or None if ``key`` is not an old spelling."""
    if key not in RENAMED:
        return None
    new, values = RENAMED[key]
    if value is None:
        return f"{key} was renamed {new}: write {new} instead."
    return f"{key} was renamed {new}: write {new}={values.get(value, value)}."


# Keys added after runs were logged, with what those runs did: a logged config without the key
# gets this value, not today's default or preset (a preset may turn it on). By group, the
# options that have the key, and its value before it existed.
ADDED: dict[str, tuple[frozenset[str], Any]] = {
    "policy.use_sde": (frozenset({"normal", "tanh_normal"}), False),
    "policy.sde_sample_freq": (frozenset({"normal", "tanh_normal"}), -1),
    "model.ortho_init": (frozenset({"mlp"}), True),
}


def upgrade_logged(values: dict[Any, Any]) -> None:
    """Translate old spellings in a logged config (plain containers), in place, to their new
    keys with the same meaning (a new key already there wins), and give keys added since
    (:data:`ADDED`) the value that meant what the run did."""
    for old, (new, spellings) in RENAMED.items():
        group, key = old.split(".")
        node = values.get(group)
        if isinstance(node, dict) and key in node:
            value = node.pop(key)
            translated = spellings.get(value, value) if isinstance(value, str) else value
            node.setdefault(new.split(".")[1], translated)
    for dotted, (options, before) in ADDED.items():
        group, key = dotted.split(".")
        node = values.get(group)
        if isinstance(node, dict) and node.get("name") in options:
            node.setdefault(key, before)


_NOT_ARGUMENTS = ("_target_", "_partial_", "name")


def schema(group: str, option: str | None = None) -> type:
    """The dataclass of ``group=option``; every env option is a preset of :class:`EnvConfig`."""
    if group == "env":
        return EnvConfig
    options = GROUP_SCHEMAS.get(group, {})
    if option not in options:
        valid = ", ".join(options) or "none"
        raise ConfigError(f"{group}={option} is not an option: choose one of {valid}.")
    return options[option]


def defaults(group: str, option: str | None = None) -> dict[str, Any]:
    """The defaults of ``group=option`` as its constructor's keyword arguments (fresh copies)."""
    node = schema(group, option)()
    return {f.name: getattr(node, f.name) for f in fields(node) if f.name not in _NOT_ARGUMENTS}


def make(group: str, option: str | None = None, /, **kwargs: Any) -> Any:
    """``group=option`` built from Python as the command line builds it: its constructor called
    with the schema's defaults, ``kwargs`` replacing them and adding what is known only at run
    time, e.g. ``make("policy", "egreedy", action_space=space, epsilon=0.2)``. An update also
    takes the parts :func:`twrl_exp.build.build_agent` gives it: ``model``, ``make_model``,
    ``policy``, ``num_envs``, ``total_env_steps`` (``train.max_env_steps``) and ``seed``.
    """
    for key, value in kwargs.items():
        refusal = renamed(f"{group}.{key}", value if isinstance(value, str) else None)
        if refusal is not None:
            raise ConfigError(refusal)
    node: Any = schema(group, option)()
    return get_object(node._target_)(**{**defaults(group, option), **kwargs})


USER_GROUPS = ("env", "model", "policy", "update", "monitor")
APPENDED_GROUPS = ("sweep", "experiment", "cluster", "monitor/observers")  # +group=option


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
