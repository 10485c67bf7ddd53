"""Published results beside ours: rl-baselines3-zoo's benchmark (``external.json``, shipped with
its source), shown under each env's table as *external*: never ranked, never in our statistics
(one trained agent each, the zoo's own caveat)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

EXTERNAL_RULE = (
    "External rows are published results (rl-baselines3-zoo's benchmark: one trained agent "
    "each, its deterministic policy's mean return after its training budget), shown beside "
    "ours for reference: never ranked, never in our statistics."
)


@dataclass(frozen=True)
class ExternalRow:
    source: str  # "rl-baselines3-zoo"
    algo: str
    env: str
    mean_return: float
    std_return: float
    env_steps: str  # the budget as published: 100k, 1M
    seeds: int

    @property
    def text(self) -> str:
        """``ppo 100k: 500.0 ± 0.0``."""
        return f"{self.algo} {self.env_steps}: {self.mean_return:,.1f} ± {self.std_return:,.1f}"


@cache
def _table() -> tuple[str, tuple[ExternalRow, ...]]:
    data = json.loads(resources.files("twrl_exp.leaderboard").joinpath("external.json").read_text())
    rows = tuple(
        ExternalRow(
            source="rl-baselines3-zoo",
            algo=r["algo"],
            env=r["env"],
            mean_return=float(r["mean_return"]),
            std_return=float(r["std_return"]),
            env_steps=str(r["env_steps"]),
            seeds=int(r["seeds"]),
        )
        for r in data["rows"]
    )
    return str(data["source"]), rows


def external_rows(env: str) -> list[ExternalRow]:
    """The published rows of ``env`` (none for an env the table lacks)."""
    return [row for row in _table()[1] if row.env == env]


def source() -> str:
    """Where the published rows come from (a URL with its commit)."""
    return _table()[0]
