"""Shared fixtures: every test gets its own MLflow store; configs compose from conf/."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from tests import envs
from twrl_exp.build import project_root
from twrl_exp.config import register_configs
from twrl_exp.paths import config_dir

pytest_plugins = ["tests.tiers", "pytester"]

envs.register()
register_configs()

# One torch thread per test process, as every run has (cfg.torch_threads, set by build): tests
# that make parts without build would otherwise run two threads per xdist worker on two cores,
# and small ops wait on each other (a PPO check took 40 s instead of 4).
torch.set_num_threads(1)
# The same for the processes tests start: a population takes $OMP_NUM_THREADS threads (else
# every core), and two of them on two xdist workers would wait on each other.
os.environ["OMP_NUM_THREADS"] = "1"

FAST = [
    "monitor=none",
    "eval.every_steps=null",
    "eval.final=false",
]


@pytest.fixture(autouse=True)
def isolated_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point MLflow at a SQLite store in tmp_path, never at the user's mlflow.db."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def make_cfg() -> Callable[..., DictConfig]:
    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            return compose("config", list(overrides))

    return _compose


@pytest.fixture
def train_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python train.py ARGS`` from the project root as a user would."""

    def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(project_root())
        return subprocess.run(
            [sys.executable, "train.py", *args, f"hydra.run.dir={tmp_path / 'outputs'}"],
            cwd=project_root(),
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return _run
