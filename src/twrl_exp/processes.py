"""Process identities that survive pid reuse, and a watchdog for a parent process.

An identity is ``"<host>:<pid>@<start time>"``: a process is alive only if a process with that
pid runs on this host *and* started at that time, so a recycled pid is not mistaken for it.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable

# The identity of the process that launched a sweep's jobs (set by the sweep, inherited or
# passed on by its launcher): a job that runs in another process is a worker of that sweep.
SWEEP_ENV = "TWRL_SWEEP_PROCESS"


def _start_time(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def identity(pid: int | None = None) -> str:
    """This process's (or ``pid``'s) identity on this host."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}@{_start_time(pid) or 0:.2f}"


def parse(text: str) -> tuple[str, int, float] | None:
    host, _, rest = text.rpartition(":")
    pid, _, start = rest.partition("@")
    try:
        return host, int(pid), float(start)
    except ValueError:
        return None


def alive(text: str) -> bool | None:
    """Whether the process ``text`` runs; None when it is on another host (cannot tell)."""
    parsed = parse(text)
    if parsed is None:
        return None
    host, pid, start = parsed
    if host != socket.gethostname():
        return None
    now = _start_time(pid)
    return now is not None and abs(now - start) < 0.05


def describe(text: str) -> str:
    parsed = parse(text)
    return f"process {parsed[1]} on {parsed[0]}" if parsed else f"process {text}"


def watch(target: str, on_gone: Callable[[], None], interval: float = 0.5) -> threading.Thread:
    """Call ``on_gone()`` once, from a daemon thread, when process ``target`` (on this host)
    has ended, e.g. a sweep whose worker this process is."""

    def loop() -> None:
        event = threading.Event()
        while alive(target) is not False:
            event.wait(interval)
        on_gone()

    thread = threading.Thread(target=loop, name="twrl-parent-watch", daemon=True)
    thread.start()
    return thread
