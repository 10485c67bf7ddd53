"""Sweeps on the cluster services, all real: PostgreSQL (as a non-root user), an MLflow tracking
server on it with proxied artifacts, and a Ray cluster of a head and a worker node, started by
``python -m twrl_exp.cluster up`` as ``make cluster-up`` does. Every assertion reads the real
records: the study in PostgreSQL, the runs and artifacts in the MLflow server, the tasks in Ray's
state API.

Marked ``cluster`` (deselect with ``-m "not cluster"``); the tests share one cluster and run in
file order on one xdist worker (``make test`` distributes by file, ``--dist loadfile``), and each
test stands on its own records.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from twrl_exp.build import project_root

pytestmark = pytest.mark.cluster

FAST = [
    "train.max_env_steps=20000",
    "eval.every_steps=5000",
    "eval.episodes=5",
    "monitor.mlflow.flush_every_s=0.5",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cluster_cli(folder: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twrl_exp.cluster", *args, "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(folder),
    )


def clean_env(folder: Path, **extra: str) -> dict[str, str]:
    """A user's shell with nothing exported but the cluster folder: +cluster=local finds the
    services from the folder's cluster.json."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env.pop("TWRL_OPTUNA_STORAGE", None)
    env.update(PYTHONPATH=str(project_root()), TWRL_CLUSTER_DIR=str(folder), **extra)
    return env


class Cluster:
    def __init__(self, folder: Path, ports: dict[str, int]) -> None:
        self.folder, self.ports = folder, ports
        self.first_up: subprocess.CompletedProcess[str] | None = None

    @property
    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.folder / "cluster.json").read_text())
        return state

    @property
    def mlflow(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.state["uris"]["mlflow_uri"])

    @property
    def storage(self) -> str:
        return str(self.state["uris"]["optuna_storage"])

    def up(self) -> subprocess.CompletedProcess[str]:
        p = self.ports
        return cluster_cli(
            self.folder, "up", "--workers", "1", "--cpus", "1",
            "--pg-port", str(p["pg"]), "--mlflow-port", str(p["mlflow"]),
            "--ray-port", str(p["ray"]), "--dashboard-port", str(p["dashboard"]),
        )  # fmt: skip

    def sweep(self, *args: str, project: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "train.py", "-m", "+cluster=local", *args,
             f"hydra.sweep.dir={project / 'multirun'}"],
            cwd=project_root(),
            env=clean_env(self.folder, TWRL_PROJECT_ROOT=str(project)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )  # fmt: skip

    def run_sweep(self, *args: str, project: Path, timeout: float = 600) -> tuple[int, str, str]:
        proc = self.sweep(*args, project=project)
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err

    def ray(self, code: str) -> Any:
        """Run ``code`` (which sets ``result``) in a driver connected to the cluster."""
        script = (
            "import json, ray\n"
            f"ray.init(address='127.0.0.1:{self.ports['ray']}', logging_level='ERROR')\n"
            f"{code}\n"
            "print('RESULT' + json.dumps(result))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=300,
            env=clean_env(self.folder, RAY_AUTH_MODE="token"),
        )
        assert done.returncode == 0, done.stderr[-2000:]
        line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
        return json.loads(line.removeprefix("RESULT"))

    def ray_gcs(self) -> str:
        """The head's GCS address as Ray gives it (the node's address, port ``ray``)."""
        address: str = self.ray("result = ray.get_runtime_context().gcs_address")
        return address

    def sessions(self) -> list[int]:
        s = self.state["sessions"]
        return [e["sid"] for e in [s.get("mlflow"), s.get("ray_head"), *s["ray_workers"]] if e]


def mentioning(*texts: str) -> list[str]:
    """Live processes whose command line mentions any of ``texts``: ``pid cmdline``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or not running(int(entry)):
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(text in cmdline for text in texts):
            found.append(f"{entry} {cmdline[:200]}")
    return found


def session_members(sid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    members.append(int(entry))
            except OSError:
                continue
    return members


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (an exited one that its parent has yet to reap is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # PostgreSQL runs as a non-root user, who must reach the folder: not under pytest's 0700 tmp.
    folder = Path(tempfile.mkdtemp(prefix="twrl-cluster-"))
    folder.chmod(0o755)
    ports = {"pg": free_port(), "mlflow": free_port(), "ray": free_port(), "dashboard": free_port()}
    c = Cluster(folder / "cluster", ports)
    started = c.first_up = c.up()
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield c
    finally:
        cluster_cli(c.folder, "down")


def wait_until(predicate: Any, timeout: float = 300, every: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)


def study_trials(c: Cluster, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=c.storage).get_trials(deepcopy=False)
    except KeyError:
        return []


def runs_of(c: Cluster, experiment: str) -> list[Any]:
    client = c.mlflow
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


def split(runs: list[Any]) -> tuple[list[Any], list[Any]]:
    parents = [r for r in runs if "sweep" in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def optuna_sweep(study: str, experiment: str, n_trials: int, *extra: str) -> list[str]:
    return [
        "+sweep=cartpole_reinforce",
        f"hydra.sweeper.study_name={study}",
        f"hydra.sweeper.n_trials={n_trials}",
        f"monitor.mlflow.experiment={experiment}",
        *FAST,
        *extra,
    ]


def test_without_an_address_a_sweep_starts_its_own_ray(tmp_path: Path, isolated_mlflow) -> None:
    """hydra/launcher=ray alone: a Ray on this machine, for this sweep, stopped with it."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env["PYTHONPATH"] = str(project_root())
    done = subprocess.run(
        [sys.executable, "train.py", "-m", "hydra/launcher=ray", "hydra.launcher.num_cpus=2",
         "update.lr=1e-3,1e-2", "train.max_env_steps=3000", "eval.every_steps=null",
         "monitor.console=false", f"hydra.sweep.dir={tmp_path / 'multirun'}"],
        cwd=project_root(), env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(isolated_mlflow)
    exp = client.get_experiment_by_name("CartPole-v1")
    assert exp is not None
    children = [
        r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags
    ]
    assert sorted(r.info.status for r in children) == ["FINISHED", "FINISHED"]
    assert all(r.data.tags.get("ray.node_id") for r in children)


def test_a_ray_sweep_trains_each_structure_as_one_population_task(
    tmp_path: Path, isolated_mlflow
) -> None:
    """hydra.launcher.population=N: a grid's jobs of one structure go to one Ray task and train
    there as one population, each job still its own run; two structures, two tasks."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env["PYTHONPATH"] = str(project_root())
    done = subprocess.run(
        [sys.executable, "train.py", "-m", "hydra/launcher=ray", "hydra.launcher.num_cpus=2",
         "hydra.launcher.population=4", "update=ppo", "update.n_steps=16,32", "seed=0,1",
         "train.max_env_steps=1500", "eval.every_steps=null", "monitor.console=false",
         f"hydra.sweep.dir={tmp_path / 'multirun'}"],
        cwd=project_root(), env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(isolated_mlflow)
    exp = client.get_experiment_by_name("CartPole-v1")
    assert exp is not None
    children = [
        r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags
    ]
    assert sorted(r.info.status for r in children) == ["FINISHED"] * 4
    tasks: dict[str, set[tuple[str, str]]] = {}
    for run in children:
        assert run.data.metrics["env_steps"] >= 1500
        jobs = tasks.setdefault(run.data.tags["ray.task_id"], set())
        jobs.add((run.data.params["update.n_steps"], run.data.params["seed"]))
    assert sorted(tasks.values(), key=sorted) == [
        {("16", "0"), ("16", "1")},
        {("32", "0"), ("32", "1")},
    ]


def test_cluster_up_runs_the_services_as_promised(cluster: Cluster) -> None:
    state = cluster.state
    assert (cluster.folder / "cluster.json").stat().st_mode & 0o777 == 0o600
    # PostgreSQL: in the folder, not as root, on loopback only.
    pid = int((cluster.folder / "postgres" / "postmaster.pid").read_text().split()[0])
    assert os.stat(f"/proc/{pid}").st_uid != 0
    import psycopg

    url = state["uris"]["optuna_storage"].replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url) as db:
        assert db.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
    # MLflow: artifacts are proxied by the server (workers need no shared disk).
    client = cluster.mlflow
    exp = client.create_experiment("proxied")
    assert client.get_experiment(exp).artifact_location.startswith("mlflow-artifacts:")
    # Ray: a head and a worker node.
    nodes = cluster.ray("result = [n['NodeID'] for n in ray.nodes() if n['Alive']]")
    assert len(nodes) == 2
    # Idempotent: a second `up` keeps what runs.
    again = cluster.up()
    assert again.returncode == 0, again.stderr
    assert "postgres  running" in again.stdout
    assert "mlflow    running" in again.stdout
    assert "ray       running" in again.stdout


def test_no_command_prints_the_database_password_and_its_export_line_still_works(
    cluster: Cluster,
) -> None:
    """`up` and `env` print the storage's export line without the password; run by a shell,
    the line reads the password from cluster.json (0600) and gives the URL that works."""
    password = cluster.state["password"]
    assert cluster.first_up is not None
    env = cluster_cli(cluster.folder, "env")
    assert env.returncode == 0, env.stderr
    for said in (cluster.first_up, cluster.up(), env):
        assert password not in said.stdout + said.stderr
        assert "export TWRL_OPTUNA_STORAGE=" in said.stdout
    line = next(x for x in env.stdout.splitlines() if x.startswith("export TWRL_OPTUNA_STORAGE="))
    shell = subprocess.run(
        ["bash", "-c", f'{line}\nprintf %s "$TWRL_OPTUNA_STORAGE"'],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(cluster.folder),
        cwd="/",
    )
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout == cluster.storage
    assert password in shell.stdout
    optuna.create_study(study_name="from_another_shell", storage=shell.stdout)


def test_bad_addresses_are_one_sentence_before_anything_is_written(
    cluster: Cluster, tmp_path: Path
) -> None:
    cases = {
        "paths.optuna_storage=postgresql+psycopg://twrl:pw@127.0.0.1:1/optuna": (
            "The Optuna storage postgresql+psycopg://twrl:***@127.0.0.1:1/optuna cannot be opened"
        ),
        "paths.mlflow_uri=http://127.0.0.1:1": (
            "The MLflow server http://127.0.0.1:1 cannot be reached"
        ),
        "hydra.launcher.address=127.0.0.1:1": "The Ray cluster at 127.0.0.1:1 cannot be reached",
    }
    for i, (override, sentence) in enumerate(cases.items()):
        study, experiment = f"bad{i}", f"bad{i}"
        sweeps = [optuna_sweep(study, experiment, 2, override)]
        if "optuna" not in override:  # a grid sweep has no study
            grid = ["update.lr=1e-3,1e-2", f"monitor.mlflow.experiment={experiment}", *FAST]
            sweeps.append([*grid, override])
        for args in sweeps:
            code, _, err = cluster.run_sweep(*args, project=tmp_path / f"p{i}", timeout=300)
            lines = [line for line in err.splitlines() if line.strip()]
            assert code == 2, err
            assert len(lines) == 1, err
            assert sentence in lines[0], err
            assert "pw@" not in err  # a password is never shown
            assert study not in optuna.get_all_study_names(cluster.storage)
            assert runs_of(cluster, experiment) == []
            assert not any((tmp_path / f"p{i}" / "multirun").rglob("*.json"))


def test_grid_sweep_on_ray_records_every_run_under_one_parent_in_the_server(
    cluster: Cluster, tmp_path: Path
) -> None:
    code, out, err = cluster.run_sweep(
        "update.lr=1e-3,1e-2", "seed=0,1", "monitor.mlflow.experiment=grid", *FAST,
        project=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    (parent,), children = split(runs_of(cluster, "grid"))
    assert parent.info.status == "FINISHED"
    assert len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert all(c.info.status == "FINISHED" for c in children)
    assert all(c.data.tags.get("ray.node_id") for c in children)
    # Links open the server's UI, where the runs are (not `mlflow ui`'s default address).
    server = cluster.state["uris"]["mlflow_uri"]
    best = next(line for line in out.splitlines() if line.startswith("best:"))
    assert f"{server}/#/experiments/{parent.info.experiment_id}/runs/" in best
    assert ":5000" not in out
    page = tmp_path / "leaderboard.html"
    ranked = subprocess.run(
        [sys.executable, "-m", "twrl_exp.leaderboard", "--tracking-uri", server,
         "--experiment", "grid", "--html", str(page)],
        cwd=tmp_path, env=clean_env(cluster.folder), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ranked.returncode == 0, ranked.stderr
    assert f"{server}/#/experiments/{parent.info.experiment_id}/runs/" in page.read_text()
    assert ":5000" not in page.read_text()


def test_optuna_sweep_runs_on_both_nodes_into_postgres_and_the_server(
    cluster: Cluster, tmp_path: Path
) -> None:
    code, out, err = cluster.run_sweep(
        *optuna_sweep(
            "two_nodes", "two_nodes", 8,
            "hydra.sweeper.seeds_per_trial=2",
            "hydra.sweeper.n_jobs=2",
            # A wide learning-rate range, so that some trials are hopeless and get pruned.
            "update.lr=tag(log,interval(1e-6,3e-2))",
            "hydra.sweeper.pruner.n_startup_trials=2",
            "hydra.sweeper.pruner.n_warmup_steps=5000",
        ),
        project=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert "***@" in out
    assert cluster.state["password"] not in out + err
    trials = study_trials(cluster, "two_nodes")
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 8
    assert len(trials) == 8
    assert states.count(TrialState.PRUNED) >= 1, "pruning never happened"
    # Both nodes ran trials: by Ray's own task records, and by the runs' and trials' tags.
    nodes = cluster.ray("result = [n['NodeID'] for n in ray.nodes() if n['Alive']]")
    tasks = cluster.ray(
        "from ray.util.state import list_tasks\n"
        "result = [t.node_id for t in list_tasks(filters=[('func_or_class_name', '=', '_run_job')],"
        " limit=10000, raise_on_missing_output=False) if t.state == 'FINISHED']"
    )
    assert set(tasks) == set(nodes)
    assert {t.user_attrs["ray.node_id"] for t in trials} == set(nodes)
    (parent,), children = split(runs_of(cluster, "two_nodes"))
    assert parent.info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.data.tags["ray.node_id"] for c in children} == set(nodes)
    assert {c.data.tags["optuna.trial"] for c in children} == {str(t.number) for t in trials}
    assert "trial.storage" in children[0].data.params
    assert cluster.state["password"] not in children[0].data.params["trial.storage"]
    # The best trial's video plays from the server's artifact store.
    best = optuna.load_study(study_name="two_nodes", storage=cluster.storage).best_trial
    run = next(c for c in children if c.data.tags["optuna.trial"] == str(best.number))
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    video = cluster.mlflow.download_artifacts(run.info.run_id, "videos/final.mp4", str(tmp_path))
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(video)
    meta = next(reader)
    frames = sum(1 for _ in reader)
    assert frames > 10, meta
    assert meta["size"][0] > 0


def worker_node_busy(c: Cluster, study: str) -> bool:
    """A trial runs on the worker node and has recorded metrics."""
    head = c.ray("result = ray.get_runtime_context().get_node_id()")
    running = [t for t in study_trials(c, study) if t.state == TrialState.RUNNING]
    elsewhere = {str(t.number) for t in running if t.user_attrs.get("ray.node_id") not in (head,)}
    live = [
        r
        for r in runs_of(c, study)
        if r.data.tags.get("optuna.trial") in elsewhere and r.data.metrics.get("episode/return")
    ]
    return bool(live)


def test_killing_a_worker_node_mid_sweep_loses_no_finished_run(
    cluster: Cluster, tmp_path: Path
) -> None:
    # 60k steps now train in under a second: a trial on the worker could end between two looks
    # and the node never be seen busy (a 300 s time-out in one fresh-clone run); 600k last seconds.
    proc = cluster.sweep(
        *optuna_sweep("lose_a_node", "lose_a_node", 6, "hydra.sweeper.pruner.name=none",
                      "train.max_env_steps=600000"),
        project=tmp_path,
    )  # fmt: skip
    try:
        wait_until(lambda: worker_node_busy(cluster, "lose_a_node"), every=2.0)
        worker = cluster.state["sessions"]["ray_workers"][0]["sid"]
        for pid in session_members(worker):  # the node dies: its raylet and every worker of it
            os.kill(pid, signal.SIGKILL)
        _out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    trials = study_trials(cluster, "lose_a_node")
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert lost
    assert all(t.user_attrs.get("lost") for t in lost)
    client = cluster.mlflow
    _, children = split(runs_of(cluster, "lose_a_node"))
    assert not [r for r in children if r.info.status == "RUNNING"]
    killed = [r for r in children if r.data.tags["optuna.trial"] in {str(t.number) for t in lost}]
    assert killed
    assert all(r.info.status == "FAILED" for r in killed)
    assert all("lost" in r.data.tags["twrl.end_reason"] for r in killed)
    for run in (r for r in children if r.info.status == "FINISHED"):
        history = client.get_metric_history(run.info.run_id, "episode/return")
        assert len(history) == run.data.metrics["episodes"]
    # `up` brings the lost node back.
    again = cluster.up()
    assert again.returncode == 0, again.stderr
    assert "worker 0 started" in again.stdout


def test_a_sweep_killed_9_resumes_to_exactly_n_trials(cluster: Cluster, tmp_path: Path) -> None:
    args = optuna_sweep(
        "killed", "killed", 5, "hydra.sweeper.pruner.name=none", "train.max_env_steps=60000"
    )
    proc = cluster.sweep(*args, project=tmp_path)
    wait_until(
        lambda: (
            sum(t.state == TrialState.COMPLETE for t in study_trials(cluster, "killed")) >= 1
            and sum(t.state == TrialState.RUNNING for t in study_trials(cluster, "killed")) >= 1
        ),
        every=2.0,
    )
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    # Ray ends the jobs of a dead driver; wait for their processes to be gone.
    from twrl_exp import processes

    wait_until(
        lambda: all(
            processes.alive(t.user_attrs.get("twrl.process", "")) is not True
            for t in study_trials(cluster, "killed")
            if t.state == TrialState.RUNNING
        ),
        timeout=120,
    )
    code, _, err = cluster.run_sweep(*args, project=tmp_path)
    assert code == 0, err
    trials = study_trials(cluster, "killed")
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 5
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert all(t.user_attrs.get("lost") for t in trials if t.state == TrialState.FAIL)
    parents, children = split(runs_of(cluster, "killed"))
    assert len(parents) == 1
    assert parents[0].info.status == "FINISHED"
    assert not [r for r in children if r.info.status == "RUNNING"]


def test_ctrl_c_stops_the_jobs_on_the_cluster_and_leaves_nothing_running(
    cluster: Cluster, tmp_path: Path
) -> None:
    """SIGINT reaches only the driver (Ray's workers are not in the terminal's process group):
    the launcher cancels the tasks, each job closes its run KILLED and fails its trial."""
    proc = cluster.sweep(
        *optuna_sweep("ctrl_c", "ctrl_c", 6, "hydra.sweeper.pruner.name=none",
                      "train.max_env_steps=50000000"),
        project=tmp_path,
    )  # fmt: skip
    try:
        wait_until(
            lambda: (
                sum(
                    t.state == TrialState.RUNNING and "twrl.process" in t.user_attrs
                    for t in study_trials(cluster, "ctrl_c")
                )
                == 2
                and len([r for r in runs_of(cluster, "ctrl_c") if r.data.metrics]) >= 2
            ),
            every=1.0,
        )
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    trials = study_trials(cluster, "ctrl_c")
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all(t.user_attrs.get("interrupted") for t in trials)
    statuses = sorted(r.info.status for r in runs_of(cluster, "ctrl_c"))
    assert statuses == ["KILLED", "KILLED", "KILLED"]  # the parent and both trials' runs


def training(c: Cluster, study: str) -> int:
    """Trials whose job runs and has reported to the study (it is past its start)."""
    return sum(
        t.state == TrialState.RUNNING
        and "twrl.process" in t.user_attrs
        and bool(t.intermediate_values)
        for t in study_trials(c, study)
    )


def postgres(c: Cluster, action: str) -> None:
    """Stop (fast shutdown) or start the cluster's PostgreSQL with its pg_ctl, as `cluster
    down` and `cluster up` do (as the postgres user)."""
    from twrl_exp import cluster as services

    if action == "stop":
        assert services._pg_stop(c.folder) == "stopped"
    else:
        assert services._pg_start(c.folder, c.state) == "started"


def test_a_postgresql_restart_mid_sweep_loses_no_trial(cluster: Cluster, tmp_path: Path) -> None:
    """PostgreSQL (the study's database, and the tracking server's) stopped for 15 s while
    both trials train: the jobs' and the sweep's storage calls wait for it (within
    hydra.sweeper.storage_retry_s, 60 s by default), so the sweep goes on; no trial fails, every
    run finishes with all its metrics, and a rerun finds the study complete at n_trials. (Before,
    the sweep died with a traceback and the trial in flight was FAIL and counted.)"""
    args = optuna_sweep(
        "pg_restart", "pg_restart", 4, "hydra.sweeper.pruner.name=none",
        "train.max_env_steps=200000", "eval.every_steps=2000",
    )  # fmt: skip
    proc = cluster.sweep(*args, project=tmp_path)
    try:
        wait_until(lambda: training(cluster, "pg_restart") >= 2, every=1.0)
        postgres(cluster, "stop")
        time.sleep(15)
        postgres(cluster, "start")
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    trials = study_trials(cluster, "pg_restart")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4, [t.user_attrs for t in trials]
    parents, children = split(runs_of(cluster, "pg_restart"))
    assert [r.info.status for r in parents] == ["FINISHED"]
    assert sorted(r.info.status for r in children) == ["FINISHED"] * 4
    for run in children:
        history = cluster.mlflow.get_metric_history(run.info.run_id, "episode/return")
        assert len(history) == run.data.metrics["episodes"]
    code, _, err = cluster.run_sweep(*args, project=tmp_path)
    assert code == 0, err
    assert [t.state for t in study_trials(cluster, "pg_restart")] == [TrialState.COMPLETE] * 4


def test_postgresql_down_past_the_retry_window_stops_the_sweep_in_one_sentence(
    cluster: Cluster, tmp_path: Path
) -> None:
    """PostgreSQL down for longer than hydra.sweeper.storage_retry_s (5 s here; the runs are
    recorded in a local store, so that only the study's database is gone): each job gives up
    on its trial, the sweep stops in one sentence (exit 1) naming the storage (password hidden)
    and how to resume, its parent run FAILED with the reason; once the database is back, the
    same command ends the study with exactly n_trials real results."""
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = optuna_sweep(
        "pg_down", "pg_down", 2, "hydra.sweeper.pruner.name=none",
        "train.max_env_steps=200000", "eval.every_steps=2000",
        "hydra.sweeper.storage_retry_s=5", "hydra.sweeper.grace_period=5",
        "hydra.sweeper.heartbeat_interval=1", f"paths.mlflow_uri={mlflow_uri}",
    )  # fmt: skip
    proc = cluster.sweep(*args, project=tmp_path)
    try:
        wait_until(lambda: training(cluster, "pg_down") >= 2, every=1.0)
        postgres(cluster, "stop")
        try:
            _, err = proc.communicate(timeout=180)
        finally:
            postgres(cluster, "start")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert "The Optuna storage postgresql+psycopg://twrl:***@127.0.0.1:" in errors[0]
    assert "did not answer for 5 s" in errors[0]
    assert "run the same command again once the database answers" in errors[0]
    assert cluster.state["password"] not in err
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("pg_down")
    assert experiment is not None
    (parent,), _ = split(client.search_runs([experiment.experiment_id]))
    assert parent.info.status == "FAILED"
    assert "did not answer for 5 s" in parent.data.tags["twrl.end_reason"]
    code, _, err = cluster.run_sweep(*args, project=tmp_path)
    assert code == 0, err
    trials = study_trials(cluster, "pg_down")
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert stopped  # the trials the outage stopped: not counted
    assert all({"infrastructure", "lost"} & t.user_attrs.keys() for t in stopped), [
        t.user_attrs for t in stopped
    ]
    parents, children = split(client.search_runs([experiment.experiment_id]))
    assert [r.info.status for r in parents] == ["FINISHED"]
    assert not [r for r in children if r.info.status == "RUNNING"]


@pytest.mark.timeout(1500)  # cluster up, a sweep, the head lost, a rerun: 266 s on CI
def test_killing_the_head_mid_sweep_ends_every_record_and_the_rerun_completes(
    cluster: Cluster, tmp_path: Path
) -> None:
    """kill -9 of the head's every process while both trials train: within 30 s the sweep
    stops in one sentence (exit 1) naming what was lost and how to resume, its trials FAIL with
    ``infrastructure`` saying the head was lost (not counted), their runs and the parent run
    FAILED with the reason. (Before: 75 s, Ray's "Failed to connect to GCS" only, everything
    left RUNNING.) `cluster up` then starts a new head and worker, leaving nothing of the old
    cluster running, and the same command completes the study."""
    args = optuna_sweep(
        "lose_the_head", "lose_the_head", 2, "hydra.sweeper.pruner.name=none",
        # Trials that outlast the head's loss being noticed (10 s): 300k steps now train in
        # seconds, so the worker's trial could finish first, FINISHED and COMPLETE.
        "train.max_env_steps=3000000", "eval.every_steps=20000",
    )  # fmt: skip
    old_session, gcs = cluster.state["ray_session_dir"], cluster.ray_gcs()
    assert old_session
    proc = cluster.sweep(*args, project=tmp_path)
    try:
        wait_until(lambda: training(cluster, "lose_the_head") >= 2, every=1.0)
        for pid in session_members(cluster.state["sessions"]["ray_head"]["sid"]):
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        _, err = proc.communicate(timeout=300)
        took = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, err
    assert took < 30, f"the sweep took {took:.0f} s to stop:\n{err}"
    assert "Traceback" not in err
    assert "Failed to connect to GCS" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert f"The Ray head at {gcs} was lost" in errors[0]
    assert "failed as infrastructure (not counted toward n_trials)" in errors[0]
    assert "start the cluster again (`make cluster-up`" in errors[0]
    assert "and run the same command." in errors[0]
    trials = study_trials(cluster, "lose_the_head")
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all("The Ray head at" in t.user_attrs["infrastructure"] for t in trials)
    parents, children = split(runs_of(cluster, "lose_the_head"))
    assert [r.info.status for r in parents] == ["FAILED"]
    assert "The Ray head at" in parents[0].data.tags["twrl.end_reason"]
    assert len(children) == 2
    ended = [(r.info.status, r.data.tags.get("twrl.end_reason")) for r in children]
    assert all(status == "FAILED" for status, _ in ended), ended
    assert all("lost" in r.data.tags["twrl.end_reason"] for r in children)
    again = cluster.up()
    assert again.returncode == 0, again.stderr
    assert "head started, worker 0 started" in again.stdout
    assert cluster.state["ray_session_dir"] != old_session
    assert mentioning(old_session) == []  # no helper of the old cluster outlives it
    code, _, err = cluster.run_sweep(*args, project=tmp_path)
    assert code == 0, err
    trials = study_trials(cluster, "lose_the_head")
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    parents, _ = split(runs_of(cluster, "lose_the_head"))
    assert [r.info.status for r in parents] == ["FINISHED"]


def test_cluster_down_stops_everything_and_up_brings_the_same_data_back(
    cluster: Cluster,
) -> None:
    # A run with an artifact and a study of its own, so this test stands on its own.
    client = cluster.mlflow
    experiment = client.create_experiment("kept")
    run = client.create_run(experiment)
    client.log_text(run.info.run_id, "kept", "kept.txt")
    study = optuna.create_study(study_name="kept", storage=cluster.storage)
    study.enqueue_trial({"x": 1.0})
    study.optimize(lambda t: t.suggest_float("x", 0, 2), n_trials=3)
    sessions = cluster.sessions()
    ray_session = cluster.state["ray_session_dir"]
    postmaster = int((cluster.folder / "postgres" / "postmaster.pid").read_text().split()[0])
    runs_before = {r.info.run_id for r in runs_of(cluster, "kept")}
    assert runs_before == {run.info.run_id}
    down = cluster_cli(cluster.folder, "down")
    assert down.returncode == 0, down.stderr
    assert all(session_members(sid) == [] for sid in sessions)
    wait_until(lambda: not running(postmaster), timeout=30, every=0.2)
    # Nothing `up` started is left: Ray's helpers (log monitor, agents) included.
    assert mentioning(str(cluster.folder), ray_session) == []
    assert (cluster.folder / "postgres" / "PG_VERSION").exists()
    assert any((cluster.folder / "artifacts").rglob("kept.txt"))
    up = cluster.up()
    assert up.returncode == 0, up.stderr
    assert {r.info.run_id for r in runs_of(cluster, "kept")} == runs_before
    assert len(study_trials(cluster, "kept")) == 3
    assert cluster.mlflow.download_artifacts(run.info.run_id, "kept.txt")
