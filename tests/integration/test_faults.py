"""The record under faults, as users meet them: parallel starts on a fresh store, kill -9 and
Ctrl-C at several points, resume, divergence, a full disk, and files planted in a store.

Every test runs real ``python train.py`` processes against a temporary SQLite store.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from mlflow.entities import ViewType

from twrl_exp import serialization
from twrl_exp.build import project_root
from twrl_exp.store import open_client

TRAIN = str(project_root() / "train.py")
QUIET = ["monitor.console=false", "monitor.video.enabled=false", "monitor.curve=false"]


def env_vars() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(project_root())}


STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test() -> Iterator[None]:
    """A failing test must not leave a 50M-step run eating a core for the rest of the suite."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)


def start(cwd: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, TRAIN, *args],
        cwd=cwd,
        env=env_vars(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    STARTED.append(proc)
    return proc


def train(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, TRAIN, *args],
        cwd=cwd,
        env=env_vars(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def all_runs(uri: str, experiment: str = "CartPole-v1", view: int = ViewType.ACTIVE_ONLY):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], run_view_type=view)


def wait_for(
    predicate: Callable[[], object],
    timeout: float = 240,
    what: str = "",
    proc: subprocess.Popen[str] | None = None,
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.communicate()[1]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def checkpoint_step(uri: str, run_id: str) -> int:
    tag = MlflowClient(tracking_uri=uri).get_run(run_id).data.tags.get("twrl.checkpoint")
    return json.loads(tag)["env_steps"] if tag else 0


def assert_one_timeline(client: MlflowClient, run) -> None:
    """Every episode once, in env-step order, and as many as the run's summary counts."""
    run_id = run.info.run_id
    steps = [m.step for m in client.get_metric_history(run_id, "episode/return")]
    assert steps == sorted(set(steps)), "episodes repeated or out of order"
    assert len(steps) == run.data.metrics["episodes"]
    evals = [m.step for m in client.get_metric_history(run_id, "eval/mean_return")]
    assert evals == sorted(set(evals)), "evaluations repeated"
    assert steps[-1] <= run.data.metrics["env_steps"]


LONG = [
    "train.max_env_steps=50000000",
    "monitor.mlflow.flush_every_s=0.2",
    "eval.every_steps=20000",
    "eval.episodes=2",
    *QUIET,
]


def test_parallel_runs_on_a_fresh_store_all_finish_with_every_row(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    """8 processes started at once on a store that does not exist yet: no migration race, every
    run FINISHED with all its metric rows, and each in its own output folder."""
    procs = [
        start(tmp_path, "train.max_env_steps=3000", "eval.every_steps=null", f"seed={i}", *QUIET)
        for i in range(8)
    ]
    results = [p.communicate(timeout=400) for p in procs]
    for proc, (_, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr
    client = MlflowClient(tracking_uri=isolated_mlflow)
    found = all_runs(isolated_mlflow)
    assert sorted(r.data.tags["seed"] for r in found) == [str(i) for i in range(8)]
    for run in found:
        assert run.info.status == "FINISHED"
        assert_one_timeline(client, run)
    folders = list((tmp_path / "outputs").glob("*/*"))
    assert len(folders) == 8  # same-second starts do not share a folder
    assert all((folder / "checkpoints" / "last.pt").exists() for folder in folders)


def test_kill_9_before_the_first_checkpoint_is_detected_and_resumable(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    open_client(isolated_mlflow)  # the store exists: polling it below never races its creation
    proc = start(
        tmp_path, *LONG, "monitor.checkpoint.every_steps=null", "monitor.checkpoint.every_s=null"
    )
    run = wait_for(
        lambda: [r for r in all_runs(isolated_mlflow) if r.data.metrics.get("episode/return")],
        what="the first episodes",
        proc=proc,
    )[0]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert MlflowClient(tracking_uri=isolated_mlflow).get_run(run.info.run_id).info.status == (
        "RUNNING"
    )
    client = open_client(isolated_mlflow)  # the next process to open the store marks the orphan
    lost = client.get_run(run.info.run_id)
    assert lost.info.status == "FAILED"
    assert lost.data.tags["twrl.end_reason"].startswith("lost:")

    resumed = train(tmp_path, f"resume={run.info.run_id}", "train.max_env_steps=6000", *QUIET)
    assert resumed.returncode == 0, resumed.stderr
    assert "no checkpoint" in resumed.stderr
    (new,) = all_runs(isolated_mlflow)
    assert new.info.status == "FINISHED"
    assert new.data.tags["twrl.resumed_from"] == run.info.run_id
    assert new.data.metrics["env_steps"] >= 6000
    assert_one_timeline(client, new)
    old = client.get_run(run.info.run_id)
    assert old.info.lifecycle_stage == "deleted"
    assert old.data.tags["twrl.superseded_by"] == new.info.run_id


def test_kill_9_of_the_training_process_alone_ends_its_writer_and_the_run_is_found_lost(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    """kill -9 of the run's process only (an OOM killer, a job scheduler): its writer process
    and the writer's curve drawer do what they were sent and exit instead of lingering, and the
    run is found lost, not left RUNNING."""
    import psutil

    open_client(isolated_mlflow)  # the store exists: polling it below never races its creation
    proc = start(tmp_path, *LONG, "monitor.curve=true")  # so the writer has a drawer
    run = wait_for(
        lambda: [r for r in all_runs(isolated_mlflow) if r.data.metrics.get("episode/return")],
        what="the first episodes",
        proc=proc,
    )[0]
    helpers = psutil.Process(proc.pid).children(recursive=True)
    commands = [" ".join(p.cmdline()) for p in helpers]
    assert any("twrl_exp.monitor.writer" in c for c in commands), commands
    assert any("twrl_exp.monitor.curves" in c for c in commands), commands
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    _, lingering = psutil.wait_procs(helpers, timeout=60)
    assert not lingering, [p.cmdline() for p in lingering]
    lost = open_client(isolated_mlflow).get_run(run.info.run_id)
    assert lost.info.status == "FAILED"
    assert lost.data.tags["twrl.end_reason"].startswith("lost:")


def kill_past_a_checkpoint(
    tmp_path: Path, uri: str, min_step: int, resume: str | None = None
) -> str:
    """Start a run (or resume ``resume``), wait for a checkpoint at ``min_step`` or later and for
    episodes recorded past it, then kill -9 the run's process group; the run's id."""
    client = MlflowClient(tracking_uri=uri)
    args = [f"resume={resume}"] if resume else []
    proc = start(tmp_path, *LONG, "monitor.checkpoint.every_steps=15000", *args)
    current = wait_for(
        lambda: [
            r
            for r in all_runs(uri)
            # The killed run being resumed still reads RUNNING until the new process reaps it.
            if r.info.run_id != resume
            and r.info.status == "RUNNING"
            and checkpoint_step(uri, r.info.run_id) >= min_step
        ],
        what="a checkpoint",
        proc=proc,
    )[0]
    step = checkpoint_step(uri, current.info.run_id)
    wait_for(
        lambda: (
            max(
                (m.step for m in client.get_metric_history(current.info.run_id, "episode/return")),
                default=0,
            )
            > step + 2000
        ),
        what="episodes past the checkpoint",
    )
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return str(current.info.run_id)


def test_kill_9_mid_run_then_again_resumes_to_one_timeline_and_the_exact_budget(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    """kill -9 after a checkpoint (with episodes recorded past it), resume, kill -9 the resumed
    run, resume again: one run holds the whole timeline, nothing of the dead attempts after
    their checkpoints, and the budget is met."""
    client = MlflowClient(tracking_uri=isolated_mlflow)
    run_id = kill_past_a_checkpoint(tmp_path, isolated_mlflow, 15000)
    run_id = kill_past_a_checkpoint(tmp_path, isolated_mlflow, 30000, resume=run_id)
    budget = checkpoint_step(isolated_mlflow, run_id) + 8000
    done = train(tmp_path, f"resume={run_id}", f"train.max_env_steps={budget}", *QUIET)
    assert done.returncode == 0, done.stderr
    (final,) = all_runs(isolated_mlflow)
    assert final.info.status == "FINISHED"
    assert budget <= final.data.metrics["env_steps"] < budget + 16  # one vector step over
    assert_one_timeline(client, final)
    everything = all_runs(isolated_mlflow, view=ViewType.ALL)
    assert len(everything) == 3
    assert sum(r.info.lifecycle_stage == "deleted" for r in everything) == 2


def test_ctrl_c_marks_the_run_killed_and_resume_continues_it(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    open_client(isolated_mlflow)  # the store exists: polling it below never races its creation
    proc = start(tmp_path, *LONG, "monitor.checkpoint.every_steps=5000")
    run = wait_for(
        lambda: [
            r for r in all_runs(isolated_mlflow) if checkpoint_step(isolated_mlflow, r.info.run_id)
        ],
        what="a checkpoint",
        proc=proc,
    )[0]
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted:" in stderr
    client = MlflowClient(tracking_uri=isolated_mlflow)
    killed = client.get_run(run.info.run_id)
    assert killed.info.status == "KILLED"
    assert killed.data.tags["twrl.end_reason"] == "interrupted"
    budget = int(killed.data.metrics["env_steps"]) + 20_000
    resumed = train(tmp_path, f"resume={run.info.run_id}", f"train.max_env_steps={budget}", *QUIET)
    assert resumed.returncode == 0, resumed.stderr
    (new,) = all_runs(isolated_mlflow)
    assert new.data.metrics["env_steps"] >= budget
    assert_one_timeline(client, new)
    again = train(tmp_path, f"resume={run.info.run_id}", *QUIET)
    assert again.returncode == 2
    assert f"resumed as run {new.info.run_id}" in again.stderr


def test_a_td_lambda_run_checkpointed_with_numba_resumes_where_numba_is_missing(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    """update.backend=auto: numba here, numpy on the machine that resumes (same checkpoint)."""
    pytest.importorskip("numba")
    td = ["env=cliffwalking", "model=table", "policy=egreedy", "update=td_lambda"]
    first = train(tmp_path, *td, "train.max_env_steps=2000", "eval.every_steps=null", *QUIET)
    assert first.returncode == 0, first.stderr
    (run,) = all_runs(isolated_mlflow, "CliffWalking-v1")
    assert checkpoint_step(isolated_mlflow, run.info.run_id) == 2000
    hidden = tmp_path / "no-numba"
    hidden.mkdir()
    (hidden / "numba.py").write_text("raise ImportError(\"No module named 'numba'\")\n")
    resumed = subprocess.run(
        [sys.executable, TRAIN, f"resume={run.info.run_id}", "train.max_env_steps=4000", *QUIET],
        cwd=tmp_path,
        env={**env_vars(), "PYTHONPATH": os.pathsep.join([str(hidden), str(project_root())])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    (new,) = [
        r for r in all_runs(isolated_mlflow, "CliffWalking-v1") if r.info.run_id != run.info.run_id
    ]
    assert new.data.tags["twrl.resumed_from"] == run.info.run_id
    assert new.data.metrics["env_steps"] >= 4000
    assert_one_timeline(MlflowClient(tracking_uri=isolated_mlflow), new)


DIVERGING = [
    "env=mountaincar",
    "model=tilecoding",
    "policy=egreedy",
    "update=td_lambda",
    "eval.every_steps=null",
    "monitor.checkpoint.every_steps=500",
    *QUIET,
]
DIVERGED = re.compile(
    r"The run diverged (?:at|by) env step ([\d,]+): [^;]+; it is marked FAILED and (.+?) "
    r"\(a smaller learning rate"
)


def divergence(stderr: str) -> tuple[int, str]:
    """The env step at which the run was found diverged, and what it says it keeps."""
    found = DIVERGED.search(stderr)
    assert found, stderr
    return int(found.group(1).replace(",", "")), found.group(2)


def test_a_run_diverging_after_a_checkpoint_fails_and_keeps_its_last_finite_one(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    """Whatever the machine's speed, a checkpoint exists before it diverges: the run is resumed
    from a finished 4,000-step run (a resumed run saves its state before its first step), and
    update.alpha=5 diverges thousands of steps later (near 10,000 with seed 0)."""
    first = train(tmp_path, *DIVERGING, "update.alpha=5", "train.max_env_steps=4000")
    assert first.returncode == 0, first.stderr
    (finished,) = all_runs(isolated_mlflow, "MountainCar-v0")
    result = train(tmp_path, f"resume={finished.info.run_id}", "train.max_env_steps=100000", *QUIET)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "Warning" not in result.stderr
    step, kept = divergence(result.stderr)
    # The finished run it resumed is kept (a result of its own): the continuation is the other.
    (run,) = [
        r
        for r in all_runs(isolated_mlflow, "MountainCar-v0")
        if r.info.run_id != finished.info.run_id
    ]
    assert run.info.status == "FAILED"
    assert kept in run.data.tags["twrl.end_reason"]
    record = json.loads(run.data.tags["twrl.checkpoint"])
    # More checkpoints may follow the resume's on a slow machine: it names the last one.
    assert kept == f"keeps its last finite checkpoint, from env step {record['env_steps']:,}"
    assert 4000 <= record["env_steps"] < step
    client = MlflowClient(tracking_uri=isolated_mlflow)
    local = client.download_artifacts(run.info.run_id, record["path"], str(tmp_path / "dl"))
    state = serialization.load(Path(local))
    weights = state["agent"]["model"]["weights"]
    assert np.isfinite(weights).all()
    assert np.abs(weights).max() > 0  # it learned before it diverged
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "model" not in names  # no NaN model is published


def test_a_run_diverging_before_its_first_checkpoint_fails_and_says_it_keeps_none(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    """update.alpha=1e30 makes the weights infinite within 20 env steps. The parameter check
    every 1,000 vector steps (num_envs=1 here) finds it before the run goes further, whatever
    the machine's speed; a checkpoint due meanwhile is not written from a non-finite state."""
    result = train(tmp_path, *DIVERGING, "update.alpha=1e30", "train.max_env_steps=100000")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "Warning" not in result.stderr
    step, kept = divergence(result.stderr)
    assert step <= 1000
    assert kept == "keeps no checkpoint, since none was saved before then"
    (run,) = all_runs(isolated_mlflow, "MountainCar-v0")
    assert run.info.status == "FAILED"
    assert kept in run.data.tags["twrl.end_reason"]
    assert "twrl.checkpoint" not in run.data.tags
    client = MlflowClient(tracking_uri=isolated_mlflow)
    assert "model" not in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_a_full_disk_ends_the_run_failed_with_a_nonzero_exit(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        uri = f"sqlite:///{mount / 'mlflow.db'}"
        env = {**env_vars(), "MLFLOW_TRACKING_URI": uri}
        open_client(uri)  # the store exists; the disk fills while the run records
        filler = mount / "filler"
        free = shutil.disk_usage(mount).free
        filler.write_bytes(b"\0" * max(free - 300_000, 0))
        proc = subprocess.run(
            [
                sys.executable,
                TRAIN,
                *LONG,
                "train.max_env_steps=400000",
                "monitor.checkpoint.every_steps=null",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr
        assert f"disk full: the disk holding the MLflow store {mount / 'mlflow.db'}" in proc.stderr
        filler.unlink()
        client = open_client(uri)  # whoever opens the store next finds the run ended
        (run,) = client.search_runs([client.get_experiment_by_name("CartPole-v1").experiment_id])
        assert run.info.status == "FAILED"
        assert run.data.tags["twrl.end_reason"].startswith("disk full: the disk holding")
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def finished_run(tmp_path: Path, isolated_mlflow: str):
    result = train(tmp_path, "train.max_env_steps=4000", "eval.every_steps=null", *QUIET)
    assert result.returncode == 0, result.stderr
    (run,) = all_runs(isolated_mlflow)
    return run


class Payload:
    """Unpickling this runs code: it creates the file it names."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def artifact_file(run, path: str) -> Path:
    return Path(run.info.artifact_uri.removeprefix("file://")) / path


def test_a_planted_pickle_in_a_store_is_never_run(
    tmp_path: Path, isolated_mlflow: str, finished_run
) -> None:
    marker = tmp_path / "pwned"
    client = MlflowClient(tracking_uri=isolated_mlflow)
    record = json.loads(finished_run.data.tags["twrl.checkpoint"])
    for path in (record["path"], "model/agent.pt"):
        torch.save({"history": Payload(marker), "agent": {}}, artifact_file(finished_run, path))
    # The attacker also rewrites the recorded hash: only weights_only stands in the way.
    record["sha256"] = serialization.sha256(artifact_file(finished_run, record["path"]))
    client.set_tag(finished_run.info.run_id, "twrl.checkpoint", json.dumps(record))
    run_id = finished_run.info.run_id
    resumed = train(tmp_path, f"resume={run_id}", "train.max_env_steps=8000", *QUIET)
    evaluated = subprocess.run(
        [sys.executable, "-m", "twrl_exp.evaluate", f"run_id={run_id}", "episodes=2"],
        cwd=tmp_path,
        env=env_vars(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    for result in (resumed, evaluated):
        assert result.returncode == 2, result.stderr
        assert "refused" in result.stderr
        assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_a_tampered_checkpoint_is_refused_by_its_hash(
    tmp_path: Path, isolated_mlflow: str, finished_run
) -> None:
    record = json.loads(finished_run.data.tags["twrl.checkpoint"])
    target = artifact_file(finished_run, record["path"])
    target.write_bytes(target.read_bytes()[:-100])  # truncated, as a killed copy would leave it
    resumed = train(tmp_path, f"resume={finished_run.info.run_id}", *QUIET)
    assert resumed.returncode == 2
    assert "does not match the SHA-256" in resumed.stderr


@pytest.mark.parametrize(
    "plant",
    [
        {"update": {"_target_": "os.makedirs"}},
        {"env": {"kwargs": {"_target_": "os.makedirs", "name": "PWNED"}}},
    ],
    ids=["group-target", "nested-target"],
)
def test_a_planted_target_in_a_logged_config_is_refused(
    tmp_path: Path, isolated_mlflow: str, finished_run, plant
) -> None:
    from omegaconf import OmegaConf

    marker = tmp_path / "pwned"
    config = artifact_file(finished_run, "config.yaml")
    logged = OmegaConf.load(config)
    text = json.dumps(plant).replace("PWNED", str(marker))  # os.makedirs(name=marker)
    planted = OmegaConf.merge(logged, OmegaConf.create(json.loads(text)))
    config.write_text(OmegaConf.to_yaml(planted))
    for key in ("rerun", "resume"):
        result = train(tmp_path, f"{key}={finished_run.info.run_id}", *QUIET)
        assert result.returncode == 2, result.stderr
        assert "refusing" in result.stderr or "may not set" in result.stderr
        assert "Traceback" not in result.stderr
    assert not marker.exists()
    assert len(all_runs(isolated_mlflow)) == 1  # nothing was recorded for the refused runs


@pytest.mark.parametrize(
    "planted",
    ["${oc.env:TWRL_TEST_SECRET}", "${oc.decode:'{a: 1}'}", "${no_such_resolver:x}"],
    ids=["oc-env", "oc-decode", "unknown"],
)
def test_an_interpolation_planted_in_a_logged_config_is_never_resolved(
    tmp_path: Path, isolated_mlflow: str, finished_run, planted: str, monkeypatch
) -> None:
    """A shared store must not read a user's environment: a logged config is plain values."""
    from omegaconf import OmegaConf

    secret = "s3cr3t-value-of-the-victim"
    monkeypatch.setenv("TWRL_TEST_SECRET", secret)
    for path in ("config.yaml", "model/config.yaml"):
        config = artifact_file(finished_run, path)
        logged = OmegaConf.load(config)
        logged.monitor.mlflow.run_name = planted
        if "env" in planted:  # also where a value is typed: a float
            logged["update"]["lr"] = planted
        config.write_text(OmegaConf.to_yaml(logged))
    run_id = finished_run.info.run_id
    results = [train(tmp_path, f"{key}={run_id}", *QUIET) for key in ("rerun", "resume")]
    results.append(
        subprocess.run(
            [sys.executable, "-m", "twrl_exp.evaluate", f"run_id={run_id}", "episodes=2"],
            cwd=tmp_path,
            env=env_vars(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    )
    for result in results:
        assert result.returncode == 2, result.stderr
        assert "monitor.mlflow.run_name" in result.stderr or "update.lr" in result.stderr
        assert "plain values only" in result.stderr
        assert "Traceback" not in result.stderr
        assert "Downloading artifacts" not in result.stderr  # one sentence, no progress bars
        assert secret not in result.stdout + result.stderr
    runs = all_runs(isolated_mlflow, view=ViewType.ALL)
    assert len(runs) == 1  # nothing was recorded for the refused runs
    (run,) = runs
    recorded = [*run.data.params.values(), *run.data.tags.values(), run.info.run_name]
    assert not any(secret in str(value) for value in recorded)


def test_resuming_a_finished_run_keeps_it_and_says_so(
    tmp_path: Path, isolated_mlflow: str, finished_run
) -> None:
    old_id = finished_run.info.run_id
    resumed = train(tmp_path, f"resume={old_id}", "train.max_env_steps=8000", *QUIET)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resume={old_id}: the run had FINISHED, so it is kept" in resumed.stderr
    client = MlflowClient(tracking_uri=isolated_mlflow)
    old = client.get_run(old_id)
    assert old.info.lifecycle_stage == "active"
    assert old.info.status == "FINISHED"
    new = next(r for r in all_runs(isolated_mlflow) if r.info.run_id != old_id)
    assert old.data.tags["twrl.superseded_by"] == new.info.run_id
    assert new.data.tags["twrl.resumed_from"] == old_id
    assert new.data.metrics["env_steps"] >= 8000
    assert_one_timeline(client, new)


# --------------------------------------------------------------------------- full disks


def quick_run(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, TRAIN, "train.max_env_steps=500", "eval.every_steps=null", *QUIET, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_states(db: Path) -> list[tuple[str, str, str | None]]:
    """(run id, status, end reason) of every run, read straight from the file (a full disk
    allows reading)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        return connection.execute(
            "SELECT r.run_uuid, r.status, t.value FROM runs r LEFT JOIN tags t "
            "ON t.run_uuid = r.run_uuid AND t.key = 'twrl.end_reason'"
        ).fetchall()


def one_sentence(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("left", [0, 40_000, 150_000], ids=["no-byte", "40kB", "150kB"])
def test_a_full_store_disk_at_the_start_fails_the_run_at_once_with_its_true_reason(
    tmp_path: Path, left: int
) -> None:
    """However little is left when a run starts (nothing: no run is created; a little: it is
    created, then refused; more: it trains, then its rows are refused), the command says which
    disk is full in one sentence, every run it created is FAILED with `disk full: ...` at once
    (before any space is freed), and the leaderboard still reads the store."""
    from tests.integration.disks import fill, tmpfs

    with tmpfs(tmp_path / "small", "20m") as disk:
        db = disk / "mlflow.db"
        env = {**env_vars(), "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
        first = quick_run(tmp_path, env)
        assert first.returncode == 0, first.stderr
        fill(disk, leave=left)
        result = quick_run(tmp_path, env, "monitor.mlflow.flush_every_s=0.1")
        assert result.returncode == 1, result.stderr
        sentence = one_sentence(result.stderr)
        assert f"disk full: the disk holding the MLflow store {db} is full (" in sentence
        assert "bytes free); free some space" in sentence
        states = run_states(db)
        new = [s for s in states if s[1] != "FINISHED"]
        for run_id, status, reason in new:
            assert status == "FAILED", states
            assert reason.startswith(f"disk full: the disk holding the MLflow store {db}")
            assert f"resume={run_id}` continues the run." in sentence
        if not new:
            assert sentence.endswith("free some space and run the command again.")
        board = subprocess.run(
            [sys.executable, "-m", "twrl_exp.leaderboard", "--no-html"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert board.returncode == 0, board.stderr
        assert "reinforce/categorical/mlp" in board.stdout
        assert not list(tmp_path.rglob("*.tmp")), "a temporary file was left behind"


@pytest.mark.parametrize("every", [1000, 1_000_000], ids=["mid-run", "at-the-end"])
def test_a_full_output_disk_fails_in_one_sentence_and_leaves_no_temporary_file(
    tmp_path: Path, isolated_mlflow: str, every: int
) -> None:
    """The run's own folder on a full disk: when Hydra makes it (nothing left behind), and when
    a checkpoint is due, during the run or as it ends (the run is FAILED with `disk full: ...`,
    no last.pt.tmp is left, and the sentence names the run to resume)."""
    from tests.integration.disks import fill, tmpfs

    with tmpfs(tmp_path / "small", "2m") as disk:
        filler = fill(disk)
        refused = quick_run(disk, env_vars())
        assert refused.returncode == 1, refused.stderr
        sentence = one_sentence(refused.stderr)
        assert sentence.startswith("error: disk full: the disk holding the run's output folder")
        assert sentence.endswith("free some space and run the command again.")
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no outputs/ left

        filler.unlink()
        fill(disk, leave=30_000)  # room for Hydra's files, not for a checkpoint
        failed = subprocess.run(
            [
                sys.executable,
                TRAIN,
                "train.max_env_steps=30000",
                f"monitor.checkpoint.every_steps={every}",
                "eval.every_steps=null",
                *QUIET,
            ],
            cwd=disk,
            env=env_vars(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert failed.returncode == 1, failed.stderr
        sentence = one_sentence(failed.stderr)
        assert sentence.startswith("error: disk full: the disk holding the run's checkpoints")
        (run,) = all_runs(isolated_mlflow)
        assert run.info.status == "FAILED"
        reason = run.data.tags["twrl.end_reason"]
        assert reason.startswith("disk full: the disk holding the run's checkpoints")
        assert f"`python train.py resume={run.info.run_id}` continues the run." in sentence
        assert not list(disk.rglob("*.tmp"))


# --------------------------------------------------------------------------- damaged stores


def killed_mid_run(tmp_path: Path, uri: str) -> str:
    """A run killed with kill -9 while it recorded, left RUNNING; its id."""
    open_client(uri)
    proc = start(tmp_path, *LONG)
    run = wait_for(
        lambda: [
            r
            for r in all_runs(uri)
            if r.info.status == "RUNNING" and r.data.metrics.get("episode/return")
        ],
        what="the first episodes",
        proc=proc,
    )[0]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return str(run.info.run_id)


def test_a_run_whose_tags_were_garbled_is_reaped_with_that_reason(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    """A store damaged in a dead run's liveness tags made every command that opens it fail (the
    reaper could not read the heartbeat), so the run stayed RUNNING and nothing trained."""
    import sqlite3

    run_id = killed_mid_run(tmp_path, isolated_mlflow)
    with sqlite3.connect(isolated_mlflow.removeprefix("sqlite:///")) as connection:
        connection.execute(
            "UPDATE tags SET value = ? WHERE key = 'twrl.heartbeat' AND run_uuid = ?",
            ("\u00ff\u00fe1e\u0007", run_id),
        )
    result = quick_run(tmp_path, env_vars())
    assert result.returncode == 0, result.stderr
    lost = MlflowClient(tracking_uri=isolated_mlflow).get_run(run_id)
    assert lost.info.status == "FAILED"
    assert "its heartbeat tag is unreadable" in lost.data.tags["twrl.end_reason"]


def damage_page(db: Path, index: str) -> None:
    """Overwrite the root page of ``index`` with garbage, as a bad sector or a torn copy would."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as connection:
        (page,) = connection.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (index,)
        ).fetchone()
        (size,) = connection.execute("PRAGMA page_size").fetchone()
    with db.open("r+b") as file:
        file.seek((page - 1) * size)
        file.write(b"\xff" * size)


def test_a_damaged_store_is_refused_in_one_sentence_and_repair_salvages_it(
    tmp_path: Path, isolated_mlflow: str, finished_run
) -> None:
    """The runs' index damaged while a run was RUNNING (killed): each command says the store is
    damaged and names its repair, which salvages every row (the damaged file kept beside it),
    and no run is left RUNNING."""
    import sqlite3

    db = Path(isolated_mlflow.removeprefix("sqlite:///"))
    killed = killed_mid_run(tmp_path, isolated_mlflow)
    damage_page(db, "sqlite_autoindex_runs_1")
    repair = f"`python -m twrl_exp.store repair {isolated_mlflow}`"
    evaluated = subprocess.run(
        [sys.executable, "-m", "twrl_exp.evaluate", f"run_id={finished_run.info.run_id}"],
        cwd=tmp_path,
        env=env_vars(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    trained = quick_run(tmp_path, env_vars())
    for result in (evaluated, trained):
        assert result.returncode in (1, 2), result.stderr
        sentence = one_sentence(result.stderr)
        assert "is damaged (SQLite says: database disk image is malformed)" in sentence
        assert repair in sentence
    repaired = subprocess.run(
        [sys.executable, "-m", "twrl_exp.store", "repair", isolated_mlflow],
        cwd=tmp_path,
        env=env_vars(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert repaired.returncode == 0, repaired.stderr
    assert "salvaged what the damaged file held; the damaged file is kept as" in repaired.stdout
    states = {run_id: (status, reason) for run_id, status, reason in run_states(db)}
    assert states[finished_run.info.run_id] == ("FINISHED", None)
    assert states[killed][0] == "FAILED"
    assert states[killed][1].startswith("lost: ")
    assert not [s for s in states.values() if s[0] == "RUNNING"]
    (damaged,) = db.parent.glob("mlflow.db.damaged-*")
    counts = []
    for file in (db, damaged):
        with contextlib.closing(sqlite3.connect(file)) as connection:
            counts.append(connection.execute("SELECT count(*) FROM metrics").fetchone()[0])
    assert counts[0] == counts[1] > 0  # every metric row salvaged
    again = quick_run(tmp_path, env_vars())
    assert again.returncode == 0, again.stderr
