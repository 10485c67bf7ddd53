"""What makes two runs the same agent (the ``agent`` tag, the leaderboard's rows)."""

from __future__ import annotations

import doctest

from twrl_exp import identity


def test_the_examples_in_the_docstrings_hold() -> None:
    result = doctest.testmod(identity)
    assert result.attempted >= 4
    assert result.failed == 0


def test_seed_bookkeeping_and_observation_are_not_the_agent() -> None:
    base = {"update.lr": 0.01, "env.id": "CartPole-v1", "train.max_env_steps": 1000}
    other = {
        **base,
        "seed": 3,
        "resume": "abc",
        "monitor.console": False,
        "eval.episodes": 100,
        "trial.number": 4,
        "paths.root": "/x",
        "torch_threads": 2,
    }
    assert identity.agent_key(base) == identity.agent_key(other)
    assert identity.agent_key(base) != identity.agent_key({**base, "train.max_env_steps": 2000})


def test_model_names_are_what_mlflow_accepts() -> None:
    name = identity.model_name("lr=0.01 s1 reinforce/categorical/mlp my_envs:Corridor-v0")
    assert not set("/:.%\"' ") & set(name)
    assert name == "lr=0_01-s1-reinforce-categorical-mlp-my_envs_Corridor-v0"
