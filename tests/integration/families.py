"""What every env family's tests check the same way (MuJoCo, MinAtar, Atari): a trained run's
record holds what a user resumes and evaluates from, and a machine without the family's extra
is told in one sentence how to get it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from tests.integration.test_train import artifacts
from twrl_exp.build import project_root
from twrl_exp.evaluate import EvaluateConfig, EvaluateResult, evaluate


def evaluates_from_its_record(
    client: MlflowClient, run_id: str, tmp_path: Path, episodes: int
) -> EvaluateResult:
    """The run saved its final video, a checkpoint (resumable) and its model; ``evaluate``
    plays ``episodes`` from that record and writes an mp4."""
    stored = artifacts(client, run_id)
    assert "videos/final.mp4" in stored
    assert any(p.startswith("checkpoints/checkpoint-") for p in stored)  # resumable
    assert "model/agent.pt" in stored
    video = tmp_path / "eval.mp4"
    result = evaluate(
        EvaluateConfig(
            run_id=run_id, episodes=episodes, video=True, video_path=str(video), log=False
        )
    )
    assert len(result.returns) == episodes
    assert video.read_bytes()[4:8] == b"ftyp"  # an mp4 container
    return result


def refused_without(package: str, extra: str, env_id: str, tmp_path: Path, *overrides: str) -> None:
    """``python train.py *overrides`` where ``package`` cannot be imported (as on a machine
    without the extra): one sentence naming the env, the reason and the extra, exit 2, no run
    left behind."""
    blocked = tmp_path / "blocked" / package
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(f"raise ImportError('No module named {package}')\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(blocked.parent), str(project_root())]),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    result = subprocess.run(
        [sys.executable, "train.py", *overrides, f"hydra.run.dir={tmp_path / 'out'}"],
        cwd=project_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: env.id={env_id} cannot be built: ")
    assert lines[0].endswith(f"; pip install 'twrl-exp[{extra}]'.")
    assert not (tmp_path / "mlflow.db").exists()
