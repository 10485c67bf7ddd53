"""The services of a sweep cluster on one machine: ``make cluster-up`` / ``make cluster-down``.

``python -m twrl_exp.cluster up`` starts, in the cluster folder (``<project>/.cluster``, or
``$TWRL_CLUSTER_DIR``):

- **PostgreSQL**, initialised in ``postgres/`` on first use, bound to 127.0.0.1, run as a
  non-root user (PostgreSQL refuses root; as root we run it as ``postgres``, or
  ``$TWRL_PG_USER``), password-protected (the password is in ``cluster.json``, mode 0600), with a
  database for Optuna studies and one for MLflow;
- an **MLflow tracking server** on it, bound to 127.0.0.1, which proxies artifacts (videos,
  models) into ``artifacts/``: workers upload through it and need no shared disk;
- a **Ray cluster**: a head node and ``--workers`` worker nodes (separate raylets on this
  machine, as on separate machines), each with ``--cpus`` CPUs.

It is idempotent: whatever already runs is kept, whatever is missing (a killed worker node, a
head killed with its helpers still running) is started, after what is left of it is stopped.
``down`` stops every process ``up`` started, Ray's helpers (log monitor, dashboard and runtime
env agents) included, and PostgreSQL with a clean shutdown, and keeps the folder, so the next
``up`` shows the same studies, runs and artifacts. ``env`` prints the URIs to export, the
storage's as a ``$(python -m twrl_exp.cluster env --storage …)`` that reads the password from
``cluster.json`` (no command prints it unasked); ``+cluster=local`` reads ``cluster.json`` itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twrl_exp.errors import ConfigError
from twrl_exp.paths import project_dir

STATE_FILE = "cluster.json"
DB_USER = "twrl"
DATABASES = ("optuna", "mlflow")
KEYS = {  # what +cluster=local reads (twrl_cluster resolver), and the variable that overrides it
    "mlflow_uri": "MLFLOW_TRACKING_URI",
    "optuna_storage": "TWRL_OPTUNA_STORAGE",
    "ray_address": "RAY_ADDRESS",
}


class ClusterError(ConfigError):
    """A service cannot be started or stopped: one sentence, with the fix."""


def cluster_dir() -> Path:
    """``$TWRL_CLUSTER_DIR``, else ``<project>/.cluster``."""
    override = os.environ.get("TWRL_CLUSTER_DIR")
    return Path(override).resolve() if override else project_dir() / ".cluster"


def read_state(folder: Path | None = None) -> dict[str, Any] | None:
    path = (folder or cluster_dir()) / STATE_FILE
    if not path.is_file():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def _write_state(folder: Path, state: dict[str, Any]) -> None:
    path = folder / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.chmod(0o600)  # it holds the database password
    tmp.replace(path)


def uri(key: str) -> str:
    """What ``+cluster=local`` points at: ``$<VARIABLE>`` if exported, else the local cluster's
    own (``cluster.json``), else one sentence saying how to get one."""
    if key not in KEYS:
        raise ConfigError(f"twrl_cluster:{key} is unknown: use one of {', '.join(KEYS)}.")
    exported = os.environ.get(KEYS[key])
    if exported:
        return exported
    state = read_state()
    if state is None:
        raise ConfigError(
            f"+cluster=local needs the cluster's services, and none run from {cluster_dir()} "
            f"(and {KEYS[key]} is not set): start them with `make cluster-up` (or `python -m "
            "twrl_exp.cluster up`), or export the URIs of a remote cluster."
        )
    return str(state["uris"][key])


# ---------------------------------------------------------------------------- processes


def _live(proc: Any) -> bool:
    """A process that runs (an exited one its parent has yet to reap is not)."""
    import psutil

    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _session_members(sid: int, exited: bool = False) -> list[int]:
    """The live processes of session ``sid`` (``exited``: and those not yet reaped)."""
    import psutil

    members = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(OSError):
            if os.getsid(proc.pid) == sid and (exited or _live(proc)):
                members.append(proc.pid)
    return members


def _cmdlines(pids: list[int]) -> list[str]:
    import psutil

    out = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            out.append(" ".join(psutil.Process(pid).cmdline()))
    return out


def _mentioning(text: str) -> list[int]:
    """Live processes whose command line mentions ``text`` (a Ray session's folder)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if text in " ".join(proc.info["cmdline"] or ()) and _live(proc):
                found.append(proc.pid)
    return found


def _session_alive(entry: dict[str, Any] | None) -> bool:
    if not entry:
        return False
    from twrl_exp import processes

    leader_alive = processes.alive(entry["identity"]) is True
    return leader_alive or bool(_session_members(entry["sid"]))


def _stop_session(sid: int, grace_s: float = 15.0) -> int:
    """SIGTERM every process of session ``sid``, then SIGKILL what is left, and wait (at most
    ``grace_s``) until their parents have reaped them; how many there were."""
    stopped = _stop(lambda: _session_members(sid), grace_s)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _session_members(sid, exited=True):
        time.sleep(0.2)
    return stopped


def _stop(members: Any, grace_s: float = 15.0) -> int:
    """SIGTERM the processes ``members()`` lists, then SIGKILL what is left; how many there were."""
    first = members()
    for pid in first:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and members():
        time.sleep(0.2)
    for pid in members():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(first)


def _spawn(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A process in a session of its own (so ``down`` finds all it starts), output to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )


def _session_entry(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    from twrl_exp import processes

    return {"sid": proc.pid, "identity": processes.identity(proc.pid)}


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])[:400]


# ---------------------------------------------------------------------------- PostgreSQL


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=_version_key)
    if candidates:
        return str(candidates[-1])
    raise ClusterError(
        f"PostgreSQL is not installed ({name} is neither on PATH nor in "
        "/usr/lib/postgresql/*/bin): install it (Debian/Ubuntu: apt-get install postgresql; "
        "macOS: brew install postgresql@16), or point the sweeps at a remote one."
    )


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in path.parts[-3].split(".") if p.isdigit())


def _pg_user() -> str | None:
    """The user PostgreSQL runs as: ourselves, unless we are root (which it refuses)."""
    if os.geteuid() != 0:
        return None
    import pwd

    name = os.environ.get("TWRL_PG_USER", "postgres")
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise ClusterError(
            f"PostgreSQL will not run as root and there is no user {name!r} to run it as: "
            "create one (useradd --system postgres) or set TWRL_PG_USER to an existing user."
        ) from None
    return name


def _as_pg_user(
    args: list[str], user: str | None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, user=user, capture_output=True, text=True, **kwargs)


def _pg_init(folder: Path, data: Path, user: str | None, password: str, port: int) -> None:
    initdb = _pg_bin("initdb")
    data.mkdir(parents=True)
    data.chmod(0o700)
    secret = folder / "pwfile"
    secret.write_text(password + "\n")
    if user is not None:
        import pwd

        owner = pwd.getpwnam(user)
        for path in (data, secret):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        probe = _as_pg_user(["test", "-w", str(data)], user)
        if probe.returncode != 0:
            shutil.rmtree(data, ignore_errors=True)
            secret.unlink()
            raise ClusterError(
                f"PostgreSQL runs as {user!r}, which cannot reach {data}: put the cluster "
                "folder where that user can (TWRL_CLUSTER_DIR=/var/tmp/twrl-cluster), or "
                "open the folders above it to it."
            )
    secret.chmod(0o600)
    done = _as_pg_user(
        [
            initdb,
            "-D",
            str(data),
            "-U",
            DB_USER,
            "--auth=scram-sha-256",
            f"--pwfile={secret}",
            "-E",
            "UTF8",
            "--no-instructions",
        ],
        user,
    )
    secret.unlink()
    if done.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise ClusterError(f"initdb failed: {(done.stderr or done.stdout).strip()[:300]}")
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(
            "\n# twrl-exp cluster: loopback only, TCP only\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {port}\n"
            "unix_socket_directories = ''\n"
            "max_connections = 200\n"
        )


def _pg_running(data: Path, user: str | None) -> bool:
    if not (data / "PG_VERSION").exists():
        return False
    return _as_pg_user([_pg_bin("pg_ctl"), "-D", str(data), "status"], user).returncode == 0


def _pg_start(folder: Path, state: dict[str, Any]) -> str:
    data, user = folder / "postgres", _pg_user()
    port = int(state["ports"]["postgres"])
    if _pg_running(data, user):
        return "running"
    if not (data / "PG_VERSION").exists():
        _pg_init(folder, data, user, state["password"], port)
    if not _port_free(port):
        raise ClusterError(
            f"Port {port} is taken by another program, so PostgreSQL cannot listen on it: "
            "stop that program or choose another port (python -m twrl_exp.cluster up --pg-port)."
        )
    log = folder / "postgres.log"
    log.touch()
    if user is not None:
        import pwd

        owner = pwd.getpwnam(user)
        os.chown(log, owner.pw_uid, owner.pw_gid)
    started = _as_pg_user(
        [_pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "120", "start"],
        user,
        start_new_session=True,
    )
    if started.returncode != 0:
        raise ClusterError(f"PostgreSQL did not start: {_tail(log) or started.stderr.strip()}")
    _create_databases(state)
    return "started"


def _create_databases(state: dict[str, Any]) -> None:
    import psycopg

    port, password = int(state["ports"]["postgres"]), state["password"]
    with psycopg.connect(
        host="127.0.0.1",
        port=port,
        user=DB_USER,
        password=password,
        dbname="postgres",
        autocommit=True,
        connect_timeout=30,
    ) as connection:
        existing = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
        for name in DATABASES:
            if name not in existing:
                connection.execute(f'CREATE DATABASE "{name}"')


def _pg_stop(folder: Path) -> str:
    data = folder / "postgres"
    if not (data / "PG_VERSION").exists():
        return "not initialised"
    user = _pg_user()
    if not _pg_running(data, user):
        return "not running"
    _as_pg_user([_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], user)
    return "stopped"


def _db_url(state: dict[str, Any], db: str, password: bool = True) -> str:
    secret = f":{state['password']}" if password else ""
    return f"postgresql+psycopg://{DB_USER}{secret}@127.0.0.1:{state['ports']['postgres']}/{db}"


# ---------------------------------------------------------------------------- MLflow server


def _mlflow_healthy(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _mlflow_start(folder: Path, state: dict[str, Any]) -> str:
    port = int(state["ports"]["mlflow"])
    entry = state["sessions"].get("mlflow")
    if _session_alive(entry) and _mlflow_healthy(port):
        return "running"
    if entry:
        _stop_session(entry["sid"])
    if not _port_free(port):
        raise ClusterError(
            f"Port {port} is taken by another program, so the MLflow server cannot listen on "
            "it: stop that program or choose another port (python -m twrl_exp.cluster up "
            "--mlflow-port)."
        )
    artifacts = folder / "artifacts"
    artifacts.mkdir(exist_ok=True)
    log = folder / "mlflow.log"
    args = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        # The password travels in the environment (libpq's PGPASSWORD), not on the command line.
        "--backend-store-uri",
        _db_url(state, "mlflow", password=False),
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts.as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    proc = _spawn(args, log, env={"PGPASSWORD": state["password"]})
    state["sessions"]["mlflow"] = _session_entry(proc)
    deadline = time.monotonic() + 180
    while not _mlflow_healthy(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop_session(proc.pid)
            raise ClusterError(f"The MLflow server did not start: {_tail(log)}")
        time.sleep(0.5)
    return "started"


# ---------------------------------------------------------------------------- Ray


def _ray(*args: str) -> list[str]:
    beside = Path(sys.executable).parent / "ray"
    return [str(beside) if beside.exists() else (shutil.which("ray") or "ray"), *args]


def _ray_start(folder: Path, state: dict[str, Any]) -> list[str]:
    ports, cpus = state["ports"], str(state["cpus_per_node"])
    sessions = state["sessions"]
    said = []
    head = sessions.get("ray_head")
    if not _node_alive(head, _GCS, _RAYLET):
        # What is left of a head that died and of its worker nodes (their raylets exit a minute
        # after losing the head, Ray's helpers such as log_monitor stay, and a raylet still
        # looking for the old head makes `ray start --head` refuse the port): stopped first.
        _ray_stop(state)
        if not _port_free(int(ports["ray"])):
            raise ClusterError(
                f"Port {ports['ray']} is taken by another program (another Ray?), so the Ray "
                "head cannot listen on it: stop it (ray stop) or choose another port "
                "(python -m twrl_exp.cluster up --ray-port)."
            )
        _ray_token()
        args = _ray(
            "start",
            "--head",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(ports["ray"]),
            "--num-cpus",
            cpus,
            "--object-store-memory",
            str(200 * 2**20),
            "--include-dashboard",
            "true",
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(ports["ray_dashboard"]),
            "--disable-usage-stats",
        )
        sessions["ray_head"] = _ray_node(folder, args, "ray-head.log", "the Ray head")
        state["ray_session_dir"] = _session_dir(sessions["ray_head"])
        said.append("head started")
    workers = []
    for worker in sessions.get("ray_workers", []):
        if _node_alive(worker, _RAYLET):
            workers.append(worker)
        else:  # its raylet died (killed, or lost its head): its helpers go too
            _stop_session(worker["sid"])
    for index in range(len(workers), int(state["workers"])):
        args = _ray(
            "start",
            "--address",
            f"127.0.0.1:{ports['ray']}",
            "--node-ip-address",
            "127.0.0.1",
            "--num-cpus",
            cpus,
            "--object-store-memory",
            str(200 * 2**20),
            "--disable-usage-stats",
        )
        workers.append(_ray_node(folder, args, f"ray-worker-{index}.log", "a Ray worker node"))
        said.append(f"worker {index} started")
    sessions["ray_workers"] = workers
    return said or ["running"]


# Ray's token authentication: without it, anyone who reaches the head's port can run code on
# the cluster. The token is Ray's (~/.ray/auth_token, made here if missing); drivers on this
# machine find it, other machines need a copy (see the README).
_RAY_ENV = {"RAY_AUTH_MODE": "token"}


def _ray_token() -> None:
    subprocess.run(
        _ray("get-auth-token", "--generate"),
        capture_output=True,  # it prints the token: keep it off the terminal and the logs
        env={**os.environ, **_RAY_ENV},
        check=False,
    )


def _ray_node(folder: Path, args: list[str], log_name: str, what: str) -> dict[str, Any]:
    log = folder / log_name
    proc = _spawn(args, log, env=_RAY_ENV)
    entry = _session_entry(proc)
    try:
        code = proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        code = -1
    if code != 0:
        _stop_session(proc.pid)
        raise ClusterError(f"{what} did not start: {_tail(log)}")
    return entry


_GCS, _RAYLET = "gcs/gcs_server", "raylet/raylet"  # in the command lines of a node's processes
_SESSION_DIR = re.compile(r"/\S*?/session_\d{4}-\d\d-\d\d_[\d_-]+\d")


def _node_alive(entry: dict[str, Any] | None, *programs: str) -> bool:
    """Whether a Ray node runs: its session holds a live process of each of ``programs`` (a
    raylet; on the head, the GCS too), not just helpers that outlived them."""
    if not entry:
        return False
    lines = _cmdlines(_session_members(entry["sid"]))
    return all(any(program in line for line in lines) for program in programs)


def _session_dir(entry: dict[str, Any]) -> str | None:
    """The Ray session's folder (``/tmp/ray/session_<time>_<pid>``), from its head's processes:
    every process Ray starts for this cluster on this machine names it."""
    for line in _cmdlines(_session_members(entry["sid"])):
        found = _SESSION_DIR.search(line)
        if found:
            return found.group(0)
    return None


def _ray_stop(state: dict[str, Any]) -> int:
    """Stop the head and worker nodes: every process of their sessions, and any other process
    that names this cluster's Ray session folder (a helper that left its node's session)."""
    sessions = state["sessions"]
    stopped = 0
    for entry in [*sessions.get("ray_workers", []), sessions.get("ray_head")]:
        if entry:
            stopped += _stop_session(entry["sid"]) > 0
    session_dir = state.get("ray_session_dir")
    if session_dir:
        _stop(lambda: _mentioning(session_dir))
    sessions["ray_workers"], sessions["ray_head"] = [], None
    # Ray remembers the last cluster `ray start` made here; it is gone.
    current = Path(os.environ.get("TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
    with contextlib.suppress(OSError):
        if current.read_text().strip().endswith(f":{state['ports']['ray']}"):
            current.unlink()
    return stopped


# ---------------------------------------------------------------------------- commands


def up(folder: Path, *, workers: int, cpus: int | None, ports: dict[str, int]) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # PostgreSQL's user must reach postgres/ inside it
    state = read_state(folder) or {
        "password": secrets.token_urlsafe(18),
        "ports": ports,
        "sessions": {},
    }
    state["workers"] = workers
    state["cpus_per_node"] = cpus or max(1, (os.cpu_count() or 2) // (workers + 1))
    said = {}
    try:
        said["postgres"] = _pg_start(folder, state)
        said["mlflow"] = _mlflow_start(folder, state)
        said["ray"] = ", ".join(_ray_start(folder, state))
    finally:
        state["uris"] = {
            "mlflow_uri": f"http://127.0.0.1:{state['ports']['mlflow']}",
            "optuna_storage": _db_url(state, "optuna"),
            "ray_address": f"127.0.0.1:{state['ports']['ray']}",
            "ray_dashboard": f"http://127.0.0.1:{state['ports']['ray_dashboard']}",
        }
        _write_state(folder, state)
    state["said"] = said
    return state


def down(folder: Path) -> dict[str, str]:
    state = read_state(folder)
    if state is None:
        return {"cluster": f"nothing was started from {folder}"}
    said = {"ray": f"{_ray_stop(state)} node(s) stopped"}
    mlflow = state["sessions"].get("mlflow")
    said["mlflow"] = "stopped" if mlflow and _stop_session(mlflow["sid"]) else "not running"
    state["sessions"]["mlflow"] = None
    said["postgres"] = _pg_stop(folder)
    _write_state(folder, state)
    return said


def status(folder: Path) -> dict[str, str]:
    state = read_state(folder)
    if state is None:
        return {"cluster": f"nothing was started from {folder}"}
    sessions = state["sessions"]
    workers = sum(_node_alive(w, _RAYLET) for w in sessions.get("ray_workers", []))
    return {
        "postgres": "running" if _pg_running(folder / "postgres", _pg_user()) else "stopped",
        "mlflow": "running" if _mlflow_healthy(int(state["ports"]["mlflow"])) else "stopped",
        "ray": (
            f"head and {workers} of {state['workers']} worker node(s) running"
            if _node_alive(sessions.get("ray_head"), _GCS, _RAYLET)
            else "stopped"
        ),
    }


def exports(state: dict[str, Any], folder: Path) -> str:
    """What to export in another shell, password not shown: the storage URL is read from the
    folder's ``cluster.json`` (mode 0600) when the line runs, by the same Python."""
    uris = state["uris"]
    storage = shlex.join(
        [sys.executable, "-m", "twrl_exp.cluster", "env", "--storage", "--dir", str(folder)]
    )
    return "\n".join(
        [
            f"export MLFLOW_TRACKING_URI={uris['mlflow_uri']}",
            f'export TWRL_OPTUNA_STORAGE="$({storage})"',
            f"export RAY_ADDRESS={uris['ray_address']}",
            "export RAY_AUTH_MODE=token",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m twrl_exp.cluster",
        description="PostgreSQL, an MLflow server and a Ray cluster on this machine, for sweeps "
        "(python train.py -m +sweep=... +cluster=local).",
    )
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="the cluster folder (default: $TWRL_CLUSTER_DIR, else <project>/.cluster)",
    )
    parser.add_argument(
        "--storage",
        action="store_true",
        help="env: print only the Optuna storage URL, password included (for $(...))",
    )
    parser.add_argument("--workers", type=int, default=1, help="Ray worker nodes (default 1)")
    parser.add_argument(
        "--cpus",
        type=int,
        default=None,
        help="CPUs per Ray node (default: this machine's CPUs / nodes)",
    )
    parser.add_argument("--pg-port", type=int, default=5433)
    parser.add_argument("--mlflow-port", type=int, default=5050)
    parser.add_argument("--ray-port", type=int, default=6379)
    parser.add_argument("--dashboard-port", type=int, default=8265)
    args = parser.parse_args(argv)
    folder = (args.dir or cluster_dir()).resolve()
    try:
        if args.workers < 1 or (args.cpus is not None and args.cpus < 1):
            raise ClusterError(
                f"--workers={args.workers} --cpus={args.cpus} is invalid: a cluster needs at "
                "least 1 worker node and 1 CPU per node."
            )
        if args.command == "up":
            ports = {
                "postgres": args.pg_port,
                "mlflow": args.mlflow_port,
                "ray": args.ray_port,
                "ray_dashboard": args.dashboard_port,
            }
            state = up(folder, workers=args.workers, cpus=args.cpus, ports=ports)
            for service, what in state["said"].items():
                print(f"{service:9} {what}")
            print(f"folder    {folder}")
            print(
                f"dashboard {state['uris']['ray_dashboard']} (Ray), "
                f"{state['uris']['mlflow_uri']} (MLflow)"
            )
            print(
                "Sweeps use these services with +cluster=local; to use them from any shell "
                f"(the database password stays in {folder / STATE_FILE}, readable by you only):"
            )
            print(exports(state, folder))
        elif args.command == "down":
            for service, what in down(folder).items():
                print(f"{service:9} {what}")
            print(f"folder    {folder} (kept: `make cluster-up` brings the same data back)")
        elif args.command == "status":
            for service, what in status(folder).items():
                print(f"{service:9} {what}")
        else:
            found = read_state(folder)
            if found is None:
                raise ClusterError(f"No cluster was started from {folder}: run `make cluster-up`.")
            print(found["uris"]["optuna_storage"] if args.storage else exports(found, folder))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
