"""Every command of a block marked ``bash runnable`` in README.md and docs/*.md runs, as a user
types it, in a fresh project, with small budgets added (and ``<id>`` replaced by a run's id)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from twrl_exp.build import project_root

SMALL = ["train.max_env_steps=2000", "eval.every_steps=null", "eval.episodes=2"]
SKIPPED = ("source ", "mlflow ui")  # the venv is the test's own; a server does not return


def runnable_blocks() -> list[tuple[str, str]]:
    """``(file, command)`` of every line of every runnable block."""
    files = [project_root() / "README.md", *sorted((project_root() / "docs").glob("*.md"))]
    found = []
    for file in files:
        for block in re.findall(r"^```bash runnable\n(.*?)^```", file.read_text(), re.M | re.S):
            for line in block.splitlines():
                command = line.split("  #", 1)[0].strip()
                if command and not command.startswith(SKIPPED):
                    found.append((file.name, command))
    return found


def test_the_readme_has_a_runnable_block() -> None:
    commands = [c for f, c in runnable_blocks() if f == "README.md"]
    assert len(commands) >= 10


def sized(argv: list[str]) -> list[str]:
    """The same command with a small budget (a sweep with 2 trials)."""
    if argv[:2] != ["python", "train.py"] or "--help" in argv:
        return argv
    extra = list(SMALL)
    if "+sweep=cartpole_reinforce" in argv:
        extra.append("hydra.sweeper.n_trials=2")
    return [*argv, *extra]


@pytest.mark.timeout(1800)  # some 20 commands in turn: 332 s on CI, over half the 600 s cap
def test_every_runnable_command_of_the_docs_works(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(project_root()), "TWRL_PROJECT_ROOT": str(tmp_path)}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / ".git").mkdir()  # the project root, as in a user's repository
    for source, command in runnable_blocks():
        if "<id>" in command:
            client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
            exp = client.get_experiment_by_name("CartPole-v1")
            (latest,) = client.search_runs(
                [exp.experiment_id], "attributes.status = 'FINISHED'", max_results=1
            )
            command = command.replace("<id>", latest.info.run_id)
        argv = sized(shlex.split(command))
        if argv[0] == "python":
            argv[0] = sys.executable
        if argv[1:2] == ["train.py"]:
            argv[1] = str(project_root() / "train.py")
        result = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        where = f"{source}: {command}"
        assert result.returncode == 0, f"{where}\n{result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr, where


@pytest.mark.parametrize(
    "page", sorted((project_root() / "docs").glob("*.md")), ids=lambda p: p.name
)
def test_links_between_the_docs_lead_somewhere(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
        assert (page.parent / target).exists(), f"{page.name} links to {target}"
