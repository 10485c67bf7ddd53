"""``twrl-certify`` as users run it: real runs in a temporary store, certified bit-exact (TD(lambda)
and PPO), statistically when made with other versions, and refused when their record was
changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.integration.test_faults import QUIET, train
from twrl_exp.build import project_root
from twrl_exp.identity import RECORD_TAG, VERSIONS_TAG

TD = ["env=cliffwalking", "model=table", "policy=egreedy", "update=td_lambda",
      "train.max_episodes=40", "eval.episodes=2", *QUIET]  # fmt: skip
PPO = ["update=ppo", "train.max_env_steps=3000", "eval.episodes=2", *QUIET]


def certify(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twrl_exp.certify", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(project_root())},
        capture_output=True,
        text=True,
        timeout=600,
    )


def only_run(uri: str, experiment: str) -> str:
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run.info.run_id


def certificate(uri: str, run_id: str) -> dict:
    client = MlflowClient(tracking_uri=uri)
    (item,) = client.list_artifacts(run_id, "certificates")
    return json.loads(Path(client.download_artifacts(run_id, item.path)).read_text())


@pytest.mark.parametrize(("args", "experiment"), [(TD, "CliffWalking-v1"), (PPO, "CartPole-v1")])
def test_a_run_is_certified_bit_exact_with_a_certificate_on_it(
    tmp_path: Path, isolated_mlflow: str, args: list[str], experiment: str
) -> None:
    made = train(tmp_path, *args)
    assert made.returncode == 0, made.stderr
    run_id = only_run(isolated_mlflow, experiment)
    client = MlflowClient(tracking_uri=isolated_mlflow)
    returns = {m.value for m in client.get_metric_history(run_id, "episode/return")}
    assert len(returns) > 3  # episodes that differ: identity means something
    result = certify(tmp_path, run_id)
    assert result.returncode == 0, result.stderr
    assert f"run {run_id}: reproduced bit-exact" in result.stdout
    found = certificate(isolated_mlflow, run_id)
    assert found["verdict"] == "reproduced bit-exact"
    assert found["method"] == "bit-exact"
    assert found["versions"]["differ"] == []
    rerun = client.get_run(found["details"]["rerun"])
    assert rerun.data.tags["rerun_of"] == run_id
    note = client.get_run(run_id).data.tags["mlflow.note.content"]
    assert "reproduced bit-exact (bit-exact)" in note


def test_a_changed_record_is_refused_in_one_sentence(tmp_path: Path, isolated_mlflow: str) -> None:
    made = train(tmp_path, *TD)
    assert made.returncode == 0, made.stderr
    run_id = only_run(isolated_mlflow, "CliffWalking-v1")
    client = MlflowClient(tracking_uri=isolated_mlflow)
    digest = client.get_run(run_id).data.tags[RECORD_TAG]
    client.log_metric(run_id, "episode/return", -13.0, step=10**6)  # an episode it never had
    result = certify(tmp_path, run_id)
    assert result.returncode == 2
    assert f"the record of run {run_id} was changed after the run ended" in result.stderr
    assert "Traceback" not in result.stderr
    assert not client.list_artifacts(run_id, "certificates")
    # a config edited after the run: refused too
    made = train(tmp_path, *TD, "seed=1")
    assert made.returncode == 0, made.stderr
    (other,) = [
        r.info.run_id
        for r in client.search_runs([client.get_run(run_id).info.experiment_id])
        if r.info.run_id != run_id
    ]
    edited = Path(client.download_artifacts(other, "config.yaml", str(tmp_path / "edit")))
    edited.write_text(edited.read_text().replace("  lam: ", "  lam: 0.5 #", 1))
    client.log_artifact(other, str(edited))  # replaces the logged config.yaml
    result = certify(tmp_path, other)
    assert result.returncode == 2
    assert f"the record of run {other} was changed after the run ended" in result.stderr
    assert client.get_run(run_id).data.tags[RECORD_TAG] == digest


def test_a_run_made_with_other_versions_is_compared_statistically(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    made = train(tmp_path, *TD)
    assert made.returncode == 0, made.stderr
    run_id = only_run(isolated_mlflow, "CliffWalking-v1")
    client = MlflowClient(tracking_uri=isolated_mlflow)
    theirs = json.loads(client.get_run(run_id).data.tags[VERSIONS_TAG])
    client.set_tag(run_id, VERSIONS_TAG, json.dumps({**theirs, "torch": "1.0.0"}))
    result = certify(tmp_path, run_id, "--seeds", "2")
    assert result.returncode in (0, 1), result.stderr
    assert "made with other versions: torch; compared statistically" in result.stdout
    found = certificate(isolated_mlflow, run_id)
    assert found["method"] == "statistical"
    assert found["versions"]["differ"] == ["torch"]
    assert found["verdict"] in ("consistent", "inconsistent")
    assert len(found["details"]["new"]) == 2  # seeds 1 and 2: new, not the recorded seed 0
    seeds = sorted(
        r.data.params["seed"]
        for r in client.search_runs([client.get_run(run_id).info.experiment_id])
        if r.data.tags.get("rerun_of") == run_id
    )
    assert seeds == ["1", "2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0123456789abcdef0123456789abcdef"], "there is no run 0123456789abcdef"),
        (["x", "--seeds", "1"], "--seeds=1 is invalid"),
    ],
)
def test_bad_input_is_refused_in_one_sentence(
    tmp_path: Path, isolated_mlflow: str, args: list[str], message: str
) -> None:
    made = train(tmp_path, *TD)  # a store with a run
    assert made.returncode == 0, made.stderr
    result = certify(tmp_path, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
