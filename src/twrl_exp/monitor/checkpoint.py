"""Periodic checkpoints of the whole run (agent, optimizer, history, RNG) to a local file."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from twrl_exp import serialization
from twrl_exp.errors import RecordingError
from twrl_exp.runner import MonitorBase, Runner
from twrl_exp.store import DiskFullError, free_bytes, is_disk_full

# torch.save reports a full disk as "unexpected pos" (no errno): a disk with less than this
# left when a save failed is taken to be full.
_NEARLY_FULL = 1 << 20


class CheckpointMonitor(MonitorBase):
    """Writes ``<directory>/last.pt`` every ``every_steps`` env steps or ``every_s`` seconds
    (whichever comes first; the time rule gives a killed run an early resume point), when a
    resumed run starts, and when the run stops.

    Files are written under a temporary name and renamed (a crash never leaves a truncated
    checkpoint; a failed save leaves no temporary file) and hold tensors and plain data only. A
    full disk stops the run with :class:`DiskFullError` (one sentence). A state with a
    non-finite parameter is never saved, so a diverged run keeps its last finite checkpoint.
    ``on_saved(path, env_steps)`` (e.g. an MLflow upload) is called after each save.
    """

    def __init__(
        self,
        *,
        directory: Path,
        every_steps: int | None,
        every_s: float | None = None,
        on_saved: Callable[[Path, int], None] | None = None,
    ) -> None:
        self.path = Path(directory) / "last.pt"
        self.every_steps = every_steps
        self.every_s = every_s
        self.on_saved = on_saved
        self._next = every_steps
        self._last_time = time.monotonic()
        self.saved_step: int | None = None

    def save(self, runner: Runner) -> Path | None:
        """Save the run's state if every parameter is finite; the path, or None if skipped."""
        self._last_time = time.monotonic()
        if not runner.parameters_finite():
            return None
        self._write(runner)
        self.saved_step = runner.history.env_steps
        if self.on_saved is not None:
            self.on_saved(self.path, runner.history.env_steps)
        return self.path

    def _write(self, runner: Runner) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")  # serialization.save's temporary
        try:
            serialization.save(runner.state_dict(), self.path)
        except (OSError, RuntimeError) as exc:
            full = is_disk_full(exc) or free_bytes(self.path.parent) < _NEARLY_FULL
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            if full:
                raise DiskFullError("the run's checkpoints", self.path.parent) from exc
            raise RecordingError(
                f"the checkpoint {self.path} could not be written ({exc})"
            ) from exc

    def _schedule(self, runner: Runner) -> None:
        if self.every_steps:
            self._next = (runner.history.env_steps // self.every_steps + 1) * self.every_steps

    def start(self, runner: Runner) -> None:
        self._schedule(runner)
        if runner.history.env_steps > 0:  # resumed: the new record starts with its state
            self.save(runner)

    def tick(self, runner: Runner) -> None:
        due_steps = bool(self.every_steps) and runner.history.env_steps >= (self._next or 0)
        due_time = self.every_s is not None and time.monotonic() - self._last_time >= self.every_s
        if due_steps or due_time:
            self.save(runner)
            self._schedule(runner)

    def finish(self, runner: Runner, status: str) -> None:
        del status
        self.save(runner)
