"""Learning rules built as the groups build them, and the steps of one-step episodes: shared by
the tests of update/ (test_actor_critic, test_off_policy_ac, test_dqn)."""

from __future__ import annotations

from functools import partial

import numpy as np
from gymnasium import spaces

from twrl_exp.config import make
from twrl_exp.protocols import Step

ONE = spaces.Box(-1.0, 1.0, (1,), np.float32)


def mlp(**kwargs):
    """The model group's factory, as ``model=mlp model.hidden_sizes=[16]`` makes it."""
    return partial(make, "model", "mlp", hidden_sizes=[16], **kwargs)


def update(option: str, **kwargs):
    """``update=<option>`` with the schema's defaults, ``kwargs`` on top, and no step budget."""
    return make("update", option, total_env_steps=None, seed=0, **kwargs)


def bandit_step(features, actions, extras, reward) -> Step:
    n = len(reward)
    return Step(
        features=features,
        actions=actions,
        extras=extras,
        reward=reward,
        terminated=np.ones(n, bool),
        truncated=np.zeros(n, bool),
        valid=np.ones(n, bool),
        next_features=features,
        next_outputs=np.zeros((n, 1)),
        next_actions=actions,
    )
