"""Rebuild a trained agent from an MLflow run: its logged config plus ``model/agent.pt``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf

from twrl_exp import logged, serialization, store
from twrl_exp.agent import Agent
from twrl_exp.build import build_agent
from twrl_exp.env import make_vector_env
from twrl_exp.errors import ConfigError
from twrl_exp.paths import default_tracking_uri


def env_settings(cfg: DictConfig, num_envs: int) -> dict[str, Any]:
    """``make_vector_env`` keyword arguments from a run's logged ``env`` config."""
    container = OmegaConf.to_container(cfg.env, resolve=True)
    assert isinstance(container, dict)
    settings = {str(k): v for k, v in container.items() if not str(k).startswith("_")}
    settings["num_envs"] = num_envs
    return settings


def load_agent(
    run_id: str, tracking_uri: str | None = None, num_envs: int = 1
) -> tuple[Agent, DictConfig]:
    """The agent of ``run_id`` with its trained weights, and the run's config.

    The config is recomposed from this machine's config files with the logged values on top
    (a store never names code) and the weights are read as tensors only.
    """
    uri = tracking_uri or default_tracking_uri()
    client = store.open_client(uri, read_only=True)  # evaluating only reads
    run = logged.find_run(client, uri, "run_id", run_id)
    with tempfile.TemporaryDirectory(prefix="twrl-agent-") as tmp:
        try:
            logged.quiet_downloads()
            folder = Path(client.download_artifacts(run_id, "model", tmp))
        except (MlflowException, OSError) as exc:
            raise ConfigError(
                f"run {run_id} has no logged model (artifact folder model/)."
            ) from exc
        agent, cfg, _ = agent_from_folder(
            folder,
            source=f"run_id={run_id}",
            choices=logged.logged_choices(run),
            num_envs=num_envs,
        )
    return agent, cfg


def agent_from_folder(
    folder: Path,
    *,
    source: str,
    choices: dict[str, str] | None = None,
    num_envs: int = 1,
) -> tuple[Agent, DictConfig, tuple[int, ...]]:
    """An agent from a saved ``config.yaml`` + ``agent.pt``; its config and observation shape."""
    try:
        raw = OmegaConf.load(folder / "config.yaml")
    except Exception as exc:
        raise ConfigError(f"{source}: its config.yaml cannot be read ({exc}).") from exc
    if not isinstance(raw, DictConfig):
        raise ConfigError(f"{source}: its config.yaml is not a mapping.")
    state = serialization.load(folder / "agent.pt", what=f"agent of {source}")
    cfg = logged.trusted_config(raw, [], source=source, choices=choices)
    if not isinstance(state, dict) or not {"model", "policy"} <= set(state):
        raise ConfigError(f"{source}: agent.pt is not a twrl-exp agent.")
    env = make_vector_env(**env_settings(cfg, num_envs), training=False)
    try:
        space = env.single_observation_space
        # acting (evaluation, videos, the MLflow model) needs no GPU: the weights come to the CPU
        agent = build_agent(cfg, space, env.single_action_space, num_envs, device="cpu")
    finally:
        env.close()
    agent.load_state_dict({**state, "update": {}}, weights_only=True)
    return agent, cfg, tuple(space.shape or ())
