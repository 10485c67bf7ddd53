"""The learning-curve figure of a run: episode returns, their trailing mean, evaluations
and the env's reward threshold, against env steps."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


def plot_learning_curve(
    history: Mapping[str, Any],
    path: Path,
    *,
    title: str,
    threshold: float | None,
    window: int,
    eval_label: str = "greedy",
) -> Path:
    """Draw ``history`` (a :class:`twrl_exp.runner.History` as its ``as_dict()``: the writer
    process draws curves without importing torch) to ``path``."""
    # The object API draws to a file without pyplot's global state (no backend switch).
    fig = Figure(figsize=(8, 4.5), dpi=110)
    ax = fig.subplots()
    if history["returns"]:
        ax.plot(
            history["end_steps"],
            history["returns"],
            ".",
            ms=2,
            alpha=0.25,
            color="tab:blue",
            label="episode return",
        )
        ax.plot(
            history["end_steps"],
            history["trailing"],
            color="tab:blue",
            lw=2,
            label=f"trailing {window}-episode mean",
        )
    if history["eval_means"]:
        ax.errorbar(
            history["eval_steps"],
            history["eval_means"],
            yerr=history["eval_stds"],
            fmt="o-",
            color="tab:orange",
            ms=4,
            capsize=3,
            label=f"evaluation, {eval_label} (mean ± std)",
        )
    if threshold is not None:
        ax.axhline(threshold, color="tab:green", ls="--", lw=1, label=f"threshold {threshold:g}")
    if history["solved_step"] is not None:
        ax.axvline(
            history["solved_step"],
            color="tab:green",
            lw=1,
            alpha=0.6,
            label=f"solved at episode {history['solved_episode']}",
        )
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    # Margins from the longest y tick label, not tight_layout, which lays the figure out by
    # drawing it once more: a third of the drawing's time, and a run's end waits for the curve.
    labels = ax.yaxis.get_major_formatter().format_ticks(ax.get_yticks().tolist())
    left = min(0.3, (0.5 + 0.085 * max(map(len, labels), default=1)) / fig.get_figwidth())
    fig.subplots_adjust(left=left, right=0.95, bottom=0.12, top=0.93)
    fig.savefig(path)
    return path


def _serve() -> int:
    """The writer's drawer (``python -m twrl_exp.monitor.curves``): draws each learning curve
    it is sent (``(history, path, options)``) and answers ``None`` or what went wrong, so that
    drawing one run's curve (tenths of a second of matplotlib) overlaps the writer's other jobs
    (the model, the last rows) on another core instead of following them."""
    import signal
    import sys

    from twrl_exp.monitor.frames import receive as _receive
    from twrl_exp.monitor.frames import send as _send

    # Ctrl-C goes to the whole process group: the run ends its record, which needs its curve.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    source, reply_to = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr
    while True:
        try:
            history, path, options = _receive(source)
        except (EOFError, OSError):
            return 0
        try:
            plot_learning_curve(history, Path(path), **options)
            answer = None
        except Exception as exc:
            answer = f"{type(exc).__name__}: {exc}"
        _send(reply_to, answer)


if __name__ == "__main__":
    raise SystemExit(_serve())
