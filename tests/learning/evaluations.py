"""The deep-RL learning checks' protocol: greedy evaluations every ``every`` env steps within
the preset's budget; a check that needs one evaluation at a threshold stops at the first one
that reaches it (the verdict is the same, the rest of the budget is not spent)."""

from __future__ import annotations

import numpy as np

from twrl_exp.build import build, make_runner
from twrl_exp.runner import MonitorBase, Runner


class StopAt(MonitorBase):
    """Ends the run at the first evaluation whose mean reaches ``threshold``."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def evaluation(self, runner: Runner, returns: np.ndarray) -> None:
        if returns.mean() >= self.threshold:
            runner.stop_reason = "solved"


def evaluations(make_cfg, *overrides: str, every: int, until: float | None = None) -> list[float]:
    """The run's evaluation means (5 greedy episodes each); with ``until``, the run ends at the
    first one that reaches it."""
    cfg = make_cfg(*overrides, "monitor=none", "eval.episodes=5")
    monitors = [StopAt(until)] if until is not None else []
    runner = make_runner(cfg, build(cfg), monitors=monitors, eval_every_steps=every)
    runner.run()
    return runner.history.eval_means
