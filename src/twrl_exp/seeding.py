"""The seed tree: every random stream of a run, derived from its seed in one place.

A run's ``seed`` is the root of a tree of :class:`numpy.random.SeedSequence` s. Each random
stream is a named child, ``SeedSequence(seed, spawn_key=(stream, *key))``, where ``key``
numbers the stream's instances (the training env's resets are keyed by the resume count, an
Optuna sampler's by the trials its study already holds). Children of one root are
statistically independent of each other and of the children of every other root, so
consecutive run seeds (0, 1, 2, ...) are as good as any, and no stream of one run replays a
stream of another (``seed + 17`` for the replay buffer of run 0 was the replay seed of run 0 and
the root seed of run 17).

Streams and what draws from them:

========== ================================================================================
stream     draws
========== ================================================================================
ENV        the training env's resets (``env.reset(seed=...)``), keyed by the resume count
POLICY     the agent's training actions (exploration, sampling, tie-breaks)
EVALUATION the agent's evaluation actions (greedy tie-breaks, sampled evaluation)
EVAL_ENV   the evaluation env's resets, keyed by the resume count
REPLAY     which transitions a replay buffer samples
TORCH      torch's generator: network initialisation, minibatch order, target and SAC noise
VIDEO      the video env's resets
SAMPLER    an Optuna sampler of a sweep, keyed by the trials its study already holds
========== ================================================================================

The numbers are part of every logged run's meaning: never renumber a stream, only add.
A population member is a run of its own seed (:func:`run_seeds`), so its streams are its own.
"""

from __future__ import annotations

import enum

import numpy as np

from twrl_exp.errors import ConfigError

MAX_SEED = 2**32 - 1


class Stream(enum.IntEnum):
    """The named children of a run's seed (see the module's table)."""

    ENV = 1
    POLICY = 2
    EVALUATION = 3
    EVAL_ENV = 4
    REPLAY = 5
    TORCH = 6
    VIDEO = 7
    SAMPLER = 8


def sequence(seed: int, stream: Stream, *key: int) -> np.random.SeedSequence:
    """The node ``seed / stream / key...`` of the tree.

    >>> sequence(0, Stream.ENV, 2).spawn_key
    (1, 2)
    """
    return np.random.SeedSequence(seed, spawn_key=(int(stream), *key))


def generator(seed: int, stream: Stream, *key: int) -> np.random.Generator:
    """A numpy generator (PCG64) drawing ``stream`` of run ``seed``."""
    return np.random.default_rng(sequence(seed, stream, *key))


def integer(seed: int, stream: Stream, *key: int) -> int:
    """An integer seed for ``stream`` of run ``seed``, for APIs that take one (Gymnasium's
    ``reset``, ``torch.manual_seed``, Optuna's samplers).

    31 bits: a vector env seeds its sub-env ``i`` with ``seed + i``, and some envs hand their
    seed to C code as an unsigned 32-bit integer.

    >>> integer(0, Stream.ENV) == integer(0, Stream.ENV)
    True
    >>> integer(0, Stream.ENV) != integer(0, Stream.ENV, 1)
    True
    """
    return int(sequence(seed, stream, *key).generate_state(1)[0] >> 1)


def run_seeds(seed: int, count: int) -> list[int]:
    """The roots of ``count`` runs of one trial (``trial.seeds``) or population: ``seed``,
    ``seed + 1``, ... Each is a root of its own tree, so consecutive roots share no stream, and
    the first run of a trial is the run of ``seed`` alone."""
    last = seed + count - 1
    if last > MAX_SEED:
        raise ConfigError(
            f"seed={seed} with trial.seeds={count} would need seeds up to {last:,}, past the "
            f"largest, {MAX_SEED:,}: choose a smaller seed."
        )
    return list(range(seed, seed + count))
