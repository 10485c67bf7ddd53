"""A rich progress bar: env steps, episodes, recent mean return, steps per second."""

from __future__ import annotations

import math

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from twrl_exp.runner import MonitorBase, Runner


class ConsoleMonitor(MonitorBase):
    """Live progress while training and a summary table at the end."""

    def __init__(self, *, title: str, console: Console | None = None) -> None:
        self.title = title
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.task = self.progress.add_task(title, total=None, status="")

    def start(self, runner: Runner) -> None:
        total = runner.max_env_steps if runner.max_env_steps is not None else runner.max_episodes
        self.progress.update(self.task, total=total)
        self.progress.start()
        self.tick(runner)

    def tick(self, runner: Runner) -> None:
        h = runner.history
        done = h.env_steps if runner.max_env_steps is not None else h.episodes
        recent = f"{h.trailing[-1]:9.2f}" if h.trailing else "      n/a"
        rate = h.env_steps / h.train_time if h.train_time > 0 else 0.0
        evals = f"  eval {h.eval_means[-1]:.1f}" if h.eval_means else ""
        status = (
            f"steps {h.env_steps:>9,}  episodes {h.episodes:>6,}  mean return {recent}"
            f"  {rate:>9,.0f} steps/s{evals}"
        )
        self.progress.update(self.task, completed=done, status=status)

    def finish(self, runner: Runner, status: str) -> None:
        self.tick(runner)
        self.progress.stop()
        summary = runner.history.summary(runner.solve_window)
        table = Table(title=f"{status}: {self.title}", show_header=False, min_width=48)
        for key, value in summary.items():
            text = f"{value:,.2f}" if isinstance(value, float) and not math.isnan(value) else value
            table.add_row(key, str(text))
        if runner.history.eval_means:
            table.add_row("final_eval_std", f"{runner.history.eval_stds[-1]:.2f}")
        self.console.print(table)

    def evaluation(self, runner: Runner, returns: np.ndarray) -> None:
        self.tick(runner)
