"""Ctrl-C, deferred to a safe point: the first SIGINT only records the request (and tells whoever
asked, e.g. a runner, to stop at its next env step); a second one interrupts at once.

One handler serves single runs, grid sweeps and Optuna sweeps, so an interrupt never lands
inside a metric write, a checkpoint or Hydra's config composition, and code that starts later
(the next job of a sweep, an unfinished parent run at exit) can see that it happened.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

requested = False
_on_first: list[Callable[[], None]] = []


def _handler(signum: int, frame: FrameType | None) -> None:
    global requested
    if requested:
        raise KeyboardInterrupt
    requested = True
    for callback in _on_first:
        callback()


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
