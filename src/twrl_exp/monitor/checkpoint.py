"""Periodic checkpoints of the whole run (agent, optimizer, history, RNG) to a local file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from twrl_exp.runner import MonitorBase, Runner


class CheckpointMonitor(MonitorBase):
    """Writes ``<directory>/last.pt`` every ``every_steps`` env steps and when the run stops.

    The file is written to a temporary name and renamed, so a crash mid-write never leaves a
    truncated checkpoint; ``on_saved`` (e.g. an MLflow upload) is called with its path.
    """

    def __init__(
        self,
        *,
        directory: Path,
        every_steps: int | None,
        on_saved: Callable[[Path], None] | None = None,
    ) -> None:
        self.path = Path(directory) / "last.pt"
        self.every_steps = every_steps
        self.on_saved = on_saved
        self._next = every_steps

    def save(self, runner: Runner) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save(runner.state_dict(), tmp)
        os.replace(tmp, self.path)
        if self.on_saved is not None:
            self.on_saved(self.path)
        return self.path

    def start(self, runner: Runner) -> None:
        if self.every_steps:
            self._next = (runner.history.env_steps // self.every_steps + 1) * self.every_steps

    def tick(self, runner: Runner) -> None:
        if self.every_steps and self._next is not None and runner.history.env_steps >= self._next:
            self.save(runner)
            self._next = (runner.history.env_steps // self.every_steps + 1) * self.every_steps

    def finish(self, runner: Runner, status: str) -> None:
        del status
        self.save(runner)
