"""``twrl-compare`` as users run it: real training runs in a temporary store, the comparison
decided (or not) with ``--until-decided``, its page in headless Chromium, bad input refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.integration.test_leaderboard import CHROMIUM, _scanlines, _screenshot
from twrl_exp.build import project_root

QUIET = "monitor.video.enabled=false monitor.curve=false monitor.console=false"
FAST = "update.lr=0.01 train.max_env_steps=10000"  # learns something in 10k steps
SLOW = "update.lr=0.00001 train.max_env_steps=10000"  # a random policy, near enough


def compare(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(project_root())}
    env.pop("COLUMNS", None)  # not a terminal: rich writes 80 columns, the width we promise
    return subprocess.run(
        [sys.executable, "-m", "twrl_exp.compare", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def logged(uri: str, run_id: str) -> tuple[object, dict]:
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    folder = client.download_artifacts(run_id, "")
    return run, json.loads((Path(folder) / "comparison.json").read_text())


def run_id_of(stdout: str) -> str:
    return next(line.split()[-1] for line in stdout.splitlines() if line.startswith("logged: "))


def test_until_decided_decides_a_large_difference_and_an_a_a_test_stops_at_its_budget(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    """REINFORCE on CartPole at lr 0.01 against lr 1e-5 (10k env steps): decided at the first
    look, 3 seeds a side, and logged; the same config against itself (an A/A test) takes
    its seeds in two halves, trains to the budget of 6 a side and is not decided."""
    result = compare(tmp_path, FAST, SLOW, "--until-decided", "--max-seeds", "6", "--train", QUIET)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "A better" in out
    assert "decided with 3 seeds a side at most (budget 6)." in out
    table = [line for line in out.splitlines() if not line.startswith("page: ")]  # (a path)
    assert max(len(line) for line in table) <= 80
    run, found = logged(isolated_mlflow, run_id_of(out))
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id != "0"
    (pair,) = found["pairs"]
    assert pair["improvement"] == 1.0
    assert found["level"] == pytest.approx(0.05 / 2)  # two looks: 3, then 6 seeds a side
    assert [side["seeds"] for side in found["sides"]] == [{"CartPole-v1": 3}] * 2
    assert (tmp_path / "compare.html").is_file()

    # the same runs named by id: the same figures, nothing trained
    client = MlflowClient(tracking_uri=isolated_mlflow)
    runs = client.search_runs(
        [client.get_experiment_by_name("CartPole-v1").experiment_id], max_results=100
    )
    by_lr: dict[float, list[str]] = {}
    for r in runs:
        if "update.lr" in r.data.params:  # (not the sweeps' parent runs)
            by_lr.setdefault(float(r.data.params["update.lr"]), []).append(r.info.run_id)
    assert sorted(map(len, by_lr.values())) == [3, 3]
    again = compare(
        tmp_path, f"runs:{','.join(by_lr[0.01])}", f"runs:{','.join(by_lr[1e-5])}", "--no-html"
    )
    assert again.returncode == 0, again.stderr
    assert "training" not in again.stdout
    _, named = logged(isolated_mlflow, run_id_of(again.stdout))
    assert named["pairs"][0]["improvement"] == pair["improvement"]
    assert named["pairs"][0]["envs"][0]["p_value"] == pytest.approx(pair["envs"][0]["p_value"])

    # the leaderboard counts no comparison as an agent
    board = subprocess.run(
        [sys.executable, "-m", "twrl_exp.leaderboard", "--no-html"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(project_root())},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert board.returncode == 0, board.stderr
    assert "comparisons" not in board.stdout

    same = compare(tmp_path, SLOW, SLOW, "--until-decided", "--max-seeds", "6", "--train", QUIET)
    assert same.returncode == 0, same.stderr
    assert "not decided: the budget of 6 seeds a side is spent." in same.stdout
    _, aa = logged(isolated_mlflow, run_id_of(same.stdout))
    assert [side["seeds"] for side in aa["sides"]] == [{"CartPole-v1": 6}] * 2
    assert aa["pairs"][0]["envs"][0]["better"] is None
    seeds = sorted(
        int(r.data.params["seed"])
        for r in client.search_runs(
            [client.get_experiment_by_name("CartPole-v1").experiment_id], max_results=100
        )
        if float(r.data.params.get("update.lr", "nan")) == 1e-5
    )
    assert seeds == list(range(12))  # 0, 2, ... for A; 1, 3, ... for B: no seed counted twice


def test_a_comparison_page_renders_in_headless_chromium(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("/usr/bin/chromium is not installed: the headless rendering check needs it")
    result = compare(
        tmp_path, FAST, SLOW, "--until-decided", "--max-seeds", "3", "--min-seeds", "3",
        "--train", QUIET, "--no-mlflow",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    page = tmp_path / "compare.html"
    text = page.read_text()
    assert text.count("<svg") == 4  # IQM, P(A > B), profiles, curves of CartPole-v1
    assert text.count("class='curve'") == 4  # a profile and a learning curve per agent
    png = _screenshot(page, tmp_path, "compare")
    width, height, lines = _scanlines(png)
    assert (width, height) == (1200, 1600)
    bare = tmp_path / "bare.html"
    bare.write_text(text.replace("<svg", "<svg style='display:none'"))
    _, _, bare_lines = _scanlines(_screenshot(bare, tmp_path, "bare"))
    changed = sum(a != b for a, b in zip(lines, bare_lines, strict=True))
    assert changed >= 300, f"only {changed} pixel rows show plots"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([FAST], "a comparison needs two agents or more, not 1"),
        ([FAST, "update=nope"], "agent B 'update=nope' does not compose"),
        ([FAST, "lr"], "agent B: 'lr' is not an override"),
        ([FAST, "runs:"], "agent B 'runs:' names no run"),
        ([FAST, "tag:x"], "agent B 'tag:x' is not a tag filter"),
        ([FAST, SLOW, "--until-decided"], "--until-decided needs --max-seeds N"),
        ([FAST, SLOW, "--max-seeds", "4"], "--max-seeds is the budget of --until-decided"),
        ([FAST, SLOW, "--alpha", "2"], "--alpha=2 is invalid: it must be in (0, 1)"),
        ([FAST, SLOW, "--effect", "-1"], "--effect=-1.0 is invalid"),
        ([FAST, "runs:abc", "--until-decided", "--max-seeds", "4"], "agent B (runs:abc) is runs"),
        ([FAST, SLOW], "There is no MLflow store"),
    ],
)
def test_bad_input_is_refused_in_one_sentence_leaving_nothing(
    tmp_path: Path, isolated_mlflow: str, args: list[str], message: str
) -> None:
    result = compare(tmp_path, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert list(tmp_path.iterdir()) == []  # no page, no store


def test_until_decided_stops_in_one_sentence_when_an_agents_runs_fail(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    """A config that diverges (lr 1e30: its runs fail) is not trained again and again: the
    comparison stops, exit code 2, its last line saying which agent and why."""
    diverging = "update=ppo update.lr=1e30 train.max_env_steps=3000"
    result = compare(
        tmp_path, diverging, SLOW, "--until-decided", "--max-seeds", "6", "--train", QUIET,
        "--no-html",
    )  # fmt: skip
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("twrl-compare: error: training agent A (update=ppo update.lr=1e30"), last
    assert "Traceback" not in result.stderr
    assert result.stdout.count("training A") == 1  # once, not again and again
