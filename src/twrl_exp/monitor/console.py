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

# Progress fits a terminal this wide (or a narrower one) whatever the figures' magnitudes.
WIDTH = 80
BAR_WIDTH = 16
# The live line's columns before the status: "100%", the bar, and a space after each.
LIVE_PREFIX = len("100%") + 1 + BAR_WIDTH + 1
SUFFIXES = ("k", "M", "G", "T", "P", "E")


def compact(n: float) -> str:
    """A figure in a few characters whatever its magnitude: ``9,999``, ``84.0k``, ``1.20M``,
    ``-123.4G`` (at most 7 up to 1e21, then ``1.2e+21``)."""
    if math.isnan(n):
        return "?"
    if n < 0:
        return "-" + compact(-n)
    if math.isinf(n):
        return "inf"
    if n < 1e4:
        return f"{n:,.0f}"
    for power, suffix in enumerate(SUFFIXES, 1):
        scaled = n / 1000**power
        text = f"{scaled:.2f}" if scaled < 9.995 else f"{scaled:.1f}"
        if float(text) < 1000:  # 999.96k is 1.00M
            return text + suffix
    return f"{n:.1e}"


def number(x: float, decimals: int = 1) -> str:
    """A return: ``-123.4`` while it is short, ``-123.5k`` when it is not, ``n/a`` if NaN."""
    if math.isnan(x):
        return "n/a"
    return f"{x:.{decimals}f}" if abs(x) < 1e4 else compact(x)


def clock(seconds: float) -> str:
    """``6:05``, ``2:06:05``, then ``3d04h`` past a day: at most 7 characters."""
    if not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    if hours >= 24:
        days, hours = divmod(hours, 24)
        return f"{days}d{hours:02d}h" if days < 1000 else ">999d"
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def fit(parts: list[str], width: int, gaps: tuple[str, ...] = ("  ", " ")) -> str:
    """``parts`` (most important first) joined in at most ``width`` columns: ``gaps[0]``
    apart, else the next gap, else without the last parts until they fit."""
    for keep in range(len(parts), 0, -1):
        for gap in gaps:
            line = gap.join(parts[:keep])
            if len(line) <= width:
                return line
    return parts[0][:width]


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
        brief: bool = False,
    ) -> None:
        """``brief``: a sweep's job, whose figures the sweep's table gives at its end: progress
        only, no summary table and no notes."""
        self.title, self.brief = title, brief
        self.console = console or Console(soft_wrap=True)
        self.live = self.console.is_terminal if live is None else live
        self.interval_s = interval_s
        self._last_line = -math.inf
        self.progress = Progress(
            TextColumn("{task.percentage:>3.0f}%"),
            BarColumn(bar_width=BAR_WIDTH),
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

    def status(self, runner: Runner, width: int = WIDTH - LIVE_PREFIX) -> str:
        """``84.0k/200.0k  18.3k/s  eta 0:06  return 123.4  eval 200.0`` in ``width`` columns
        (the evaluation, then the return, left out where they do not fit)."""
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
            parts.append(f"return {number(h.trailing[-1])}")
        if h.eval_means:
            parts.append(f"eval {number(h.eval_means[-1])}")
        return fit(parts, width)

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
            width = min(self.console.width, WIDTH) - LIVE_PREFIX
            self.progress.update(self.task, completed=done, status=self.status(runner, width))
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval_s:
            self._line(runner)

    def _line(self, runner: Runner) -> None:
        self._last_line = time.monotonic()
        done, total, _ = self._done_total(runner)
        # One vector step can pass the budget: 2,012 of 2,000 steps is 100%, not 101%.
        percent = f"{min(100 * done / total, 100):3.0f}% " if total else ""
        status = self.status(runner, WIDTH - len(percent))
        self.console.print(f"{percent}{status}", markup=False, highlight=False)

    def evaluation(self, runner: Runner, returns: np.ndarray) -> None:
        h = runner.history
        parts = [
            f"evaluation at {compact(h.env_steps)} steps:",
            f"return {number(returns.mean(), 2)} ± {number(returns.std(), 2)}",
            f"over {len(returns)} episodes",
            f"({runner.eval_label})",
        ]
        message = fit(parts, WIDTH, gaps=(" ",))
        if self.live:
            self.progress.console.print(message, markup=False, highlight=False, style="dim")
            self.tick(runner)
        else:
            self.console.print(message, markup=False, highlight=False)

    def note(self, text: str) -> None:
        """Say what slow post-training work is being done (a video, uploads)."""
        if self.brief:
            return
        self.console.print(f"... {text}", markup=False, highlight=False, style="dim")

    def finish(self, runner: Runner, status: str) -> None:
        if self.live:
            self.tick(runner)
            self.progress.stop()
        else:
            self._line(runner)
        if self.brief:
            return
        summary = runner.history.summary(runner.solve_window)
        # No status in its title: the run's report, printed last, leads with it (and says
        # FAILED if closing the record fails after this table).
        del status
        table = Table(title="summary", show_header=False, min_width=40)
        table.add_column(no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
        for key, value in summary.items():
            table.add_row(key, figure(key, value))
        if runner.history.eval_means:
            table.add_row("final_eval_std", f"{runner.history.eval_stds[-1]:.2f}")
        self.console.print(table)
