"""Rebuild a trained agent from an MLflow run: its logged config plus ``model/agent.pt``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf

from twrl_exp.agent import Agent
from twrl_exp.build import build_agent, default_tracking_uri
from twrl_exp.env import make_vector_env
from twrl_exp.errors import ConfigError


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
    """The agent of ``run_id`` with its trained weights, and the run's config."""
    uri = tracking_uri or default_tracking_uri()
    client = MlflowClient(tracking_uri=uri)
    try:
        client.get_run(run_id)
    except MlflowException as exc:
        raise ConfigError(f"run_id={run_id} names no run in {uri}.") from exc
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = Path(client.download_artifacts(run_id, "model", tmp))
        except (MlflowException, OSError) as exc:
            raise ConfigError(
                f"run {run_id} has no logged model (artifact folder model/)."
            ) from exc
        cfg = OmegaConf.load(folder / "config.yaml")
        state = torch.load(folder / "agent.pt", weights_only=False)
    assert isinstance(cfg, DictConfig)
    env = make_vector_env(**env_settings(cfg, num_envs))
    try:
        agent = build_agent(
            cfg,
            env.single_observation_space,
            env.single_action_space,
            num_envs,
            np.random.default_rng(cfg.seed),
        )
    finally:
        env.close()
    agent.load_state_dict({**state, "update": {}}, weights_only=True)
    return agent, cfg
