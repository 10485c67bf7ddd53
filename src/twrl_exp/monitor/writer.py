"""What a run writes to MLflow while it trains, written by a separate process, off the hot path.

Writing a metric row through MLflow's SQLAlchemy store costs about 0.1 ms of Python, and an
artifact upload or a tag a few milliseconds; on the training thread (or on a thread of its
process, which competes for the GIL) that was 20-40% of a short run. A run hands its rows,
already batched, and its checkpoint uploads down a pipe to one writer process
(``python -m twrl_exp.monitor.writer``), which does the writing on another core.

There is one writer per training process (:func:`shared`), started when the first run is built,
so its own start-up (importing MLflow, opening the store) overlaps the run's, and every later
run of the process (a sweep's trials, a benchmark's repeats) finds it ready. It also samples the
machine's system metrics for the run (MLflow's sampler), so that thread is not in the run's
process either.

Guarantees:

- **Order and completeness.** Jobs are done in the order they were sent. :meth:`Writer.sync`
  returns only once every job sent before it is done: a finished run has every row.
- **Failures reach the run.** A job the store refuses (a full disk, a locked or vanished store)
  is reported back; that run's next :meth:`Writer.send` or :meth:`Writer.sync` raises it, and
  the run fails. Its later jobs are dropped; other runs are not affected.
- **Death of the run.** If the training process dies (kill -9, a crash), the writer still does
  every job it was sent, then exits: a killed run loses at most the rows of its last send
  interval, and a checkpoint handed over is uploaded and named. Ctrl-C to the process group
  does not stop the writer (it ignores SIGINT and SIGTERM); the run stops itself and syncs.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import queue
import shutil
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

Row = tuple[str, float, int, int]  # key, value, timestamp (ms), step
_HEADER = struct.Struct("!I")
_ROWS_PER_BATCH = 1000  # MLflow's log_batch limit


def _send(out: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_HEADER.pack(len(data)) + data)
    out.flush()


def _receive(source: IO[bytes]) -> Any:
    header = source.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    data = source.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)  # our own process's frames, over a private pipe


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
        self._replies: queue.Queue[Any] = queue.Queue()
        self._errors: dict[str, str] = {}
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
                self._gone = self._gone or "the writer process ended"
                self._replies.put(("gone", None))
                return
            if reply[0] == "error":
                _, run_id, text = reply
                self._errors.setdefault(run_id, text)
            else:
                self._replies.put(reply)

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

    def sync(self, run_id: str, timeout: float = 600.0) -> None:
        """Return once every job sent so far is done (or raise why one of ``run_id``'s
        was not)."""
        with self._lock:
            self._token += 1
            token = self._token
        self._post(run_id, ("sync", token))
        while True:
            try:
                kind, got = self._replies.get(timeout=timeout)
            except queue.Empty:
                raise WriterError(f"the writer did not answer within {timeout:g} s") from None
            if kind == "gone":
                self._replies.put((kind, got))  # for any other waiter
                raise WriterError(self._errors.get(run_id) or self._gone or "the writer ended")
            if kind == "synced" and got == token:
                self.check(run_id)
                return

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


def shared() -> Writer:
    """This process's writer, started on first use (and again if it died)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.pid != os.getpid() or not _shared.alive:
            _shared = Writer()
            atexit.register(_shared.close)
        return _shared


# ---------------------------------------------------------------------------- the process


class _Runs:
    """The writer's side: one MLflow client per store, failed runs, system samplers."""

    def __init__(self, reply_to: IO[bytes]) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Metric

        self._client_class, self._metric = MlflowClient, Metric
        self._clients: dict[str, Any] = {}
        self._samplers: dict[str, Any] = {}
        self.failed: set[str] = set()
        self.reply_to = reply_to

    def client(self, uri: str) -> Any:
        if uri not in self._clients:
            self._clients[uri] = self._client_class(tracking_uri=uri)
        return self._clients[uri]

    def fail(self, run_id: str, exc: BaseException) -> None:
        from twrl_exp.store import redact, root_cause

        self.failed.add(run_id)
        _send(self.reply_to, ("error", run_id, redact(root_cause(exc))))

    def rows(self, uri: str, run_id: str, rows: list[Row]) -> None:
        client, metric = self.client(uri), self._metric
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

    def curve(self, uri: str, run_id: str, history: dict[str, Any], options: Any) -> None:
        import tempfile
        from types import SimpleNamespace

        from twrl_exp.monitor.curves import plot_learning_curve

        with tempfile.TemporaryDirectory(prefix="twrl-curve-") as tmp:
            path = plot_learning_curve(
                SimpleNamespace(**history), Path(tmp) / "learning_curve.png", **options
            )
            self.client(uri).log_artifact(run_id, str(path))

    def system(self, uri: str, run_id: str, start: bool) -> None:
        if start and run_id not in self._samplers:
            import logging

            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
            sampler = SystemMetricsMonitor(run_id, sampling_interval=10, tracking_uri=uri)
            sampler.start()
            self._samplers[run_id] = sampler
        elif not start and run_id in self._samplers:
            with contextlib.suppress(Exception):
                self._samplers.pop(run_id).finish()

    def stop_all(self) -> None:
        for run_id in list(self._samplers):
            with contextlib.suppress(Exception):
                self._samplers.pop(run_id).finish()


def _warm() -> None:
    """Import what a run's end needs (matplotlib) while the run trains, not when it ends."""
    with contextlib.suppress(Exception):
        import twrl_exp.monitor.curves  # noqa: F401


def _serve() -> int:
    # Ctrl-C and a terminal's SIGTERM go to the whole process group: the run stops itself, then
    # syncs; when it is gone (its end of the pipe closes) we finish what it sent and exit.
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
    import logging

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    runs = _Runs(reply_to)
    threading.Thread(target=_warm, daemon=True).start()
    # MLflow logs a store error with its traceback before raising it (its import sets the
    # levels, so this comes after); the run reports it in one sentence from what we send back.
    logging.getLogger("mlflow").setLevel(logging.CRITICAL)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    while True:
        message = inbox.get()
        if message is None:  # EOF: the process closed us, or died; everything it sent is done
            runs.stop_all()
            return 0
        kind = message[0]
        if kind == "sync":
            _send(reply_to, ("synced", message[1]))
            continue
        run_id = message[2]
        if run_id in runs.failed and message[:1] + message[3:] != ("system", False):
            if kind == "upload" and message[6] is not None:
                shutil.rmtree(message[6], ignore_errors=True)
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
            elif kind == "upload":
                runs.upload(*message[1:])
            elif kind == "curve":
                runs.curve(*message[1:])
            elif kind == "system":
                runs.system(*message[1:])
        except Exception as exc:
            runs.fail(run_id, exc)


if __name__ == "__main__":
    raise SystemExit(_serve())
