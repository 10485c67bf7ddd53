"""Progress that reads anywhere, and the run's summary.

On a terminal: one live line that fits 80 columns (%, bar, steps, steps/s, ETA, recent mean
return, last evaluation). Anywhere else (``> log.txt``, nohup, CI, a cluster's log): a plain line
every ``interval_s`` seconds and at every evaluation, so a log shows progress while it happens.
Everything goes to stdout; errors go to stderr.
"""

from __future__ import annotations

import math
import time

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from twrl_exp.runner import MonitorBase, Runner

# Figures a summary shows as whole numbers.
COUNTS = frozenset({"env_steps", "episodes", "episodes_to_solve", "env_steps_to_solve"})


def compact(n: float) -> str:
    """``84000`` -> ``84.0k``, ``1200000`` -> ``1.20M``: short enough for an 80-column line."""
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e4:
        return f"{n / 1e3:.1f}k"
    return f"{n:,.0f}"


def clock(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def figure(key: str, value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if key in COUNTS:
        return f"{round(value):,}"
    return f"{value:,.2f}"


class ConsoleMonitor(MonitorBase):
    """Live progress while training and a summary table at the end."""

    def __init__(
        self,
        *,
        title: str,
        console: Console | None = None,
        live: bool | None = None,
        interval_s: float = 10.0,
    ) -> None:
        self.title = title
        self.console = console or Console(soft_wrap=True)
        self.live = self.console.is_terminal if live is None else live
        self.interval_s = interval_s
        self._last_line = -math.inf
        self.progress = Progress(
            TextColumn("{task.percentage:>3.0f}%"),
            BarColumn(bar_width=16),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            transient=False,
            expand=False,
        )
        self.task = self.progress.add_task(title, total=None, status="")

    def _done_total(self, runner: Runner) -> tuple[int, int | None, str]:
        h = runner.history
        if runner.max_env_steps is not None:
            return h.env_steps, runner.max_env_steps, "steps"
        return h.episodes, runner.max_episodes, "episodes"

    def status(self, runner: Runner) -> str:
        """``84.0k/200k 18.3k/s eta 0:06 return 123.4 eval 200.0``."""
        h = runner.history
        done, total, unit = self._done_total(runner)
        rate = h.env_steps / h.train_time if h.train_time > 0 else 0.0
        progress_rate = done / h.train_time if h.train_time > 0 else 0.0
        eta = (total - done) / progress_rate if total and progress_rate > 0 else math.nan
        if total and done >= total:
            eta = 0.0
        parts = [
            f"{compact(done)}/{compact(total) if total else '?'}"
            + ("" if unit == "steps" else " ep"),
            f"{compact(rate)}/s",
            f"eta {clock(eta)}",
        ]
        if h.trailing:
            parts.append(f"return {h.trailing[-1]:.1f}")
        if h.eval_means:
            parts.append(f"eval {h.eval_means[-1]:.1f}")
        return "  ".join(parts)

    def start(self, runner: Runner) -> None:
        done, total, unit = self._done_total(runner)
        self.console.print(
            f"{self.title}: {compact(total) if total else 'unbounded'} {unit}"
            + (f", from {compact(done)}" if done else ""),
            markup=False,
            highlight=False,
        )
        self.progress.update(self.task, total=total)
        self._last_line = time.monotonic()  # the header says where it starts
        if self.live:
            self.progress.start()
        self.tick(runner)

    def tick(self, runner: Runner) -> None:
        done, _, _ = self._done_total(runner)
        if self.live:
            self.progress.update(self.task, completed=done, status=self.status(runner))
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval_s:
            self._line(runner)

    def _line(self, runner: Runner) -> None:
        self._last_line = time.monotonic()
        done, total, _ = self._done_total(runner)
        percent = f"{100 * done / total:3.0f}% " if total else ""
        self.console.print(f"{percent}{self.status(runner)}", markup=False, highlight=False)

    def evaluation(self, runner: Runner, returns: np.ndarray) -> None:
        h = runner.history
        message = (
            f"evaluation at {compact(h.env_steps)} steps: mean return {returns.mean():.2f} "
            f"± {returns.std():.2f} over {len(returns)} episodes ({runner.eval_label})"
        )
        if self.live:
            self.progress.console.print(message, markup=False, highlight=False, style="dim")
            self.tick(runner)
        else:
            self.console.print(message, markup=False, highlight=False)

    def note(self, text: str) -> None:
        """Say what slow post-training work is being done (a video, uploads)."""
        self.console.print(f"... {text}", markup=False, highlight=False, style="dim")

    def finish(self, runner: Runner, status: str) -> None:
        if self.live:
            self.tick(runner)
            self.progress.stop()
        else:
            self._line(runner)
        summary = runner.history.summary(runner.solve_window)
        table = Table(title=f"{status}: {self.title}", show_header=False, min_width=40)
        table.add_column(no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
        for key, value in summary.items():
            table.add_row(key, figure(key, value))
        if runner.history.eval_means:
            table.add_row("final_eval_std", f"{runner.history.eval_stds[-1]:.2f}")
        self.console.print(table)
