"""The command line: ``twrl-compare AGENT AGENT [...]`` (``python -m twrl_exp.compare``).

Each AGENT is a config (``'update=ppo update.lr=3e-4'``: the overrides of ``python train.py``),
``runs:<id>,<id>`` or ``tag:<key>=<value>`` (:mod:`twrl_exp.compare.agents`). Prints the
comparison, writes its HTML page and logs both to an MLflow run (experiment ``comparisons``).

``--until-decided --max-seeds N``: trains the seeds each config lacks (as one population per
round: ``python train.py -m <config> seed=... hydra/launcher=population``, or the launcher
``--train`` names) until every pair is decided or every side has N seeds, and says which.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from twrl_exp.compare import agents as agents_mod
from twrl_exp.compare.analysis import Comparison, analyse
from twrl_exp.compare.report import render_html, render_terminal
from twrl_exp.errors import ConfigError
from twrl_exp.leaderboard.records import COMPARISON_TAG, CURVE_METRIC
from twrl_exp.paths import train_command

EXPERIMENT = "comparisons"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"twrl-compare: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _unit(name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}={text} is not a number.") from None
        if not 0.0 < value < 1.0:
            raise argparse.ArgumentTypeError(f"{name}={text} is invalid: it must be in (0, 1).")
        return value

    return parse


def _count(name: str, least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}={text} is not a whole number.") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{name}={text} is invalid: it must be >= {least}.")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="twrl-compare",
        description="Is A better than B? IQM and mean with bootstrap intervals, the probability "
        "of improvement, Welch's test and the seeds each side needs; --until-decided trains "
        "the missing seeds.",
    )
    p.add_argument("agents", nargs="*", metavar="AGENT", help="a config, runs:<id>,... or tag:k=v")
    p.add_argument("--env", action="append", default=[], help="this env only (repeatable)")
    p.add_argument("--metric", default="best_mean_return", help="the run metric that scores a seed")
    p.add_argument("--alpha", type=_unit("--alpha"), default=0.05, help="the test's level")
    p.add_argument("--power", type=_unit("--power"), default=0.8, help="for the seed budget")
    p.add_argument("--effect", type=float, default=None, help="smallest difference worth finding")
    p.add_argument("--confidence", type=_unit("--confidence"), default=0.95)
    p.add_argument(
        "--html", default="compare.html", help="the page to write (default: %(default)s)"
    )
    p.add_argument("--no-html", action="store_true")
    p.add_argument("--no-mlflow", action="store_true", help="log no comparison run")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--until-decided", action="store_true", help="train seeds until decided")
    # (dest: the names of counts, not of seeds, which only twrl_exp.seeding derives)
    p.add_argument("--max-seeds", dest="budget", type=_count("--max-seeds", 2), default=None)
    p.add_argument("--min-seeds", dest="first_round", type=_count("--min-seeds", 2), default=3)
    p.add_argument("--step", type=_count("--step", 1), default=3, help="seeds added per round")
    p.add_argument(
        "--train", default="", help="more overrides for training, e.g. 'hydra/launcher=ray'"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (ConfigError, ValueError) as exc:
        print(f"twrl-compare: error: {exc}", file=sys.stderr)
        return 2


def _uri(args: argparse.Namespace) -> str:
    if args.tracking_uri:
        return str(args.tracking_uri)
    from twrl_exp.paths import default_tracking_uri

    return default_tracking_uri()  # $MLFLOW_TRACKING_URI, else the project's store


def _check(args: argparse.Namespace) -> None:
    if args.until_decided and args.budget is None:
        raise ConfigError("--until-decided needs --max-seeds N: the most seeds a side may get.")
    if args.budget is not None and not args.until_decided:
        raise ConfigError("--max-seeds is the budget of --until-decided: add --until-decided.")
    if args.until_decided and args.first_round > args.budget:
        raise ConfigError(f"--min-seeds={args.first_round} is more than --max-seeds={args.budget}.")
    if args.effect is not None and not (math.isfinite(args.effect) and args.effect > 0):
        raise ConfigError(f"--effect={args.effect} is invalid: a difference > 0, in score units.")


def _run(args: argparse.Namespace) -> int:
    _check(args)
    agents = agents_mod.parse(list(args.agents))
    if args.until_decided:
        configs = [a for a in agents if a.overrides is None]
        if configs:
            raise ConfigError(
                f"--until-decided trains configs; agent {configs[0].letter} ({configs[0].spec}) "
                "is runs or a tag: give it as the overrides of its config."
            )
    uri = _uri(args)
    looks = 1
    if args.until_decided:
        looks = 1 + math.ceil((args.budget - args.first_round) / args.step)
    expected: dict[str, int] = {}  # the finished runs each agent should have after training
    while True:
        _select(agents, args, uri, allow_empty=args.until_decided)
        short = [a for a in agents if len(a.runs) < expected.get(a.letter, 0)]
        if short:  # its new runs did not all finish: training them again would loop
            raise ConfigError(
                f"agent {short[0].letter} ({short[0].spec}) has {len(short[0].runs)} finished "
                f"runs after training, not {expected[short[0].letter]}: some of its runs failed "
                "(their messages are above); the comparison stops."
            )
        if args.until_decided:
            lacking = {a.letter: max(0, args.first_round - len(a.runs)) for a in agents}
            if any(lacking.values()):
                expected = {a.letter: len(a.runs) + lacking[a.letter] for a in agents}
                _train(agents, lacking, args, uri)
                continue
        result = analyse(
            agents,
            metric=args.metric,
            alpha=args.alpha,
            power=args.power,
            effect=args.effect,
            confidence=args.confidence,
            looks=looks,
        )
        if not args.until_decided or result.decided:
            break
        more = _next_round(agents, result, args)
        if not any(more.values()):
            break
        expected = {a.letter: len(a.runs) + more.get(a.letter, 0) for a in agents}
        _train(agents, more, args, uri)
    render_terminal(result)
    for agent in agents:
        print(agent.describe())
    if args.until_decided:
        seeds = max(len(a.runs) for a in agents)
        if result.decided:
            print(f"decided with {seeds} seeds a side at most (budget {args.budget}).")
        else:
            print(f"not decided: the budget of {args.budget} seeds a side is spent.")
    page = None
    if not args.no_html:
        page = _page(result, agents, uri)
        Path(args.html).write_text(page)
        print(f"page: {Path(args.html).resolve()}")
    if not args.no_mlflow:
        print(f"logged: {_log(result, agents, uri, page)}")
    return 0


def _select(
    agents: list[agents_mod.Agent], args: argparse.Namespace, uri: str, *, allow_empty: bool
) -> None:
    from twrl_exp.leaderboard.records import load_runs

    try:
        runs = load_runs(uri, envs=args.env)
    except Exception as exc:
        from twrl_exp.store import StoreError

        if isinstance(exc, StoreError) and allow_empty:
            runs = []  # no store yet: --until-decided trains the first runs into it
        elif isinstance(exc, StoreError):
            raise ConfigError(str(exc)) from exc
        else:
            raise
    agents_mod.select(agents, runs, args.metric)
    for agent in agents:
        if agent.env is not None and agent.scores and set(agent.scores) != {agent.env}:
            agent.scores = {agent.env: agent.scores[agent.env]} if agent.env in agent.scores else {}


def _next_round(
    agents: list[agents_mod.Agent], result: Comparison, args: argparse.Namespace
) -> dict[str, int]:
    """Seeds each side gets next: ``--step`` more, or as many as the seed budget asks for if
    that is more, never past ``--max-seeds``."""
    wanted = {a.letter: len(a.runs) + args.step for a in agents}
    for pair in result.pairs:
        for verdict in pair.envs:
            if verdict.better is None and verdict.needed is not None:
                for letter in (pair.a, pair.b):
                    wanted[letter] = max(wanted[letter], verdict.needed)
    undecided = {x for p in result.pairs if not p.decided for x in (p.a, p.b)}
    return {
        a.letter: max(0, min(args.budget, wanted[a.letter]) - len(a.runs))
        if a.letter in undecided
        else 0
        for a in agents
    }


def _train(
    agents: list[agents_mod.Agent], more: dict[str, int], args: argparse.Namespace, uri: str
) -> None:
    """Train ``more[letter]`` new seeds of each config: the lowest seeds it owns and has not
    run, as one multirun (one population where the rule has one)."""
    import shlex

    for agent in agents:
        count = more.get(agent.letter, 0)
        if count <= 0:
            continue
        used, seeds, candidate = set(agent.seeds), list[int](), 0
        while len(seeds) < count:
            if agent.owns(candidate) and candidate not in used:
                seeds.append(candidate)
            candidate += 1
        assert agent.overrides is not None
        with tempfile.TemporaryDirectory(prefix="twrl-compare-") as tmp:
            command = [
                *train_command(), "-m", *agent.overrides,
                f"seed={','.join(map(str, seeds))}", "hydra/launcher=population",
                *shlex.split(args.train), f"hydra.sweep.dir={tmp}/multirun",
            ]  # fmt: skip
            print(f"training {agent.letter}: seeds {', '.join(map(str, seeds))}", flush=True)
            env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
            done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            raise ConfigError(
                f"training agent {agent.letter} ({agent.spec}) failed with exit code "
                f"{done.returncode}; its own message is above."
            )


def _page(result: Comparison, agents: list[agents_mod.Agent], uri: str) -> str:
    from twrl_exp import stats

    scores = [v for a in agents for v in a.scores.values()]
    low = min(float(v.min()) for v in scores)
    high = max(float(v.max()) for v in scores)
    thresholds = np.linspace(low, high, 60) if high > low else np.array([low - 1, low, low + 1])
    profiles = []
    for agent in agents:
        point = stats.performance_profile(agent.scores, thresholds)
        lo, hi = stats.performance_profile_band(
            agent.scores, thresholds, confidence=result.confidence
        )
        profiles.append((agent.letter, (thresholds, point, lo, hi)))
    curves: dict[str, list] = {}
    client = _client(uri)
    for agent in agents:
        for env in agent.scores:
            histories = []
            for run in (r for r in agent.runs if r.env == env):
                history = client.get_metric_history(run.run_id, CURVE_METRIC)
                histories.append(([m.step for m in history], [m.value for m in history]))
            curve = stats.iqm_curve(histories, confidence=result.confidence)
            curves.setdefault(env, []).append((agent.letter, curve))
    return render_html(result, profiles=profiles, curves=curves)


def _client(uri: str) -> Any:
    from twrl_exp import store

    return store.open_client(uri, read_only=True)


def _log(result: Comparison, agents: list[agents_mod.Agent], uri: str, page: str | None) -> str:
    """An MLflow run (experiment ``comparisons``) with the comparison's JSON and page."""
    from mlflow import MlflowClient

    from twrl_exp import store

    client: MlflowClient = store.open_client(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    name = " vs ".join(a.spec for a in agents)[:200]
    run = client.create_run(experiment_id, run_name=name, tags={COMPARISON_TAG: "1"})
    run_id = run.info.run_id
    try:
        for agent in agents:
            client.log_param(run_id, f"agent.{agent.letter}", agent.spec[:500])
        client.log_param(run_id, "metric", result.metric)
        verdicts = "; ".join(f"{p.a} vs {p.b}: {p.verdict}" for p in result.pairs)
        client.set_tag(run_id, "mlflow.note.content", verdicts)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "comparison.json").write_text(result.to_json())
            client.log_artifact(run_id, str(Path(tmp) / "comparison.json"))
            if page is not None:
                (Path(tmp) / "comparison.html").write_text(page)
                client.log_artifact(run_id, str(Path(tmp) / "comparison.html"))
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def cli() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    cli()
