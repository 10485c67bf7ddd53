"""The learning-curve figure of a run: episode returns, their trailing mean, evaluations
and the env's reward threshold, against env steps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

if TYPE_CHECKING:  # the writer process draws curves without importing torch
    from twrl_exp.runner import History


def plot_learning_curve(
    history: History,
    path: Path,
    *,
    title: str,
    threshold: float | None,
    window: int,
    eval_label: str = "greedy",
) -> Path:
    # The object API draws to a file without pyplot's global state (no backend switch).
    fig = Figure(figsize=(8, 4.5), dpi=110)
    ax = fig.subplots()
    if history.returns:
        ax.plot(
            history.end_steps,
            history.returns,
            ".",
            ms=2,
            alpha=0.25,
            color="tab:blue",
            label="episode return",
        )
        ax.plot(
            history.end_steps,
            history.trailing,
            color="tab:blue",
            lw=2,
            label=f"trailing {window}-episode mean",
        )
    if history.eval_means:
        ax.errorbar(
            history.eval_steps,
            history.eval_means,
            yerr=history.eval_stds,
            fmt="o-",
            color="tab:orange",
            ms=4,
            capsize=3,
            label=f"evaluation, {eval_label} (mean ± std)",
        )
    if threshold is not None:
        ax.axhline(threshold, color="tab:green", ls="--", lw=1, label=f"threshold {threshold:g}")
    if history.solved_step is not None:
        ax.axvline(
            history.solved_step,
            color="tab:green",
            lw=1,
            alpha=0.6,
            label=f"solved at episode {history.solved_episode}",
        )
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return path
