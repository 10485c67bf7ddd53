"""twrl-exp as a researcher installs it: a wheel in a fresh venv, used from their own folder.

The wheel is built from this checkout and installed without its dependencies into a new venv
that sees the project venv's packages (a .pth file): what is tested is the wheel's content, the
console scripts and where data goes, not the package index.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from mlflow import MlflowClient

from twrl_exp.build import project_root


def run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    built = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(project_root()),
        ],
        cwd=root,
    )
    assert built.returncode == 0, built.stderr
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root
    ).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (wheel,) = wheels.glob("twrl_exp-*.whl")
    installed = run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], cwd=root)
    assert installed.returncode == 0, installed.stderr
    return venv


def test_the_wheel_carries_the_configs_and_records_where_the_user_is(
    venv: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    result = run([str(venv / "bin" / "twrl-train"), "--cfg", "job", "update=ppo"], cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "id: CartPole-v1" in result.stdout  # the packaged groups, presets included
    assert "update_epochs: 20" in result.stdout
    assert (
        f"root: {folder}"
        in run([str(venv / "bin" / "twrl-train"), "--cfg", "job", "--resolve"], cwd=folder).stdout
    )
    assert not (project_root() / "src" / "twrl_exp" / "conf").exists()


def test_a_starter_repo_trains_its_own_rule_on_its_own_env_and_records_there(
    venv: Path, tmp_path: Path
) -> None:
    bin_ = venv / "bin"
    repo = tmp_path / "research"
    made = run([str(bin_ / "twrl-train"), "--init", str(repo)], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (repo / "conf" / "update" / "my_rule.yaml").is_file()
    assert run([str(bin_ / "twrl-train"), "--init", str(repo)], cwd=tmp_path).returncode == 2
    for git in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "start"]):
        subprocess.run(
            ["git", "-c", "user.email=r@example.org", "-c", "user.name=R", *git],
            cwd=repo,
            check=True,
            timeout=60,
        )
    head = run(["git", "rev-parse", "HEAD"], cwd=repo).stdout.strip()
    # The README's first command, from a subfolder of the repository.
    (repo / "notes").mkdir()
    trained = run(
        [
            str(bin_ / "twrl-train"),
            "-cd",
            "../conf",
            "env=corridor",
            "update=my_rule",
            "train.max_env_steps=12000",
            "eval.every_steps=6000",
            "monitor.video.enabled=false",
        ],
        cwd=repo / "notes",
    )
    assert trained.returncode == 0, trained.stderr
    assert "twrl-train resume=" in trained.stdout
    assert not (repo / "notes" / "mlflow.db").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    (run_,) = [
        r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
    ]
    assert run_.info.status == "FINISHED"
    assert run_.data.tags["git_commit"] == head
    assert run_.data.params["update.lr"] == "0.05"
    assert "my_rule/categorical/mlp Corridor-v0" in run_.info.run_name
    assert not any(k.startswith("paths.") for k in run_.data.params)
    evaluated = run(
        [str(bin_ / "twrl-evaluate"), f"run_id={run_.info.run_id}", "episodes=3"], cwd=repo
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "mean return" in evaluated.stdout
    ranked = run([str(bin_ / "twrl-leaderboard"), "--no-html"], cwd=repo)
    assert ranked.returncode == 0, ranked.stderr
    assert "Corridor-v0" in ranked.stdout
    # The README's sweep, smaller; the project's conf/ is found without -cd.
    swept = run(
        [
            str(bin_ / "twrl-train"),
            "-m",
            "+sweep=corridor_my_rule",
            "hydra.sweeper.n_trials=2",
            "train.max_env_steps=3000",
            "eval.every_steps=1500",
        ],
        cwd=repo,
    )
    assert swept.returncode == 0, swept.stderr
    assert (repo / "optuna" / "corridor_my_rule.db").is_file()
    assert (repo / "conf" / "experiment" / "corridor_my_rule.yaml").is_file()


def readme_commands(readme: Path) -> list[list[str]]:
    """The commands of a README's first bash block, as a user copies them (comments dropped)."""
    block = readme.read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.strip()]


@pytest.mark.timeout(1200)  # two trainings, an 8-trial sweep and the leaderboard, in turn
def test_the_starter_readme_commands_work_verbatim(venv: Path, tmp_path: Path) -> None:
    """What a new user does first: --init, then the starter README's commands exactly as written
    (video on, the default budget, the whole sweep), then the experiment the sweep saved."""
    bin_ = venv / "bin"
    repo = tmp_path / "myproj"
    assert run([str(bin_ / "twrl-train"), "--init", str(repo)], cwd=tmp_path).returncode == 0
    commands = readme_commands(repo / "README.md")
    assert [c[0] for c in commands] == ["twrl-train", "twrl-train", "mlflow"]
    results = []
    for command in commands[:2]:  # the third is `mlflow ui`, a server
        result = run([str(bin_ / command[0]), *command[1:]], cwd=repo, timeout=600)
        assert result.returncode == 0, result.stderr
        results.append(result)
    trained, swept = results
    assert trained.stdout.count("FINISHED:") == 1
    assert "no video: my_envs:Corridor-v0 cannot render frames" in trained.stderr
    assert "Traceback" not in trained.stderr
    # The sweep says how to re-run its best trial, in this repository's own words.
    hint = next(line for line in swept.stdout.splitlines() if "+experiment=" in line)
    assert "twrl-train" in hint
    assert "python train.py" not in swept.stdout
    again = run([str(bin_ / "twrl-train"), "-cd", "conf", "+experiment=corridor_my_rule"], cwd=repo)
    assert again.returncode == 0, again.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    top = [
        r for r in runs if "mlflow.parentRunId" not in r.data.tags and "sweep" not in r.data.tags
    ]
    assert len(top) == 2
    for run_ in top:  # the first run and the saved experiment's
        assert run_.info.status == "FINISHED"
        assert run_.data.tags["twrl.video"].startswith("none: ")
    ranked = run([str(bin_ / "twrl-leaderboard"), "--no-html"], cwd=repo)
    assert ranked.returncode == 0, ranked.stderr
    assert "Corridor-v0" in ranked.stdout
