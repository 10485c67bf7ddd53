"""From a composed config to live objects, in one readable order: env -> policy -> model ->
update -> agent. Every incompatibility is found here, before the first env step."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from twrl_exp import devices, objectives, seeding
from twrl_exp.agent import Agent
from twrl_exp.env import resolve_spec
from twrl_exp.errors import ConfigError, describe_space
from twrl_exp.normalize import Normalizer
from twrl_exp.paths import project_dir, source_root
from twrl_exp.runner import Monitor, Runner


def project_root() -> Path:
    """The checkout twrl-exp runs from (train.py, conf/, notebooks/), else the user's project."""
    return source_root() or project_dir()


def _partial(node: DictConfig) -> Any:
    """Instantiate a ``_partial_`` group node, leaving out its descriptive ``name``."""
    _check_keys(node)
    params = {k: node[k] for k in node if k != "name"}
    return instantiate(OmegaConf.create(params), _convert_="all")


def _check_keys(node: DictConfig) -> None:
    """A key added with ``+group.key=`` that the option's schema lacks is refused in one
    sentence here, not as a TypeError when the option is built."""
    from dataclasses import fields

    from twrl_exp import config

    group = str(node._key())
    option = node.get("name") if group != "env" else None
    try:
        known = {f.name for f in fields(config.schema(group, option))}
    except ConfigError:  # a user's own option: its constructor decides
        return
    extra = [str(k) for k in node if k not in known]
    if extra:
        key = f"{group}.{extra[0]}"
        valid = ", ".join(k for k in sorted(known) if not k.startswith("_"))
        raise ConfigError(
            config.renamed(key)
            or f"{key} is not a key of {group}{f' ({option})' if option else ''}: valid keys are "
            f"{valid}."
        )


@dataclass
class Built:
    env: Any
    eval_env: Any
    agent: Agent[Any]
    reward_threshold: float | None
    env_id: str

    def close(self) -> None:
        self.env.close()
        if self.eval_env is not None:
            self.eval_env.close()


def _nonfinite(node: Any, prefix: str = "") -> tuple[str, float] | None:
    """The first float in a config container that is NaN or infinite, with its key."""
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        if isinstance(node, float) and not math.isfinite(node):
            return prefix, node
        return None
    for key, value in items:
        found = _nonfinite(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None


MAX_SEED = seeding.MAX_SEED


def check_run_config(cfg: DictConfig) -> None:
    """Values that no schema type can rule out: ranges, and no NaN or infinity anywhere."""
    if cfg.resume and cfg.rerun:
        raise ConfigError(
            f"resume={cfg.resume} and rerun={cfg.rerun} cannot be combined: resume continues a "
            "run from its checkpoint, rerun starts a new one with its config; give one."
        )
    found = _nonfinite(OmegaConf.to_container(cfg, resolve=True))
    if found is not None:
        raise ConfigError(f"{found[0]}={found[1]} is invalid: it must be a finite number.")
    objectives.names(cfg.trial.objective)  # one sentence for an unknown one
    m = cfg.monitor
    checks = [
        # NumPy's and PyTorch's generators take seeds up to 2**32 - 1 comfortably everywhere.
        ("seed", cfg.seed, 0 <= cfg.seed <= MAX_SEED, f"an integer from 0 to {MAX_SEED}"),
        ("torch_threads", cfg.torch_threads, cfg.torch_threads >= 1, ">= 1"),
        ("eval.episodes", cfg.eval.episodes, cfg.eval.episodes >= 1, ">= 1"),
        ("eval.num_envs", cfg.eval.num_envs, cfg.eval.num_envs >= 1, ">= 1"),
        ("train.solve_window", cfg.train.solve_window, cfg.train.solve_window >= 1, ">= 1"),
        ("trial.seeds", cfg.trial.seeds, cfg.trial.seeds >= 1, ">= 1"),
        ("env.num_envs", cfg.env.num_envs, cfg.env.num_envs >= 1, ">= 1"),
        ("monitor.mlflow.flush_every_s", m.mlflow.flush_every_s, m.mlflow.flush_every_s > 0, "> 0"),
        ("monitor.video.fps", m.video.fps, m.video.fps >= 1, ">= 1"),
        ("monitor.progress_every_s", m.progress_every_s, m.progress_every_s > 0, "> 0"),
        ("monitor.video.max_frames", m.video.max_frames, m.video.max_frames >= 1, ">= 1"),
        ("monitor.video.every_evals", m.video.every_evals, m.video.every_evals >= 0, ">= 0"),
    ]
    optional_positive = [
        ("train.max_env_steps", cfg.train.max_env_steps),
        ("trial.population_threads", cfg.trial.population_threads),
        ("train.max_episodes", cfg.train.max_episodes),
        ("eval.every_steps", cfg.eval.every_steps),
        ("env.max_episode_steps", cfg.env.max_episode_steps),
        ("monitor.checkpoint.every_steps", m.checkpoint.every_steps),
        ("monitor.checkpoint.every_s", m.checkpoint.every_s),
    ]
    for key, value in optional_positive:
        checks.append((key, value, value is None or value > 0, "> 0 or null"))
    for name, value, ok, valid in checks:
        if not ok:
            raise ConfigError(f"{name}={value} is invalid: it must be {valid}.")
    devices.resolve(cfg.get("device", "cpu"))  # a GPU this machine lacks: before anything runs


def build_agent(
    cfg: DictConfig,
    observation_space: Any,
    action_space: Any,
    num_envs: int,
    *,
    device: str | None = None,
) -> Agent[Any]:
    """policy(action space) -> model(observation space, policy's outputs) -> update(model, the
    model group's factory for critics, policy) -> agent, every network, parameter and tensor
    they make on ``device`` (default: ``cfg.device``; :mod:`twrl_exp.devices`)."""
    with torch.device(devices.resolve(device or cfg.get("device", "cpu"))):
        return _build_agent(cfg, observation_space, action_space, num_envs)


def _build_agent(
    cfg: DictConfig, observation_space: Any, action_space: Any, num_envs: int
) -> Agent[Any]:
    policy = _partial(cfg.policy)(
        action_space=action_space, total_env_steps=cfg.train.max_env_steps
    )
    make_model = _partial(cfg.model)
    if cfg.model.get("dueling") and not getattr(policy, "reads_action_values", False):
        raise ConfigError(
            f"model.dueling=true makes a dueling head of action values (for update=dqn), but "
            f"update={cfg['update'].get('name')} reads the model's outputs through "
            f"policy={cfg.policy.get('name')}, as a policy's parameters, not as action values; "
            "use model.dueling=false."
        )
    if getattr(policy, "latent_outputs", False):  # gSDE: the noise reads the last hidden layer
        if cfg.model.name != "mlp":
            raise ConfigError(
                f"policy.use_sde=true needs model=mlp (its noise is a function of the MLP's last "
                f"hidden layer), not model={cfg.model.name}; use policy.use_sde=false."
            )
        model = make_model(
            observation_space=observation_space, num_outputs=policy.num_outputs, latent_outputs=True
        )
        policy.attach_latent(model.latent_dim)
    else:
        model = make_model(observation_space=observation_space, num_outputs=policy.num_outputs)
    update = _partial(cfg["update"])(
        model=model,
        make_model=make_model,
        policy=policy,
        num_envs=num_envs,
        total_env_steps=cfg.train.max_env_steps,
        seed=cfg.seed,
    )
    return Agent(
        model=model,
        policy=policy,
        update=update,
        seed=cfg.seed,
        normalizer=make_normalizer(cfg, observation_space, num_envs),
    )


def make_normalizer(
    cfg: DictConfig, observation_space: gym.Space[Any], num_envs: int
) -> Normalizer | None:
    """The agent's normaliser of ``cfg.env.normalize_*``, or None when neither is on."""
    env = cfg.env
    if not env.get("normalize_obs") and not env.get("normalize_reward"):
        return None
    if env.normalize_obs and not (
        isinstance(observation_space, gym.spaces.Box)
        and np.issubdtype(observation_space.dtype, np.floating)
    ):
        raise ConfigError(
            f"env.normalize_obs=true needs float Box observations, but {env.id}'s are "
            f"{describe_space(observation_space)}; set env.normalize_obs=false."
        )
    if not math.isfinite(env.normalize_clip) or env.normalize_clip <= 0:
        raise ConfigError(f"env.normalize_clip={env.normalize_clip} is invalid: it must be > 0.")
    return Normalizer(
        obs_shape=tuple(observation_space.shape or ()),
        num_envs=num_envs,
        obs=bool(env.normalize_obs),
        reward=bool(env.normalize_reward),
        clip=float(env.normalize_clip),
        gamma=float(cfg["update"].get("gamma", 0.99)),
    )


def build(cfg: DictConfig, *, evaluation: bool = True) -> Built:
    """Seed torch (network initialisation and the learners' draws: the run's ``TORCH`` stream),
    build the training env, the evaluation env and the agent."""
    check_run_config(cfg)
    torch.set_num_threads(cfg.torch_threads)
    # Subnormal floats (below 1.2e-38 in float32) are flushed to zero, as GPUs and fast-math
    # builds do: Adam's moments of weights that get no gradient (dead ReLU units) decay into
    # that range, where every operation on them costs ~15x (measured: a fused Adam step of
    # 536k parameters 0.2 ms, 2.8 ms with subnormal moments; half of a DQN population's time).
    torch.set_flush_denormal(True)
    torch.manual_seed(seeding.integer(cfg.seed, seeding.Stream.TORCH))
    info = resolve_spec(cfg.env.id, cfg.env.reward_threshold)
    make_env = _partial(cfg.env)
    env = make_env()
    eval_env = None
    try:
        if evaluation and (cfg.eval.every_steps or cfg.eval.final):
            eval_env = make_env(num_envs=min(cfg.eval.num_envs, cfg.eval.episodes), training=False)
        agent = build_agent(
            cfg, env.single_observation_space, env.single_action_space, env.num_envs
        )
    except BaseException:
        env.close()
        if eval_env is not None:
            eval_env.close()
        raise
    return Built(
        env=env,
        eval_env=eval_env,
        agent=agent,
        reward_threshold=info.reward_threshold,
        env_id=info.id,
    )


def make_runner(
    cfg: DictConfig, built: Built, monitors: list[Monitor] | None = None, **overrides: Any
) -> Runner:
    """The runner for ``built`` with the budget, solve and evaluation settings of ``cfg``."""
    settings: dict[str, Any] = {
        "max_env_steps": cfg.train.max_env_steps,
        "max_episodes": cfg.train.max_episodes,
        "stop_when_solved": cfg.train.stop_when_solved,
        "reward_threshold": built.reward_threshold,
        "solve_window": cfg.train.solve_window,
        "eval_every_steps": cfg.eval.every_steps,
        "eval_episodes": cfg.eval.episodes,
        "eval_deterministic": cfg.eval.deterministic,
        "final_eval": cfg.eval.final,
        **overrides,
    }
    return Runner(
        env=built.env,
        agent=built.agent,
        eval_env=built.eval_env,
        seed=cfg.seed,
        monitors=monitors,
        **settings,
    )
