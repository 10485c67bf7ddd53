"""The closed sets of values that options take, shared by the schemas and the constructors.

The schemas (:mod:`twrl_exp.config`) type options with these enums, so Hydra refuses a value
outside them at composition time; the constructors take the same enums (or their strings, from
Python) and read them with :func:`parse`, which refuses anything else in one sentence. This
module imports nothing but the standard library, so algorithm code may use it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from twrl_exp.errors import ConfigError


class EnvBackend(StrEnum):
    gymnasium = "gymnasium"
    envpool = "envpool"


class EnvPreprocess(StrEnum):
    none = "none"
    atari = "atari"


class Vectorization(StrEnum):
    auto = "auto"
    native = "native"
    sync = "sync"
    async_ = "async"


class Activation(StrEnum):
    tanh = "tanh"
    relu = "relu"
    elu = "elu"
    gelu = "gelu"
    sigmoid = "sigmoid"


class Baseline(StrEnum):
    none = "none"
    average = "average"
    value = "value"


class OptimizerName(StrEnum):
    adam = "adam"
    rmsprop = "rmsprop"
    sgd = "sgd"


class Schedule(StrEnum):
    constant = "constant"
    linear = "linear"


class TdTarget(StrEnum):
    sarsa = "sarsa"
    q_learning = "q_learning"
    expected_sarsa = "expected_sarsa"


class Traces(StrEnum):
    replacing = "replacing"
    accumulating = "accumulating"


class TdBackend(StrEnum):
    auto = "auto"
    numpy = "numpy"
    numba = "numba"


class ValueEstimator(StrEnum):
    gae = "gae"
    vtrace = "vtrace"


class QLoss(StrEnum):
    huber = "huber"
    mse = "mse"


class Objective(StrEnum):
    best_mean_return = "best_mean_return"
    final_eval_return = "final_eval_return"
    auc = "auc"
    neg_steps_to_solve = "neg_steps_to_solve"
    seconds_to_solve = "seconds_to_solve"


class Aggregate(StrEnum):
    """How a trial of several seeds (``trial.seeds``) scores: their mean, their interquartile
    mean, or the lower end of the 95% bootstrap interval of their IQM (robust: it favours
    configs that score well on every seed, not on average)."""

    mean = "mean"
    iqm = "iqm"
    ci_low = "ci_low"


E = TypeVar("E", bound=StrEnum)


def parse(kind: type[E], key: str, value: object) -> E:
    """``value`` (a member of ``kind`` or its string) as a member, or a :class:`ConfigError`
    naming ``key`` and the valid values.

    >>> parse(Schedule, "update.lr_schedule", "linear") is Schedule.linear
    True
    """
    try:
        return kind(str(value))
    except ValueError:
        valid = ", ".join(member.value for member in kind)
        raise ConfigError(f"{key}={value} is invalid: it must be one of {valid}.") from None


# Old option spellings and what replaced them (key, and the old values' new spellings): the
# command line refuses them in one sentence, logged configs of older runs are translated, and
# runs group by the new spelling (:mod:`twrl_exp.identity`).
RENAMED: dict[str, tuple[str, dict[str, str]]] = {
    "update.entropy_coef": ("update.ent_coef", {}),
    "update.lr_decay": ("update.lr_schedule", {"none": "constant", "linear": "linear"}),
    "update.final_lr_fraction": ("update.lr_final_fraction", {}),
}
