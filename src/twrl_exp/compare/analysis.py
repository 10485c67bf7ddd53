"""A comparison's figures: per agent its IQM and mean with intervals, per pair of agents the
probability of improvement, the decision and the seed budget (:mod:`twrl_exp.compare.stats`).

The decision (Colas et al. 2018): per env, Welch's t-test of the two agents' per-seed scores at
level ``alpha / looks``. ``looks`` is 1 for a comparison of the runs there are; a comparison
that adds seeds until it is decided (``--until-decided``) looks again after every round, and
dividing ``alpha`` by the rounds it may take (Bonferroni) keeps its chance of deciding between
two equal agents at or below ``alpha`` however many times it looks.

The seed budget: the seeds a side needs so that Welch's test at that level detects the
difference with the stated power, given the sides' standard deviations; the difference is the
observed one unless ``effect`` (the smallest difference worth detecting, in score units) is
given. With the observed difference the figure is an estimate from the seeds at hand: a small
observed difference asks for many seeds, and one of 0 for none can tell.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources

import numpy as np

from twrl_exp import stats
from twrl_exp.compare.agents import Agent


@dataclass
class Side:
    letter: str
    spec: str
    seeds: dict[str, int]
    iqm: float
    iqm_ci: tuple[float, float]
    mean: float
    mean_ci: tuple[float, float]


@dataclass
class EnvVerdict:
    env: str
    p_value: float
    better: str | None  # the letter of the better agent, if decided
    needed: int | None  # seeds a side for the stated power (None: no difference to detect)
    more: dict[str, int] = field(default_factory=dict)  # seeds each side still lacks


@dataclass
class Pair:
    a: str
    b: str
    improvement: float  # P(a > b)
    improvement_ci: tuple[float, float]
    envs: list[EnvVerdict]

    @property
    def decided(self) -> bool:
        return bool(self.envs) and all(v.better is not None for v in self.envs)

    @property
    def verdict(self) -> str:
        if not self.envs:
            return "no env in common"
        winners = {v.better for v in self.envs}
        if winners == {self.a}:
            return f"{self.a} better"
        if winners == {self.b}:
            return f"{self.b} better"
        return "mixed" if None not in winners else "not decided"


@dataclass
class Comparison:
    metric: str
    normalised: bool
    alpha: float
    level: float  # alpha / looks: the level each test uses
    power: float
    effect: float | None
    confidence: float
    sides: list[Side]
    pairs: list[Pair]

    @property
    def decided(self) -> bool:
        return all(p.decided for p in self.pairs)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, default=_plain)


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)


def references() -> dict[str, dict[str, object]]:
    """The shipped random and reference returns per env (``references.json``)."""
    text = resources.files("twrl_exp.compare").joinpath("references.json").read_text()
    return dict(json.loads(text)["envs"])


def normalise(agents: list[Agent]) -> bool:
    """With several envs, scores become (score - random) / (reference - random) from the
    shipped table; whether they were. ValueError in one sentence for an env it lacks."""
    envs = {env for agent in agents for env in agent.scores}
    if len(envs) < 2:
        return False
    table = references()
    missing = sorted(envs - set(table))
    if missing:
        raise ValueError(
            f"{missing[0]} has no random and reference return in the shipped table "
            f"({', '.join(sorted(table))}), so its scores cannot be put on the others' scale: "
            "compare on one env at a time (--env)."
        )
    for agent in agents:
        for env, values in agent.scores.items():
            low, high = float(table[env]["random"]), float(table[env]["reference"])  # type: ignore[arg-type]
            agent.scores[env] = (values - low) / (high - low)
    return True


def analyse(
    agents: list[Agent],
    *,
    metric: str,
    alpha: float = 0.05,
    power: float = 0.8,
    effect: float | None = None,
    confidence: float = 0.95,
    looks: int = 1,
    reps: int = 2000,
) -> Comparison:
    """The figures of ``agents`` (their scores selected)."""
    normalised = normalise(agents)
    level = alpha / looks
    sides = []
    for agent in agents:
        if not agent.scores:
            raise ValueError(
                f"agent {agent.letter} ({agent.spec}) has no finished run here: train it first "
                "(or let --until-decided train it)."
            )
        sides.append(
            Side(
                letter=agent.letter,
                spec=agent.spec,
                seeds={env: int(v.size) for env, v in agent.scores.items()},
                iqm=stats.aggregate_iqm(agent.scores),
                iqm_ci=stats.aggregate_ci(agent.scores, "iqm", confidence=confidence, reps=reps),
                mean=stats.aggregate_mean(agent.scores),
                mean_ci=stats.aggregate_ci(agent.scores, "mean", confidence=confidence, reps=reps),
            )
        )
    pairs = []
    for i, a in enumerate(agents):
        for b in agents[i + 1 :]:
            common = sorted(set(a.scores) & set(b.scores))
            xs = {env: a.scores[env] for env in common}
            ys = {env: b.scores[env] for env in common}
            pairs.append(
                Pair(
                    a=a.letter,
                    b=b.letter,
                    improvement=stats.probability_of_improvement(xs, ys) if common else math.nan,
                    improvement_ci=stats.improvement_ci(xs, ys, confidence=confidence, reps=reps)
                    if common
                    else (math.nan, math.nan),
                    envs=[
                        _verdict(env, a, b, level=level, power=power, effect=effect)
                        for env in common
                    ],
                )
            )
    return Comparison(
        metric=metric,
        normalised=normalised,
        alpha=alpha,
        level=level,
        power=power,
        effect=effect,
        confidence=confidence,
        sides=sides,
        pairs=pairs,
    )


def _verdict(
    env: str, a: Agent, b: Agent, *, level: float, power: float, effect: float | None
) -> EnvVerdict:
    x, y = a.scores[env], b.scores[env]
    p = stats.welch_test(x, y)
    better = None
    if math.isfinite(p) and p < level:
        better = a.letter if x.mean() > y.mean() else b.letter
    sd_x = float(np.std(x, ddof=1)) if x.size > 1 else math.nan
    sd_y = float(np.std(y, ddof=1)) if y.size > 1 else math.nan
    difference = effect if effect is not None else float(x.mean() - y.mean())
    needed = None
    if math.isfinite(sd_x) and math.isfinite(sd_y):
        needed = stats.seeds_needed(sd_x, sd_y, difference, alpha=level, power=power)
    more = {}
    if needed is not None:
        more = {a.letter: max(0, needed - x.size), b.letter: max(0, needed - y.size)}
    return EnvVerdict(env=env, p_value=p, better=better, needed=needed, more=more)
