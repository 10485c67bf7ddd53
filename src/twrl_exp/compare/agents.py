"""What a comparison compares: agents, each named on the command line by a config (overrides),
by run ids or by a tag, and their runs (the latest FINISHED run of each seed, as the
leaderboard counts them) with one score per run.

- ``"update=reinforce update.lr=0.01"``: a config, composed as ``python train.py`` composes it
  (presets included); its runs are those whose agent (every param but the seed and run
  bookkeeping, :mod:`twrl_exp.identity`) is that config's. Only a config can be trained more
  (``--until-decided``).
- ``runs:<id>,<id>,...``: those runs.
- ``tag:<key>=<value>``: the runs with that tag.

A config compared with itself (an A/A test, which a sound procedure should not decide) splits
its seeds between the sides: the k-th of n identical specs takes the seeds ``s`` with
``s % n == k``.
"""

from __future__ import annotations

import math
import shlex
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from twrl_exp.errors import ConfigError
from twrl_exp.identity import agent_key
from twrl_exp.leaderboard.ranking import _latest_per_seed
from twrl_exp.leaderboard.records import RunRecord

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class Agent:
    """One side of a comparison."""

    letter: str
    spec: str
    overrides: list[str] | None = None  # a config's overrides (only a config trains more)
    key: str | None = None  # its agent key, for a config
    env: str | None = None  # its env id, for a config
    share: tuple[int, int] = (0, 1)  # (k, n): the seeds s with s % n == k (an A/A test)
    runs: list[RunRecord] = field(default_factory=list)
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # env -> one score per seed

    @property
    def seeds(self) -> list[int]:
        return sorted(int(r.seed) for r in self.runs if r.seed.isdigit())

    def owns(self, number: int) -> bool:
        """Whether seed ``number`` is this side's (an A/A test splits a config's seeds)."""
        k, n = self.share
        return number % n == k

    def describe(self) -> str:
        runs = len(self.runs)
        envs = ", ".join(sorted(self.scores)) or "no runs yet"
        return f"{self.letter}: {self.spec}  ({runs} seed{'s' * (runs != 1)}; {envs})"


def parse(specs: list[str]) -> list[Agent]:
    """The agents of ``specs`` (letters A, B, ...), configs composed; ConfigError in one
    sentence for a spec that is none of the three forms or a config that does not compose."""
    if len(specs) < 2:
        raise ConfigError(
            f"a comparison needs two agents or more, not {len(specs)}: e.g. twrl-compare "
            "'update.lr=0.01' 'update.lr=0.001'."
        )
    if len(specs) > len(LETTERS):
        raise ConfigError(f"{len(specs)} agents: a comparison takes at most {len(LETTERS)}.")
    agents = []
    for letter, spec in zip(LETTERS, specs, strict=False):
        agent = Agent(letter=letter, spec=spec)
        if spec.startswith("runs:"):
            ids = [i for i in spec.removeprefix("runs:").split(",") if i]
            if not ids:
                raise ConfigError(f"agent {letter} '{spec}' names no run: use runs:<id>,<id>.")
        elif spec.startswith("tag:"):
            key, sep, _ = spec.removeprefix("tag:").partition("=")
            if not sep or not key:
                raise ConfigError(
                    f"agent {letter} '{spec}' is not a tag filter: use tag:key=value."
                )
        else:
            agent.overrides = shlex.split(spec)
            agent.key, agent.env = _config_identity(letter, agent.overrides)
        agents.append(agent)
    same: dict[str, list[Agent]] = defaultdict(list)
    for agent in agents:
        if agent.key is not None:
            same[agent.key].append(agent)
    for group in same.values():
        for k, agent in enumerate(group):
            agent.share = (k, len(group))
    return agents


def _config_identity(letter: str, overrides: list[str]) -> tuple[str, str]:
    """The agent key and env id of the config ``overrides`` compose to."""
    from twrl_exp.logged import compose_config
    from twrl_exp.monitor.setup import logged_params  # the params a run of it records

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(
            f"agent {letter}: '{bad[0]}' is not an override: a config agent is overrides of "
            "python train.py, e.g. 'update=ppo update.lr=3e-4'."
        )
    try:
        cfg = compose_config(overrides)
    except Exception as exc:  # Hydra's composition errors, said in one sentence
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"agent {letter} '{' '.join(overrides)}' does not compose: {first}"
        ) from exc
    return agent_key(logged_params(cfg)), str(cfg.env.id)


def select(agents: list[Agent], runs: list[RunRecord], metric: str) -> None:
    """Give each agent its runs (the latest of each seed) and their scores (``metric``)."""
    for agent in agents:
        if agent.spec.startswith("runs:"):
            wanted = set(agent.spec.removeprefix("runs:").split(",")) - {""}
            mine = [r for r in runs if r.run_id in wanted]
            missing = wanted - {r.run_id for r in mine}
            if missing:
                raise ConfigError(
                    f"agent {agent.letter}: no FINISHED run {sorted(missing)[0]} in this store "
                    "(a run id of a finished run, as the leaderboard or MLflow lists it)."
                )
        elif agent.spec.startswith("tag:"):
            key, _, value = agent.spec.removeprefix("tag:").partition("=")
            mine = [r for r in runs if r.tags.get(key) == value]
        else:
            mine = [
                r
                for r in runs
                if agent_key(r.params) == agent.key
                and (not r.seed.isdigit() or agent.owns(int(r.seed)))
            ]
        by_env: dict[str, list[RunRecord]] = defaultdict(list)
        for run in mine:
            by_env[run.env].append(run)
        agent.runs, agent.scores = [], {}
        for env, members in sorted(by_env.items()):
            counted, _ = _latest_per_seed(members)
            values = np.array([r.metric(metric) for r in counted], dtype=float)
            unscored = [
                r.run_id for r, v in zip(counted, values, strict=True) if not math.isfinite(v)
            ]
            if unscored:
                raise ConfigError(
                    f"agent {agent.letter}: run {unscored[0]} has no {metric}; choose a metric "
                    "every run has (--metric, e.g. best_mean_return or final_eval_mean_return)."
                )
            agent.runs += counted
            agent.scores[env] = values
