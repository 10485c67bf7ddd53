"""What a run writes to MLflow, written by a separate process, off the training path.

Writing a metric row through MLflow's SQLAlchemy store costs about 0.1 ms of Python, an artifact
upload or a tag a few milliseconds, and importing MLflow and opening its store seconds; on the
training thread (or on a thread of its process, which competes for the GIL) that was 20-40% of a
short run and a third of its start-up. So a run's process never imports MLflow: it hands its
run's creation, its rows (already batched), uploads, tags, model and end down a pipe to one
writer process (``python -m twrl_exp.monitor.writer``), which does the writing on another core.

There is one writer per training process (:func:`shared`). ``python train.py`` starts it first
thing (:func:`prestart`), so MLflow's import overlaps the run's own imports and building; every
later run of the process (a sweep's trials, a benchmark's repeats) finds it ready. It also keeps
each run's heartbeat and samples the machine's system metrics for it (MLflow's sampler), so
those threads are not in the training process either.

Guarantees:

- **Order and completeness.** Jobs are done in the order they were sent. :meth:`Writer.sync`
  returns only once every job sent before it is done: a finished run has every row.
- **Failures reach the run.** A job the store refuses (a full disk, a locked or vanished store)
  is reported back; that run's next :meth:`Writer.send` or :meth:`Writer.sync` raises it, and
  the run fails. Its later jobs are dropped, except stopping its sampler and ending it; other
  runs are not affected.
- **Death of the run.** If the training process dies (kill -9, a crash), the writer still does
  every job it was sent, stops the heartbeats (so the run is found lost and marked FAILED by the
  next process that opens the store), then exits: a killed run loses at most the rows of its
  last send interval, and a checkpoint handed over is uploaded and named. Ctrl-C to the process
  group does not stop the writer (it ignores SIGINT and SIGTERM); the run stops itself and ends
  its record.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from twrl_exp.monitor.frames import receive as _receive
from twrl_exp.monitor.frames import send as _send

Row = tuple[str, float, int, int]  # key, value, timestamp (ms), step
_PARAM_BATCH = 100
_ROWS_PER_BATCH = 1000  # MLflow's log_batch limit


class WriterError(RuntimeError):
    """The writer could not do a job of this run (or is gone)."""


class Writer:
    """The training side of the writer process.

    ``rows(uri, run_id, rows)``, ``upload(...)`` and ``system(...)`` return at once;
    ``sync(run_id)`` waits until they are done; ``close()`` ends the process.
    """

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])  # where twrl_exp is importable
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [package_root, *filter(None, [os.environ.get("PYTHONPATH")])]
        )}  # fmt: skip
        self.pid = os.getpid()  # the process it serves (a forked child starts its own)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "twrl_exp.monitor.writer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._errors: dict[str, str] = {}
        self._answers: dict[tuple[Any, ...], Any] = {}  # (kind, token or handle) -> reply
        self._answered = threading.Condition()
        self._gone: str | None = None
        self._token = 0
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="twrl-writer-replies", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        return self._gone is None and self._proc.poll() is None

    def _read(self) -> None:
        assert self._proc.stdout is not None
        while True:
            try:
                reply = _receive(self._proc.stdout)
            except (EOFError, OSError, pickle.UnpicklingError):
                with self._answered:
                    self._gone = self._gone or "the writer process ended"
                    self._answered.notify_all()
                return
            if reply[0] == "error":
                _, run_id, text = reply
                self._errors.setdefault(run_id, text)
            else:
                key = (reply[0], reply[1], reply[2]) if reply[0] == "result" else reply[:2]
                with self._answered:
                    self._answers[key] = reply[3:] if reply[0] == "result" else reply[2:]
                    self._answered.notify_all()

    def _wait(self, kind: str, key: Any, timeout: float) -> Any:
        with self._answered:
            got = self._answered.wait_for(
                lambda: (kind, key) in self._answers or self._gone is not None, timeout
            )
            if (kind, key) in self._answers:
                return self._answers.pop((kind, key))
        if not got:
            raise WriterError(f"the writer did not answer within {timeout:g} s")
        raise WriterError(self._gone or "the writer process ended")

    def check(self, run_id: str) -> None:
        """Raise :class:`WriterError` if a job of ``run_id`` failed."""
        if run_id in self._errors:
            raise WriterError(self._errors[run_id])

    def _post(self, run_id: str, message: Any, *, check: bool = True) -> None:
        if check:
            self.check(run_id)
        assert self._proc.stdin is not None
        try:
            with self._lock:
                _send(self._proc.stdin, message)
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise WriterError(self._gone or f"the writer process ended ({exc})") from exc

    def rows(self, uri: str, run_id: str, rows: list[Row]) -> None:
        """Write metric ``rows`` to run ``run_id`` in store ``uri``."""
        if rows:
            self._post(run_id, ("rows", uri, run_id, rows))

    def upload(
        self,
        uri: str,
        run_id: str,
        path: Path,
        artifact_dir: str | None,
        *,
        tag: tuple[str, str] | None = None,
        remove: Path | None = None,
    ) -> None:
        """Upload ``path`` into ``artifact_dir`` of the run; then set ``tag`` (so the tag never
        names a partial upload) and delete ``remove`` (the writer owns it from here)."""
        self._post(run_id, ("upload", uri, run_id, str(path), artifact_dir, tag, remove))

    def system(self, uri: str, run_id: str, start: bool) -> None:
        """Start or stop sampling the machine's system metrics into the run (every 10 s)."""
        self._post(run_id, ("system", uri, run_id, start), check=start)  # stop even a failed run's

    def curve(self, uri: str, run_id: str, history: dict[str, Any], **options: Any) -> None:
        """Draw the learning curve of ``history`` (a ``History`` as a dict; see
        :func:`twrl_exp.monitor.curves.plot_learning_curve` for ``options``) and upload it."""
        self._post(run_id, ("curve", uri, run_id, history, options))

    def open(
        self,
        uri: str,
        *,
        experiment: str,
        run_name: str,
        tags: dict[str, str],
        params: dict[str, str],
        config_yaml: str,
        system_metrics: bool,
        curve: bool = True,
        model: bool = True,
    ) -> int:
        """Ask for a run to be created (with its params, config, heartbeat and sampler; with
        ``curve``, the drawer of its learning curve is started; with ``model``, what logging
        its model needs is imported meanwhile); the handle that :meth:`opened` waits on."""
        with self._lock:
            self._token += 1
            handle = self._token
        # MLflow's settings as they are now (a launcher may set them after the writer started).
        settings = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
        message = ("open", uri, handle, experiment, run_name, tags, params, config_yaml)
        self._post("", (*message, system_metrics, settings, curve, model))
        return handle

    def prepare(self, uri: str) -> None:
        """Open store ``uri`` now (a run will be asked for soon), if it exists: a new store is
        only created when a run is, so a command that fails before leaves nothing behind."""
        from twrl_exp.store import is_server, sqlite_path

        db = sqlite_path(uri)
        if is_server(uri) or (db is not None and db.exists()):
            self._post("", ("prepare", uri, ""))

    def opened(self, handle: int, timeout: float = 600.0) -> dict[str, Any]:
        """The run asked for by :meth:`open`: ``run_id``, ``experiment_id``, ``artifact_uri``,
        and ``error`` (what failed, the run's creation or after it: ``config_error`` says
        whether it is the user's to fix, e.g. an unwritable store)."""
        (info,) = self._wait("opened", handle, timeout)
        return dict(info)

    def set_tag(self, uri: str, run_id: str, key: str, value: str) -> None:
        self._post(run_id, ("tag", uri, run_id, key, value))

    def model(
        self,
        uri: str,
        run_id: str,
        experiment_id: str,
        folder: Path,
        observation_shape: tuple[int, ...],
    ) -> None:
        """Upload ``folder`` as the run's ``model/`` and log it as the pyfunc model ``agent``
        (the writer owns and removes the folder); its URI comes back with :meth:`result`."""
        message = ("model", uri, run_id, experiment_id, str(folder), observation_shape)
        self._post(run_id, message)

    def result(self, run_id: str, name: str) -> Any:
        """What job ``name`` of ``run_id`` returned (after a :meth:`sync`), or None."""
        with self._answered:
            found = self._answers.pop(("result", run_id, name), None)
        return None if found is None else found[0]

    def end(self, uri: str, run_id: str, status: str, reason: str | None) -> None:
        """Stop the run's heartbeat and sampler, write ``reason`` and end it as ``status``
        (even a run whose earlier jobs failed)."""
        self._post(run_id, ("end", uri, run_id, status, reason), check=False)

    def sync(self, run_id: str, timeout: float = 600.0) -> None:
        """Return once every job sent so far is done (or raise why one of ``run_id``'s
        was not)."""
        with self._lock:
            self._token += 1
            token = self._token
        self._post(run_id, ("sync", token), check=False)
        self._wait("synced", token, timeout)
        self.check(run_id)

    def close(self, timeout: float = 120.0) -> None:
        """Let the writer finish every job, then end it."""
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.close()  # EOF: do what is left, then exit
                self._proc.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._gone = self._gone or "the writer was closed"


_shared: Writer | None = None
_shared_lock = threading.Lock()


def prestart(argv: list[str] | None = None) -> None:
    """Start this process's writer now, so that it imports MLflow while the run is built; not
    for a sweep's own process (its trials run elsewhere, or start it when they begin) or a
    command that only prints (``--help``, ``--cfg``, ``--info``)."""
    args = sys.argv[1:] if argv is None else argv
    if {"-m", "--multirun", "-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info"} & {
        a.split("=")[0] for a in args
    }:
        return
    with contextlib.suppress(OSError):
        shared()


def shared() -> Writer:
    """This process's writer, started on first use (and again if it died)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.pid != os.getpid() or not _shared.alive:
            _shared = Writer()
            atexit.register(_shared.close)
        return _shared


# ---------------------------------------------------------------------------- the process


def _reply(out: IO[bytes], message: Any) -> None:
    """Answer the training process (if it died, nobody is listening: go on with the jobs)."""
    with contextlib.suppress(OSError, ValueError):
        _send(out, message)


def _sample_once(sampler: Any) -> None:
    """Record one sample of MLflow's system-metrics sampler now: the CPU use since it started, and
    memory, disk and network as they are, so that a run that ended before the sampler's first
    interval (10 s; a classic-control run often takes one) still has its System metrics."""
    for monitor in sampler.monitors:
        monitor.clear_metrics()  # the start's sample: psutil's first CPU reading is 0
    sampler.collect_metrics()
    sampler.publish_metrics(sampler.aggregate_metrics())
    sampler.mlflow_logger.flush()


def default_artifact_root(tracking_uri: str) -> str | None:
    """``<dir of mlflow.db>/mlruns`` for a SQLite store, so artifacts sit beside the database."""
    from twrl_exp.store import sqlite_path

    db = sqlite_path(tracking_uri)
    return None if db is None else (db.parent / "mlruns").as_uri()


def ensure_experiment(client: Any, name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created (tolerating a concurrent creator) if missing.

    A deleted one is refused (one sentence with the commands that restore it or record
    elsewhere): the user deleted it on purpose, and restoring it would bring back its deleted
    runs; MLflow keeps its name taken, so a new one of that name cannot be made either."""
    from mlflow.exceptions import MlflowException

    from twrl_exp.errors import ConfigError
    from twrl_exp.monitor.links import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
    from twrl_exp.store import redact

    found = client.get_experiment_by_name(name)
    if found is None:
        with contextlib.suppress(MlflowException):  # a concurrent creator may win
            client.create_experiment(
                name,
                artifact_location=default_artifact_root(tracking_uri),
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
            )
        found = client.get_experiment_by_name(name)
        if found is None:
            raise ConfigError(f"The MLflow experiment {name!r} could not be created.")
    if found.lifecycle_stage == "deleted":  # a user deleted it: not ours to bring back
        restore = (
            f"MLFLOW_TRACKING_URI={redact(tracking_uri)} mlflow experiments restore "
            f"--experiment-id {found.experiment_id}"
        )
        raise ConfigError(
            f"The MLflow experiment {name!r} (id {found.experiment_id}) was deleted; restore it "
            f"with `{restore}` (its runs come back with it), or record into another experiment "
            "with monitor.mlflow.experiment=<name>."
        )
    if EXPERIMENT_KIND_TAG not in found.tags:  # stores made before: open as model training too
        client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return str(found.experiment_id)


class _Runs:
    """The writer's side: one MLflow client per store, failed runs, heartbeats, samplers."""

    def __init__(self, reply_to: IO[bytes]) -> None:
        from mlflow.entities import Metric

        self._metric = Metric
        self._clients: dict[str, Any] = {}
        self._samplers: dict[str, Any] = {}
        self._heartbeats: dict[str, Any] = {}
        # Per run: its name and params (for its model), its summary rows and its model's id
        # (the summary is linked to the model when the run ends).
        self._runs: dict[str, tuple[str, dict[str, str]]] = {}
        self._summary: dict[str, dict[str, Row]] = {}
        self._models: dict[str, str] = {}
        self.failed: set[str] = set()
        self.reply_to = reply_to
        self._drawing: list[tuple[str, str, dict[str, Any], str, Any]] = []
        self._drawer: subprocess.Popen[bytes] | None = None
        self._drawer_started = False
        self._model_warmed = False

    def start_drawer(self) -> None:
        """Start the curve drawer (once): when a run that draws a curve opens, so that its
        matplotlib import overlaps the run's training."""
        if self._drawer_started:
            return
        self._drawer_started = True
        try:
            self._drawer = subprocess.Popen(
                [sys.executable, "-m", "twrl_exp.monitor.curves"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        except OSError:  # curves are drawn here, then
            threading.Thread(target=_warm, daemon=True).start()

    def client(self, uri: str) -> Any:
        if uri not in self._clients:
            from twrl_exp import store

            self._clients[uri] = store.open_client(uri)
        return self._clients[uri]

    def prepare(self, uri: str) -> None:
        with contextlib.suppress(Exception):  # what is wrong is said when the run is created
            self.client(uri)

    def fail(self, run_id: str, exc: BaseException) -> None:
        from twrl_exp.store import redact, root_cause

        self.failed.add(run_id)
        _reply(self.reply_to, ("error", run_id, redact(root_cause(exc))))

    def open(
        self,
        uri: str,
        handle: int,
        experiment: str,
        run_name: str,
        tags: dict[str, str],
        params: dict[str, str],
        config_yaml: str,
        system_metrics: bool,
        settings: dict[str, str],
        curve: bool,
        model: bool,
    ) -> None:
        from twrl_exp import store
        from twrl_exp.errors import ConfigError

        if curve:
            self.start_drawer()
        if model and not self._model_warmed:  # a second of MLflow's, once per process
            self._model_warmed = True
            threading.Thread(target=_warm_model, daemon=True).start()
        os.environ.update(settings)

        info: dict[str, Any] = {"run_id": None, "error": None, "config_error": False}
        try:
            client = store.open_client(uri)  # reaps the store's orphans, as every opener does
            self._clients[uri] = client
            experiment_id = ensure_experiment(client, experiment, uri)
            run = client.create_run(experiment_id, run_name=run_name, tags=tags)
            run_id = info["run_id"] = run.info.run_id
            info.update(experiment_id=experiment_id, artifact_uri=run.info.artifact_uri)
            self._heartbeats[run_id] = store.run_heartbeat(client, run_id)
            self._runs[run_id] = (run_name, params)
            if system_metrics:
                self.system(uri, run_id, True)
            from mlflow.entities import Param

            items = [Param(k, v) for k, v in params.items()]
            for i in range(0, len(items), _PARAM_BATCH):
                client.log_batch(run_id, params=items[i : i + _PARAM_BATCH])
            client.log_text(run_id, config_yaml, "config.yaml")
        except Exception as exc:
            info["config_error"] = isinstance(exc, ConfigError)
            info["error"] = store.redact(
                str(exc) if isinstance(exc, ConfigError) else store.root_cause(exc)
            )
            if info["run_id"] is not None:
                self.failed.add(info["run_id"])
        _reply(self.reply_to, ("opened", handle, info))

    def rows(self, uri: str, run_id: str, rows: list[Row]) -> None:
        client, metric = self.client(uri), self._metric
        summary = self._summary.setdefault(run_id, {})
        summary.update({row[0]: row for row in rows if "/" not in row[0]})
        for i in range(0, len(rows), _ROWS_PER_BATCH):
            chunk = [metric(k, v, ts, step) for k, v, ts, step in rows[i : i + _ROWS_PER_BATCH]]
            client.log_batch(run_id, metrics=chunk)

    def upload(
        self,
        uri: str,
        run_id: str,
        path: str,
        artifact_dir: str | None,
        tag: tuple[str, str] | None,
        remove: str | None,
    ) -> None:
        try:
            client = self.client(uri)
            client.log_artifact(run_id, path, artifact_dir)
            if tag is not None:
                client.set_tag(run_id, *tag)
        finally:
            if remove is not None:
                shutil.rmtree(remove, ignore_errors=True)

    def tag(self, uri: str, run_id: str, key: str, value: str) -> None:
        self.client(uri).set_tag(run_id, key, value)

    def model(
        self,
        uri: str,
        run_id: str,
        experiment_id: str,
        folder: str,
        observation_shape: tuple[int, ...],
    ) -> None:
        from twrl_exp.identity import agent_params, model_name
        from twrl_exp.mlflow_model import log_agent_model

        run_name, params = self._runs.get(run_id, ("agent", {}))
        try:
            self.client(uri).log_artifacts(run_id, folder, "model")
            model_uri, self._models[run_id] = log_agent_model(
                uri,
                experiment_id,
                run_id,
                Path(folder),
                observation_shape,
                name=model_name(run_name),
                params=agent_params(params),
            )
        finally:
            shutil.rmtree(Path(folder).parent, ignore_errors=True)
        _reply(self.reply_to, ("result", run_id, "model", model_uri))

    def curve(self, uri: str, run_id: str, history: dict[str, Any], options: Any) -> None:
        """Have the drawer draw the curve while the next jobs are done (it is uploaded by
        :meth:`settle`, before the run's end), or draw it here if there is no drawer."""
        import tempfile

        path = str(Path(tempfile.mkdtemp(prefix="twrl-curve-")) / "learning_curve.png")
        self._drawing.append((uri, run_id, history, path, options))
        self.start_drawer()
        if self._drawer is not None:
            try:
                assert self._drawer.stdin is not None
                _send(self._drawer.stdin, (history, path, options))
                return
            except (OSError, ValueError):
                self._drawer = None
        self.settle()  # no drawer: drawn here, now

    def settle(self) -> None:
        """Upload every curve given to the drawer, in order (drawing here what it could not)."""
        while self._drawing:
            uri, run_id, history, path, options = self._drawing.pop(0)
            try:
                failed = None
                if self._drawer is not None:
                    assert self._drawer.stdout is not None
                    try:
                        failed = _receive(self._drawer.stdout)
                    except (EOFError, OSError):
                        self._drawer = None  # it died: draw this one and the rest here
                if self._drawer is None:
                    from twrl_exp.monitor.curves import plot_learning_curve

                    plot_learning_curve(history, Path(path), **options)
                elif failed is not None:
                    raise RuntimeError(f"the learning curve could not be drawn ({failed})")
                self.client(uri).log_artifact(run_id, path)
            except Exception as exc:
                self.fail(run_id, exc)
            finally:
                shutil.rmtree(Path(path).parent, ignore_errors=True)

    def system(self, uri: str, run_id: str, start: bool) -> None:
        if start and run_id not in self._samplers:
            import logging

            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            # Its warnings are store errors the run reports itself, in one sentence.
            logging.getLogger("mlflow.system_metrics").setLevel(logging.CRITICAL)
            sampler = SystemMetricsMonitor(run_id, sampling_interval=10, tracking_uri=uri)
            sampler.start()
            self._samplers[run_id] = sampler
        elif not start and run_id in self._samplers:
            sampler = self._samplers.pop(run_id)
            with contextlib.suppress(Exception):
                sampler.finish()
                if getattr(sampler, "_logging_step", None) == 0:  # shorter than one interval
                    _sample_once(sampler)

    def end(self, uri: str, run_id: str, status: str, reason: str | None) -> None:
        """End the run; where MLflow cannot (a full disk), write its end in place, or at least
        why it ended, for whoever reaps it (:func:`twrl_exp.store.end_in_place`)."""
        from twrl_exp import store

        self.stop(run_id)
        self._runs.pop(run_id, None)
        summary = self._summary.pop(run_id, {})
        model_id = self._models.pop(run_id, None)
        try:
            client = self.client(uri)
            if model_id is not None and summary:  # the model's metrics: the run's summary
                rows = [
                    self._metric(k, v, ts, step, model_id=model_id, run_id=run_id)
                    for k, v, ts, step in summary.values()
                ]
                client.log_batch(run_id, metrics=rows)  # the run's own rows are not repeated
            if reason:
                client.set_tag(run_id, store.END_REASON_TAG, reason[:5000])
            client.set_terminated(run_id, status)
        except Exception as exc:
            db = store.sqlite_path(uri)
            if not reason and db is not None and store.is_disk_full(exc):
                status, reason = "FAILED", store.DiskFullError("the MLflow store", db).end_reason
            if store.end_in_place(uri, run_id, status, reason) != "ended":
                raise

    def stop(self, run_id: str) -> None:
        """Stop the run's heartbeat and sampler."""
        beat = self._heartbeats.pop(run_id, None)
        if beat is not None:
            beat.stop()
        self.system("", run_id, False)

    def stop_all(self) -> None:
        for run_id in {*self._samplers, *self._heartbeats}:
            self.stop(run_id)


def _warm() -> None:
    """Import what a run's end needs (matplotlib) while the run trains, not when it ends."""
    with contextlib.suppress(Exception):
        import twrl_exp.monitor.curves  # noqa: F401


def _warm_model() -> None:
    """Do while the run trains what a process's first model log does once: MLflow maps every
    installed package's modules (to check the model's pip requirements), a second here, which
    the first run's end used to wait for. (A private MLflow cache: if it is gone, nothing is
    warmed and nothing breaks.)"""
    with contextlib.suppress(Exception):
        from mlflow.utils import requirements_utils

        requirements_utils._init_modules_to_packages_map()


def _load_mlflow() -> None:
    with contextlib.suppress(Exception):
        import mlflow
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


# Jobs still done for a run whose earlier job failed: stopping its sampler, ending it.
_ALWAYS = ("end", "sync")


def _serve() -> int:
    # Ctrl-C and a terminal's SIGTERM go to the whole process group: the run stops itself, then
    # ends its record; when its process is gone (its end of the pipe closes) we finish what it
    # sent and exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    source, reply_to = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies on the reply pipe
    inbox: queue.Queue[Any] = queue.Queue()

    def read() -> None:  # drain the pipe at once, so the training side never blocks on it
        while True:
            try:
                inbox.put(_receive(source))
            except (EOFError, OSError):
                inbox.put(None)
                return

    threading.Thread(target=read, daemon=True).start()
    # Import MLflow while the run builds, on a thread, so that a process that ends before it
    # sends anything (a typo on the command line) does not wait for the import to end.
    loading = threading.Thread(target=_load_mlflow, daemon=True)
    loading.start()
    import logging

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    runs: _Runs | None = None
    while True:
        message = inbox.get()
        if message is None:  # EOF: the process closed us, or died; everything it sent is done
            if runs is not None:
                runs.settle()
                runs.stop_all()
            sys.stdout.flush()
            os._exit(0)  # not waiting for an import no job needs
        kind = message[0]
        if runs is not None and kind in ("sync", "end", "curve"):
            runs.settle()  # a run's curve is in before it ends (or is synced, or redrawn)
        if kind == "sync":
            _reply(reply_to, ("synced", message[1], None))
            continue
        if runs is None:
            loading.join()
            runs = _Runs(reply_to)
            # MLflow logs a store error with its traceback before raising it (its import sets
            # the levels, so this comes after); the run reports it in one sentence.
            logging.getLogger("mlflow").setLevel(logging.CRITICAL)
            logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
            logging.getLogger("alembic").setLevel(logging.WARNING)
        if kind in ("open", "prepare"):
            getattr(runs, kind)(*message[1:] if kind == "open" else message[1:2])
            continue
        run_id = message[2]
        stopping = kind == "system" and not message[3]
        if run_id in runs.failed and kind not in _ALWAYS and not stopping:
            if kind == "upload" and message[6] is not None:
                shutil.rmtree(message[6], ignore_errors=True)
            if kind == "model":
                shutil.rmtree(Path(message[4]).parent, ignore_errors=True)
            continue  # the run has been told; it fails at its next send or sync
        try:
            if kind == "rows":
                rows = message[3]
                while not inbox.empty() and len(rows) < 5 * _ROWS_PER_BATCH:
                    nxt = inbox.queue[0]  # coalesce this run's rows that have queued up
                    if nxt is None or nxt[0] != "rows" or nxt[1:3] != message[1:3]:
                        break
                    rows = rows + inbox.get()[3]
                runs.rows(message[1], run_id, rows)
            else:
                getattr(runs, kind)(*message[1:])
        except Exception as exc:
            runs.fail(run_id, exc)


if __name__ == "__main__":
    raise SystemExit(_serve())
