"""What an Optuna sweep leaves behind: a best-trial experiment that runs in any checkout, one
small page of Optuna's plots and the search space as the parent run's params."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from omegaconf import OmegaConf

from hydra_plugins.twrl_optuna_sweeper._results import PLOTS
from twrl_exp.build import project_root
from twrl_exp.paths import config_dir

FIXED = [
    "train.max_env_steps=2000",
    "update.steps_per_batch=500",
    "eval.every_steps=1000",
    "eval.episodes=1",
    "monitor.console=false",
    "monitor.checkpoint.enabled=false",
    "monitor.video.enabled=false",
    "monitor.mlflow.log_model=false",
    "monitor.mlflow.system_metrics=false",
]
SPACE = {
    "update.lr": ("tag(log,interval(1e-5,5e-2))", "log-uniform[1e-05, 0.05]"),
    "update.gamma": ("interval(0.9,0.999)", "uniform[0.9, 0.999]"),
    "update.baseline": ("choice(none,average)", "choice(none, average)"),
}
HYPERPARAMETERS = ("env", "model", "policy", "update", "train", "eval", "seed", "torch_threads")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 3-trial study on tiny budgets, shared by the tests below (its own stores)."""
    tmp = tmp_path_factory.mktemp("sweep")
    env = {
        **os.environ,
        "PYTHONPATH": str(project_root()),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
    }
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            "hydra/sweeper=twrl_optuna",
            "hydra.sweeper.study_name=tiny",
            f"hydra.sweeper.storage=sqlite:///{tmp / 'optuna.db'}",
            f"hydra.sweeper.experiment_dir={tmp / 'experiment'}",
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.sampler.name=random",
            "hydra.sweeper.pruner.name=none",
            *[f"{key}={text}" for key, (text, _) in SPACE.items()],
            *FIXED,
            f"hydra.sweep.dir={tmp / 'multirun'}",
        ],
        cwd=project_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return tmp


def parent_run(tmp: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("CartPole-v1")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.sweep = 'optuna'")
    (parent,) = runs
    return client, parent


def test_the_parent_holds_one_small_page_of_every_plot(sweep: Path) -> None:
    client, parent = parent_run(sweep)
    artifacts = client.list_artifacts(parent.info.run_id, "optuna")
    assert [a.path for a in artifacts] == ["optuna/plots.html"]
    assert sum(a.file_size for a in artifacts) < 5 * 2**20  # five pages of 4.8 MB before
    page = Path(client.download_artifacts(parent.info.run_id, "optuna/plots.html", str(sweep)))
    text = page.read_text(encoding="utf-8")
    assert text.count("plotly.js v") == 1
    for name in PLOTS:
        assert f'<div id="{name}" class="plotly-graph-div"' in text
    for title in (
        "Optimization History Plot",
        "Hyperparameter Importances",
        "Parallel Coordinate Plot",
        "Slice Plot",
        "Intermediate Values Plot",
    ):
        assert title in text


def test_the_parent_holds_the_search_space_as_params(sweep: Path) -> None:
    _, parent = parent_run(sweep)
    for key, (_, described) in SPACE.items():
        assert parent.data.params[key] == described


def _strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def test_the_best_trial_reruns_from_another_checkout(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = sweep / "experiment" / "tiny.yaml"
    text = saved.read_text()
    assert str(project_root()) not in text
    assert str(sweep) not in text
    assert not [s for s in _strings(yaml.safe_load(text)) if PurePosixPath(s).is_absolute()]
    assert "paths" not in yaml.safe_load(text)

    storage = f"sqlite:///{sweep / 'optuna.db'}"
    best = optuna.load_study(study_name="tiny", storage=storage).best_params
    sampled = [
        f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}"
        for key, value in best.items()
    ]
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(config_dir(), elsewhere / "conf")
    shutil.copy(saved, elsewhere / "conf" / "experiment" / "tiny.yaml")

    def composed(conf: Path, root: Path, *overrides: str):
        monkeypatch.setenv("TWRL_PROJECT_ROOT", str(root))
        with initialize_config_dir(str(conf), version_base="1.3"):
            return compose("config", list(overrides))

    trial = composed(config_dir(), project_root(), *FIXED, *sampled)
    again = composed(elsewhere / "conf", elsewhere, "+experiment=tiny")
    assert again.paths.root == str(elsewhere)
    assert again.paths.experiment_dir == str(elsewhere / "conf" / "experiment")
    for key in HYPERPARAMETERS:
        expected, got = trial[key], again[key]
        if OmegaConf.is_config(expected):
            expected, got = (OmegaConf.to_container(c, resolve=True) for c in (expected, got))
        assert got == expected, key
