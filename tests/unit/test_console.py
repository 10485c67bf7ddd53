"""What a user reads: progress at 80 columns and in logs, summaries, run names, links."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest
from rich.cells import cell_len
from rich.console import Console

from twrl_exp.agent import Agent
from twrl_exp.config import make
from twrl_exp.model import NoModel
from twrl_exp.monitor.console import ConsoleMonitor, clock, compact, figure, fit
from twrl_exp.monitor.links import run_url
from twrl_exp.monitor.setup import run_name, short_override
from twrl_exp.policy import RandomPolicy
from twrl_exp.runner import Runner
from twrl_exp.update import no_update

CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def random_runner(
    monitor: ConsoleMonitor, steps: int | None = 30_000, episodes: int | None = None
) -> Runner:
    env = make("env", id="CartPole-v1", num_envs=8)
    policy = RandomPolicy(action_space=env.single_action_space)
    model = NoModel(observation_space=env.single_observation_space, num_outputs=0)
    agent = Agent(model=model, policy=policy, update=no_update())
    eval_env = make("env", id="CartPole-v1", num_envs=2)
    return Runner(
        env=env,
        agent=agent,
        seed=0,
        eval_env=eval_env,
        max_env_steps=steps,
        max_episodes=episodes,
        eval_every_steps=10_000,
        eval_episodes=2,
        monitors=[monitor],
        tick_seconds=0.0,
    )


def printed_lines(out: io.StringIO) -> list[str]:
    """What a terminal shows, line by line: redraws split, control sequences removed."""
    text = CONTROL.sub("", out.getvalue().replace("\r", "\n"))
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def test_the_live_bar_fits_80_columns_with_percent_rate_and_eta() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    monitor = ConsoleMonitor(title="s0 none/random/none CartPole-v1", console=console)
    assert monitor.live
    runner = random_runner(monitor)
    runner.run()
    monitor.finish(runner, "FINISHED")
    lines = printed_lines(out)
    assert max(cell_len(line) for line in lines) <= 80
    bar = [line for line in lines if "%" in line and "eta" in line]
    assert bar
    assert "/s" in bar[-1]
    assert "100%" in out.getvalue()
    assert "FINISHED" not in out.getvalue()  # the run's report says it, once


NAN = float("nan")


@pytest.mark.parametrize(
    ("steps", "episodes", "done", "seconds", "returns"),
    [
        # a billion steps at ten million steps/s, returns of six digits
        (2_000_000_000, None, 1_000_000_000, 100.0, (-123456.7, 9_870_000.0)),
        # an ETA of centuries, on a budget of a quadrillion steps
        (10**15, None, 12_345, 1e5, (-9999.94, -9999.99)),
        # a rate beyond every suffix, and infinite returns
        (10**12, None, 999_999, 1e-15, (-math.inf, math.inf)),
        # no episode yet, nor an evaluation
        (50_000, None, 0, 0.0, (NAN, NAN)),
        # an episode budget, in the billions
        (None, 10**9, 123, 3600.0 * 30, (NAN, -1e300)),
    ],
    ids=["billions", "centuries", "beyond-suffixes", "nothing-yet", "episodes"],
)
@pytest.mark.parametrize("live", [True, False], ids=["terminal", "log"])
def test_every_line_fits_80_columns_whatever_the_magnitudes(
    steps: int | None,
    episodes: int | None,
    done: int,
    seconds: float,
    returns: tuple[float, float],
    live: bool,
) -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=live, color_system=None)
    monitor = ConsoleMonitor(title="s0 none/random/none CartPole-v1", console=console, live=live)
    runner = random_runner(monitor, steps=steps, episodes=episodes)
    h = runner.history
    h.env_steps, h.train_time = done, seconds
    if episodes is not None:
        h.returns = [0.0] * done
    trailing, evaluated = returns
    if not math.isnan(trailing):
        h.trailing.append(trailing)
    monitor.start(runner)
    monitor.tick(runner)
    if not math.isnan(evaluated):
        runner.history.eval_means.append(evaluated)
        runner.history.eval_stds.append(abs(evaluated) / 3)
        with np.errstate(all="ignore"):  # as the runner calls it: inf - inf is a figure here
            monitor.evaluation(runner, np.array([evaluated * 1.5, evaluated / 2]))
    monitor.finish(runner, "FAILED")
    lines = printed_lines(out)
    assert max(cell_len(line) for line in lines) <= 80, max(lines, key=cell_len)
    bar = [line for line in lines if "/s" in line and "eta" in line]
    assert bar  # what is never left out: progress, rate and ETA


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (9_999, "9,999"),
        (84_000, "84.0k"),
        (999_960, "1.00M"),
        (1_200_000, "1.20M"),
        (123_456_789_012, "123.5G"),
        (-123_456.7, "-123.5k"),
        (1e30, "1.0e+30"),
        (math.inf, "inf"),
        (NAN, "?"),
    ],
)
def test_figures_are_compact(value: float, text: str) -> None:
    assert compact(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5.4, "0:05"), (3725, "1:02:05"), (86_399, "23:59:59"), (3 * 86_400 + 4 * 3600, "3d04h")],
)
def test_an_eta_stays_short(seconds: float, text: str) -> None:
    assert clock(seconds) == text
    assert clock(1e12) == ">999d"
    assert clock(NAN) == "--:--"


def test_least_important_fields_are_left_out_first() -> None:
    parts = ["1.00G/2.00G", "10.0M/s", "eta 1:40", "return -123.5k", "eval 9.87M"]
    assert fit(parts, 58) == "  ".join(parts)
    assert fit(parts, 54) == " ".join(parts)
    assert fit(parts, 53) == "1.00G/2.00G  10.0M/s  eta 1:40  return -123.5k"
    assert fit(parts, 30) == "1.00G/2.00G  10.0M/s  eta 1:40"


def test_without_a_terminal_progress_comes_as_plain_lines() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200)  # not a terminal: a log file, CI, nohup
    monitor = ConsoleMonitor(title="run", console=console, interval_s=0.0)
    assert not monitor.live
    random_runner(monitor).run()
    text = out.getvalue()
    progress = [line for line in text.splitlines() if "% " in line and "eta" in line]
    assert len(progress) >= 3
    assert "evaluation at 10.0k steps: return" in text
    assert "(random actions)" in text  # the random agent's evaluation is not called greedy
    assert "\x1b[" not in text  # no terminal control codes in a log


def test_a_sweeps_job_shows_progress_but_no_summary_or_notes() -> None:
    for brief in (False, True):
        out = io.StringIO()
        console = Console(file=out, width=80)
        monitor = ConsoleMonitor(title="run", console=console, interval_s=0.0, brief=brief)
        runner = random_runner(monitor, steps=2_000)
        runner.run()
        monitor.note("writing the last metrics")
        monitor.finish(runner, "FINISHED")
        text = out.getvalue()
        assert "100% " in text  # progress either way
        assert ("summary" in text) is not brief
        assert ("best_mean_return" in text) is not brief
        assert ("... writing the last metrics" in text) is not brief


def test_summary_counts_are_whole_numbers() -> None:
    assert figure("episodes", 1229.0) == "1,229"
    assert figure("env_steps", 200016.0) == "200,016"
    assert figure("best_mean_return", 475.25) == "475.25"
    assert figure("best_mean_return", float("nan")) == "n/a"


def test_run_names_lead_with_what_differs(make_cfg) -> None:
    names = [run_name(make_cfg(f"seed={s}"), "CartPole-v1") for s in range(3)]
    assert names[0] == "s0 reinforce/categorical/mlp CartPole-v1"
    assert len({n[:3] for n in names}) == 3  # told apart by their first characters
    keys = ["update.lr", "seed"]
    lead = " ".join(short_override(o, keys) for o in ("update.lr=0.01", "seed=1"))
    cfg = make_cfg("seed=1", "update.lr=0.01")
    assert run_name(cfg, "CartPole-v1", lead) == "lr=0.01 s1 reinforce/categorical/mlp CartPole-v1"
    assert short_override("policy.lr=1", ["update.lr", "policy.lr"]) == "policy.lr=1"


def test_run_links_open_the_charts_in_the_model_training_view() -> None:
    url = run_url("http://127.0.0.1:5000/", "3", "abc")
    assert url == (
        "http://127.0.0.1:5000/#/experiments/3/runs/abc/model-metrics?workflowType=machine_learning"
    )
