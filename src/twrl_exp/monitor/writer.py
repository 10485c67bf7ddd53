"""A run's metric rows, written to MLflow by a separate process, off the training thread.

Writing a row through MLflow's SQLAlchemy store costs about 0.1 ms of Python; on the training
thread (or on a thread of its process, which competes for the GIL) that was 20-40% of a short
run. The run sends its rows, already batched, down a pipe to ``python -m
twrl_exp.monitor.writer``, which writes them with ``log_batch`` on another core.

Guarantees:

- **Order and completeness.** Rows are written in the order they were sent. :meth:`sync` returns
  only once every row sent before it is in the store (a finished run has every row).
- **Failures reach the run.** A row the store refuses (a full disk, a locked or vanished store)
  is reported back; the run's next :meth:`send` or :meth:`sync` raises it, and the run fails.
- **Death of the run.** If the training process dies (kill -9, a crash), the writer still
  writes every row it was sent, then exits: a killed run loses at most the rows of its last
  send interval. Ctrl-C to the process group does not stop the writer (it ignores SIGINT); the
  run stops itself and syncs.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

Row = tuple[str, float, int, int]  # key, value, timestamp (ms), step
_HEADER = struct.Struct("!I")


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


class MetricWriter:
    """The training side: ``send(rows)`` (returns at once), ``sync()``, ``close()``."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        package_root = str(Path(__file__).resolve().parents[2])  # where twrl_exp is importable
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [package_root, *filter(None, [os.environ.get("PYTHONPATH")])]
        )}  # fmt: skip
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "twrl_exp.monitor.writer", tracking_uri, run_id],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._replies: queue.Queue[Any] = queue.Queue()
        self._error: str | None = None
        self._token = 0
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="twrl-writer-replies", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        while True:
            try:
                reply = _receive(self._proc.stdout)
            except (EOFError, OSError, pickle.UnpicklingError):
                self._replies.put(("gone", None))
                return
            if reply[0] == "error":
                self._error = self._error or str(reply[1])
            else:
                self._replies.put(reply)

    def _check(self) -> None:
        if self._error is not None:
            raise WriterError(self._error)

    def _post(self, message: Any) -> None:
        assert self._proc.stdin is not None
        try:
            with self._lock:
                _send(self._proc.stdin, message)
        except (BrokenPipeError, OSError) as exc:
            raise WriterError(self._error or f"the metric writer process ended ({exc})") from exc

    def send(self, rows: list[Row]) -> None:
        """Hand ``rows`` to the writer; raises :class:`WriterError` if an earlier write failed."""
        self._check()
        if rows:
            self._post(("rows", rows))

    def sync(self, timeout: float = 600.0) -> None:
        """Return once every row sent so far is in the store (or raise why it is not)."""
        self._check()
        self._token += 1
        self._post(("sync", self._token))
        while True:
            try:
                kind, token = self._replies.get(timeout=timeout)
            except queue.Empty:
                raise WriterError(
                    f"the metric writer did not answer within {timeout:g} s"
                ) from None
            if kind == "gone":
                raise WriterError(self._error or "the metric writer process ended")
            if kind == "synced" and token == self._token:
                self._check()
                return

    def close(self, timeout: float = 60.0) -> None:
        """Stop the writer after it has written everything (call :meth:`sync` first to learn of
        failures)."""
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.close()  # EOF: write what is left, then exit
                self._proc.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()


class WriterError(RuntimeError):
    """The writer could not write rows it was sent."""


# ---------------------------------------------------------------------------- the process


def _serve(tracking_uri: str, run_id: str) -> int:
    # Ctrl-C goes to the whole process group: the run stops itself, then syncs and closes us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    source, reply_to = sys.stdin.buffer, sys.stdout.buffer
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

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    # MLflow logs a store error with its traceback before raising it (its import sets the
    # levels, so this comes after); the run reports it in one sentence from what we send back.
    logging.getLogger("mlflow").setLevel(logging.CRITICAL)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

    client = MlflowClient(tracking_uri=tracking_uri)
    failed = False
    while True:
        message = inbox.get()
        if message is None:  # EOF: the run closed us, or died; everything it sent is written
            return 0
        kind, body = message
        if kind == "sync":
            _send(reply_to, ("synced", body))
            continue
        if failed:
            continue  # the run has been told; it fails at its next send or sync
        rows = body
        while not inbox.empty() and len(rows) < 5000:  # coalesce what has queued up
            nxt = inbox.queue[0]
            if nxt is None or nxt[0] != "rows":
                break
            rows = rows + inbox.get()[1]
        try:
            for i in range(0, len(rows), 1000):
                chunk = [Metric(k, v, ts, step) for k, v, ts, step in rows[i : i + 1000]]
                client.log_batch(run_id, metrics=chunk)
        except Exception as exc:
            from twrl_exp.store import root_cause

            failed = True
            _send(reply_to, ("error", root_cause(exc)))


if __name__ == "__main__":
    raise SystemExit(_serve(sys.argv[1], sys.argv[2]))
