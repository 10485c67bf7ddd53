"""The figures of analysis.ipynb: importable by the notebook (its kernel starts in notebooks/)
and by tests/integration/test_notebook.py.

Every figure keeps its legend outside the axes, below them (constrained layout makes room), so
that no legend hides a curve or a point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

Z_95 = 1.96  # two-sided 95% quantile of the normal distribution


@dataclass(frozen=True)
class SeedBand:
    """One agent's learning curve across its seeds.

    Attributes:
        steps: [points] env steps from the latest first point of any seed to the earliest last
            point: the range where every seed has data, so the mean never extrapolates a seed.
        mean: [points] mean over seeds.
        half_width: [points] half-width of the 95% confidence interval of the mean (normal
            approximation); NaN with a single seed.
        tails: for each seed that ran past ``steps[-1]``, its own ``(steps, values)`` from
            ``steps[-1]`` to its last logged point; each stops where its data stops.
        n_seeds: seeds with at least one point.
    """

    steps: np.ndarray
    mean: np.ndarray
    half_width: np.ndarray
    tails: list[tuple[np.ndarray, np.ndarray]]
    n_seeds: int


def clean_curve(steps: ArrayLike, values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Sorted by step with one value per step (the last logged), as ``np.interp`` needs."""
    s, v = np.asarray(steps, dtype=float).ravel(), np.asarray(values, dtype=float).ravel()
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    last = np.r_[s[1:] != s[:-1], True]
    return s[last], v[last]


def aggregate_seeds(
    curves: Sequence[tuple[ArrayLike, ArrayLike]], points: int = 200
) -> SeedBand | None:
    """Mean and 95% CI over seeds where every seed has data; the longer seeds' rest as tails.

    Args:
        curves: one ``(steps, values)`` per seed, e.g. an MLflow metric history.
        points: grid points of the common range.

    Returns:
        The band, or None when no seed logged a point.
    """
    usable = [clean_curve(s, v) for s, v in curves if np.size(s) > 0]
    if not usable:
        return None
    start = max(float(s[0]) for s, _ in usable)
    stop = min(float(s[-1]) for s, _ in usable)
    if stop < start:  # no step where all seeds have data: each seed is drawn alone
        empty = np.zeros(0)
        return SeedBand(empty, empty, empty, usable, len(usable))
    grid = np.linspace(start, stop, points) if stop > start else np.array([start])
    stacked = np.stack([np.interp(grid, s, v) for s, v in usable])
    mean = stacked.mean(axis=0)
    if len(usable) > 1:
        half_width = Z_95 * stacked.std(axis=0, ddof=1) / math.sqrt(len(usable))
    else:
        half_width = np.full(grid.shape, np.nan)
    tails = [_tail(s, v, stop) for s, v in usable if s[-1] > stop]
    return SeedBand(grid, mean, half_width, tails, len(usable))


def _tail(steps: np.ndarray, values: np.ndarray, after: float) -> tuple[np.ndarray, np.ndarray]:
    """The curve from ``after`` (interpolated there, so it joins the mean's end) to its end."""
    later = steps > after
    return np.r_[after, steps[later]], np.r_[np.interp(after, steps, values), values[later]]


def plot_learning_curves(title: str, agents: Sequence[tuple[str, SeedBand]]) -> Figure:
    """One env's agents: each mean with its band, thin tails of seeds that ran longer."""
    fig, ax = plt.subplots(figsize=(8, 4.2 + 0.2 * len(agents)), layout="constrained")
    for label, band in agents:
        marker = "o" if band.steps.size == 1 else None
        seeds = f"{band.n_seeds} seed" + ("s" if band.n_seeds > 1 else "")
        (line,) = ax.plot(band.steps, band.mean, marker=marker, label=f"{label}, {seeds}")
        if band.n_seeds > 1:
            low, high = band.mean - band.half_width, band.mean + band.half_width
            ax.fill_between(band.steps, low, high, color=line.get_color(), alpha=0.2, lw=0)
        for steps, values in band.tails:
            ax.plot(steps, values, color=line.get_color(), alpha=0.5, lw=0.8)
    ax.set(title=title, xlabel="env steps", ylabel="trailing-100 mean return")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", fontsize=8)
    return fig


def trial_value(trial: Any) -> float | None:
    """A completed trial's objective, else a pruned trial's last reported intermediate value."""
    if trial.state.name == "COMPLETE":
        return trial.value
    if trial.intermediate_values:
        return trial.intermediate_values[max(trial.intermediate_values)]
    return None


def plot_study(title: str, trials: Sequence[Any]) -> Figure | None:
    """Each parameter of an Optuna study against the objective: completed trials filled,
    pruned ones hollow at their last reported value. None when no trial has params."""
    trials = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    names = sorted({name for t in trials for name in t.params})
    if not trials or not names:
        return None
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(
        rows, cols, squeeze=False, figsize=(4.5 * cols, 3.5 * rows + 0.6), layout="constrained"
    )
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names, strict=False):
        _scatter_param(ax, name, trials)
    handles, labels = axes.flat[0].get_legend_handles_labels()  # the same states on every axes
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8)
    fig.suptitle(title)
    return fig


def _scatter_param(ax: Any, name: str, trials: Sequence[Any]) -> None:
    points = [(t, t.params[name], trial_value(t)) for t in trials if name in t.params]
    points = [(t.state.name, x, value) for t, x, value in points if value is not None]
    numeric = all(isinstance(x, int | float) for _, x, _ in points)
    styles = {"COMPLETE": {"color": "C0"}, "PRUNED": {"facecolors": "none", "edgecolors": "C3"}}
    for state, style in styles.items():
        chosen = [(x if numeric else str(x), value) for s, x, value in points if s == state]
        ax.scatter(
            [x for x, _ in chosen], [value for _, value in chosen], label=state.lower(), **style
        )
    xs = [x for _, x, _ in points]
    if numeric and xs and min(xs) > 0 and max(xs) / min(xs) > 100:
        ax.set_xscale("log")
    ax.set(xlabel=name, ylabel="objective")
    ax.grid(alpha=0.3)
