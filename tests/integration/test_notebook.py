"""notebooks/analysis.ipynb runs top to bottom on a small store with agents and a sweep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from twrl_exp.build import project_root
from twrl_exp.train import run


def test_the_analysis_notebook_executes(make_cfg, tmp_path: Path, isolated_mlflow: str) -> None:
    fast = [
        "monitor.console=false",
        "monitor.video.enabled=false",
        "eval.every_steps=null",
        "monitor.checkpoint.enabled=false",
        "train.max_env_steps=6000",
    ]
    for seed in range(3):
        run(make_cfg(f"seed={seed}", *fast))
        run(make_cfg(f"seed={seed}", "model=none", "policy=random", "update=none", *fast))
    sweep = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            "hydra/sweeper=twrl_optuna",
            "hydra.sweeper.study_name=nb",
            f"hydra.sweeper.storage=sqlite:///{tmp_path}/o.db",
            f"hydra.sweeper.experiment_dir={tmp_path}/exp",
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.sampler.name=random",
            "update.lr=tag(log,interval(1e-4,1e-1))",
            "hydra.sweeper.plots=false",
            *fast,
            f"hydra.sweep.dir={tmp_path}/multirun",
        ],
        cwd=project_root(),
        env={**os.environ, "PYTHONPATH": str(project_root())},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sweep.returncode == 0, sweep.stderr
    notebook = nbformat.read(project_root() / "notebooks" / "analysis.ipynb", as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/markdown", "")) for o in outputs
    )
    assert isolated_mlflow in text
    assert "CartPole-v1" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the learning curves and the sweep's view
