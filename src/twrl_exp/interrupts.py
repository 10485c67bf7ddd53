"""Ctrl-C, deferred to a safe point: the first SIGINT only records the request (and tells whoever
asked, e.g. a runner, to stop at its next env step); a second one interrupts at once.

One handler serves single runs, grid sweeps and Optuna sweeps, so an interrupt never lands
inside a metric write, a checkpoint or Hydra's config composition, and code that starts later
(the next job of a sweep, an unfinished parent run at exit) can see that it happened.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

requested = False
orphaned = False  # set when the sweep this process works for has died
_on_first: list[Callable[[], None]] = []


def request() -> None:
    """What the first Ctrl-C does: record it and tell whoever asked (e.g. stop the runner)."""
    global requested
    requested = True
    for callback in list(_on_first):
        callback()


def _handler(signum: int, frame: FrameType | None) -> None:
    if requested:
        raise KeyboardInterrupt
    request()


def orphan() -> None:
    """The sweep that launched this worker is gone: stop like Ctrl-C, then exit the process
    (a worker must not outlive its sweep; 30 s is the most a run may take to close its record)."""
    global orphaned
    orphaned = True
    deadline = threading.Timer(30.0, os._exit, args=(1,))
    deadline.daemon = True
    deadline.start()
    request()


def install() -> Any:
    """Route SIGINT here (main thread only); returns the previous handler for :func:`restore`."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, _handler)


def restore(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def deferred(on_first: Callable[[], None] | None = None) -> Iterator[None]:
    """Within the block, Ctrl-C is recorded (and ``on_first`` called) instead of raised."""
    if on_first is not None:
        _on_first.append(on_first)
        if requested:  # asked before this block began: honour it right away
            on_first()
    previous = install()
    try:
        yield
    finally:
        restore(previous)
        if on_first is not None:
            _on_first.remove(on_first)
