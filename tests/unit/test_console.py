"""What a user reads: progress at 80 columns and in logs, summaries, run names, links."""

from __future__ import annotations

import io

from rich.console import Console

from twrl_exp.agent import Agent
from twrl_exp.env import make_vector_env
from twrl_exp.model import NoModel
from twrl_exp.monitor.console import ConsoleMonitor, figure
from twrl_exp.monitor.links import run_url
from twrl_exp.monitor.setup import run_name, short_override
from twrl_exp.policy import RandomPolicy
from twrl_exp.runner import Runner
from twrl_exp.update import no_update


def random_runner(monitor: ConsoleMonitor, steps: int = 30_000) -> Runner:
    env = make_vector_env(id="CartPole-v1", num_envs=8)
    policy = RandomPolicy(action_space=env.single_action_space)
    model = NoModel(observation_space=env.single_observation_space, num_outputs=0)
    agent = Agent(model=model, policy=policy, update=no_update())
    eval_env = make_vector_env(id="CartPole-v1", num_envs=2)
    return Runner(
        env=env,
        agent=agent,
        seed=0,
        eval_env=eval_env,
        max_env_steps=steps,
        eval_every_steps=10_000,
        eval_episodes=2,
        monitors=[monitor],
        tick_seconds=0.0,
    )


def test_the_live_bar_fits_80_columns_with_percent_rate_and_eta() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    monitor = ConsoleMonitor(title="s0 none/random/none CartPole-v1", console=console)
    assert monitor.live
    runner = random_runner(monitor)
    runner.run()
    monitor.finish(runner, "FINISHED")
    lines = [line for line in out.getvalue().replace("\r", "\n").splitlines() if line.strip()]
    assert max(len(line) for line in lines) <= 80
    bar = [line for line in lines if "%" in line and "eta" in line]
    assert bar
    assert "/s" in bar[-1]
    assert "100%" in out.getvalue()


def test_without_a_terminal_progress_comes_as_plain_lines() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200)  # not a terminal: a log file, CI, nohup
    monitor = ConsoleMonitor(title="run", console=console, interval_s=0.0)
    assert not monitor.live
    random_runner(monitor).run()
    text = out.getvalue()
    progress = [line for line in text.splitlines() if "% " in line and "eta" in line]
    assert len(progress) >= 3
    assert "evaluation at 10.0k steps" in text
    assert "(random actions)" in text  # the random agent's evaluation is not called greedy
    assert "\x1b[" not in text  # no terminal control codes in a log


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
