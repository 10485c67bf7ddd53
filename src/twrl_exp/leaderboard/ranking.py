"""Group runs into rows (one per env and agent), aggregate their seeds and rank them per env."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

from twrl_exp.leaderboard.records import _GROUPS, COMPOSITION_KEYS, Row, RunRecord
from twrl_exp.stats import bootstrap_ci, iqm, welch_test


def build_rows(runs: Iterable[RunRecord]) -> list[Row]:
    """Group runs into rows (one per env and agent), aggregate and rank them per env.

    Returns:
        The rows, grouped by env (sorted by name) and in rank order within each env.
    """
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[RunRecord]] = defaultdict(list)
    for run in runs:
        groups[run.env, tuple(sorted(run.agent.items()))].append(run)
    by_env: dict[str, list[Row]] = defaultdict(list)
    for (env, agent), members in groups.items():
        counted, repeats = _latest_per_seed(members)
        by_env[env].append(_summarize(env, dict(agent), counted, repeats))
    rows: list[Row] = []
    for env in sorted(by_env):
        ranked = sorted(by_env[env], key=_rank_key)
        _set_differing(ranked)
        for rank, row in enumerate(ranked, 1):
            row.rank = rank
        _set_ties(ranked)
        _set_compare_commands(ranked)
        rows += ranked
    return rows


def _latest_per_seed(runs: list[RunRecord]) -> tuple[list[RunRecord], list[RunRecord]]:
    """The latest started run of each seed, and the earlier ones, both in seed order.

    A second run of a seed with the same config is a rerun (after a fix, or a crash), not a new
    sample: the latest reflects the current code, and counting both would shrink the spread and
    the bootstrap interval with copies. Runs of unknown seed (``?``) each count.
    """
    latest: dict[str, RunRecord] = {}
    for run in sorted(runs, key=lambda r: (r.start_time, r.run_id)):
        latest[run.run_id if run.seed == "?" else run.seed] = run
    kept = {r.run_id for r in latest.values()}
    order = sorted(runs, key=lambda r: (_seed_order(r.seed), r.start_time, r.run_id))
    return [r for r in order if r.run_id in kept], [r for r in order if r.run_id not in kept]


def _seed_order(seed: str) -> tuple[int, str]:
    return (int(seed), "") if seed.isdigit() else (1 << 62, seed)


def _summarize(
    env: str, agent: dict[str, str], runs: list[RunRecord], repeats: list[RunRecord]
) -> Row:
    best = _finite(r.metric("best_mean_return") for r in runs)
    solved = [r for r in runs if math.isfinite(r.metric("episodes_to_solve"))]
    many = best.size >= 3
    return Row(
        env=env,
        composition=runs[0].composition,
        agent=agent,
        runs=runs,
        repeats=repeats,
        best_mean=_mean(best),
        best_iqm=iqm(best) if many else None,
        best_ci=bootstrap_ci(best, iqm, confidence=0.95, seed=0) if many else None,
        final_eval=_mean(_finite(r.metric("final_eval_mean_return") for r in runs)),
        n_solved=len(solved),
        episodes_to_solve=_mean(_finite(r.metric("episodes_to_solve") for r in solved)),
        env_steps_to_solve=_mean(_finite(r.metric("env_steps_to_solve") for r in solved)),
        time_to_solve_s=_mean(_finite(r.metric("time_to_solve_s") for r in solved)),
        train_time_s=_mean(_finite(r.metric("train_time_s") for r in runs)),
    )


def _bests(row: Row) -> np.ndarray:
    return _finite(r.metric("best_mean_return") for r in row.runs)


def _set_ties(rows: list[Row], alpha: float = 0.05) -> None:
    """Rows (in rank order) that Welch's test cannot tell apart from the first row of their
    band share its rank (``TIE_RULE``); a row it can starts the next band."""
    leader: Row | None = None
    for row in rows:
        row.tied_with = None
        if leader is not None:
            mine, theirs = _bests(row), _bests(leader)
            if mine.size >= 2 and theirs.size >= 2 and welch_test(mine, theirs) >= alpha:
                row.tied_with = leader.rank
                continue
        leader = row


def _set_compare_commands(rows: list[Row]) -> None:
    """Each row's ``twrl-compare`` command against its env's first row (the first: the second)."""
    for i, row in enumerate(rows):
        other = rows[1] if i == 0 and len(rows) > 1 else rows[0]
        if other is row:
            row.compare_command = ""
            continue
        ids = (",".join(r.run_id for r in x.runs) for x in (row, other))
        row.compare_command = "twrl-compare " + " ".join(f"runs:{i}" for i in ids)


def _finite(values: Iterable[float]) -> np.ndarray:
    x = np.fromiter(values, dtype=float)
    return x[np.isfinite(x)]


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else math.nan


def _rank_key(row: Row) -> tuple[float, ...]:
    score = -row.score if math.isfinite(row.score) else math.inf
    if row.n_solved:
        return (0, -row.n_solved / row.n_seeds, row.episodes_to_solve, score)
    return (1, 0, 0, score)


def _set_differing(rows: list[Row]) -> None:
    """Show a key when it varies among the rows that have it: across the whole env when every
    row has it (a budget, say), else among the rows of the same composition."""
    everywhere = set.intersection(*(set(r.agent) for r in rows))
    for row in rows:
        same = [r for r in rows if r.composition == row.composition]
        shown = {}
        for key, value in sorted(row.agent.items(), key=lambda kv: (_prefix_rank(kv[0]), kv[0])):
            peers = rows if key in everywhere else same
            if key not in COMPOSITION_KEYS and len({r.agent.get(key) for r in peers}) > 1:
                shown[_short(key)] = value
        row.differing = shown
        row.composition_shared = len(same) > 1


def _prefix_rank(key: str) -> int:
    return 0 if key.split(".", 1)[0] in _GROUPS else 1


def _short(key: str) -> str:
    group, _, rest = key.partition(".")
    return rest if group in _GROUPS and rest else key


@lru_cache(maxsize=64)
def _reward_threshold(env_id: str, override: str) -> float | None:
    try:
        from twrl_exp.env import resolve_spec

        given = None if override in ("", "None") else float(override)
        return resolve_spec(env_id, given).reward_threshold
    except Exception:  # an env no longer registered must not break the leaderboard
        return None


def reward_threshold(row: Row) -> float | None:
    """The env's solve threshold as the row's runs used it (``env.reward_threshold`` or gym's)."""
    params = row.runs[0].params
    return _reward_threshold(params.get("env.id", row.env), params.get("env.reward_threshold", ""))
