"""A lost Ray head, noticed by the driver in seconds rather than by Ray in a minute.

When the head dies, Ray's driver keeps waiting for its GCS; after a minute
(``gcs_rpc_server_reconnect_timeout_s``) Ray ends the process from C++, printing only "Failed
to connect to GCS within 60 seconds", and the sweep's runs and trials stay RUNNING. A
:class:`HeadWatch` probes the GCS port from a daemon thread; once it has refused connections for
``HEAD_LOST_AFTER_S`` seconds the launcher calls :meth:`HeadWatch.stop`, which ends the runs of
the jobs in flight FAILED with the reason and tags the sweep's parent run, and raises
:class:`HeadLost`: one sentence naming what was lost and how to resume.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from twrl_exp import store
from twrl_exp.errors import InfrastructureLost

log = logging.getLogger(__name__)
HEAD_PROBE_EVERY_S = 1.0
HEAD_LOST_AFTER_S = 10.0  # the head's GCS refusing connections this long: it is gone
# If the sweep has not acted on a lost head this long after (stuck in a call to Ray), the watch
# ends the records and the process itself, before Ray's own end (a minute after the loss).
HEAD_LOST_EXIT_S = 30.0
CloseRuns = Callable[[dict[str, Any] | None, str, str, str], int]


class HeadLost(InfrastructureLost):
    """The Ray head (its GCS) stopped answering: the cluster is gone, with every job on it."""

    resume = (
        "start the cluster again (`make cluster-up`, or `ray start --head` on its head node) "
        "and run the same command"
    )

    def __init__(self, address: str, silent_s: float, jobs: int) -> None:
        self.address, self.silent_s, self.jobs = address, silent_s, jobs
        self.what = f"The Ray head at {address} was lost (no answer for {silent_s:.0f} s)"
        super().__init__(
            f"{self.what}, so the sweep stopped: {jobs} running job(s) ended and their runs "
            f"are FAILED; {self.resume}."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.address, self.silent_s, self.jobs)


def _end_process() -> None:
    """The exit hook of a sweep that lost its head, registered once the loss is handled: it runs
    after the hooks registered later and instead of those registered earlier (Ray's shutdown
    among them, unregistered): it flushes what was said and ends the process, exit 1."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(1)


def answers(address: str) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


class HeadWatch:
    """Probes the head's GCS port every ``HEAD_PROBE_EVERY_S`` seconds; ``lost`` once it has
    refused connections for ``HEAD_LOST_AFTER_S`` seconds. ``close_runs(parent, job_key,
    status, reason)`` ends the MLflow runs of a job."""

    def __init__(self, address: str, close_runs: CloseRuns) -> None:
        self.address, self.close_runs = address, close_runs
        self.lost = False
        self.silent_since: float | None = None
        self.handled = threading.Event()
        # What the watch closes itself if the sweep gets stuck: the job keys in flight, and
        # the sweep's parent run (set by the launcher as it waits for jobs).
        self.in_flight: Callable[[], list[str]] = list
        self.parent: dict[str, Any] | None = None
        threading.Thread(target=self._loop, name="twrl-ray-head-watch", daemon=True).start()

    def silent_s(self) -> float:
        return 0.0 if self.silent_since is None else time.monotonic() - self.silent_since

    def _loop(self) -> None:
        while not self.lost:
            time.sleep(HEAD_PROBE_EVERY_S)
            if answers(self.address):
                self.silent_since = None
                continue
            if self.silent_since is None:
                self.silent_since = time.monotonic()
            self.lost = self.silent_s() >= HEAD_LOST_AFTER_S
        if not self.handled.wait(HEAD_LOST_EXIT_S):
            from twrl_exp.cli_errors import say

            say(str(self.stop(self.in_flight(), self.parent)))
            sys.stderr.flush()
            os._exit(1)

    def stop(self, jobs: list[str], parent: dict[str, Any] | None) -> HeadLost:
        """End the runs of ``jobs`` (their keys) FAILED with the reason and tag the sweep's
        parent run; the error to raise."""
        self.handled.set()
        # Ray's exit hook (ray.shutdown) waits on the lost head's GCS before the process can end
        # (seconds on an idle machine, over 20 under load, after the sweep has said why it
        # stopped), and the interpreter cannot finalise without it (Ray's core worker crashes):
        # once the records are ended and the sentence said, the process ends at once, exit 1.
        import ray._private.worker

        atexit.unregister(ray._private.worker.shutdown)
        atexit.register(_end_process)
        error = HeadLost(self.address, self.silent_s(), len(jobs))
        for key in jobs:
            self.close_runs(parent, key, "FAILED", f"lost: {error.what}")
        if parent is not None:
            try:
                client = store.open_client(parent["tracking_uri"])
                client.set_tag(parent["run_id"], store.END_REASON_TAG, f"stopped: {error.what}")
            except Exception as exc:
                log.warning(f"Could not tag the sweep's parent run: {store.root_cause(exc)}")
        return error
