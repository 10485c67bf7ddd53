"""Compiled TD(lambda) step for linear action values over binary features (``update.backend``).

The per-step work of :class:`~twrl_exp.update.td_lambda.TdLambda` with tile coding is some
forty small numpy calls, each about a microsecond whatever the array size. With numba (the
optional extra ``pip install "twrl-exp[fast]"``) it is three compiled calls
(:mod:`twrl_exp.update._td_kernels`): tile indices with their action values, the
epsilon-greedy choice, and one learning step. Results are bit-identical to the numpy path: the
same seeds give the same returns and weights with either backend.

The learning step keeps sparse traces: per env, the list of the entries whose trace is
non-zero. Only those entries are updated, decayed and cut, which is exact because every other
entry adds ``delta * 0`` to numpy's dense sums.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

from twrl_exp.choices import TdBackend, TdTarget, parse
from twrl_exp.errors import ConfigError

TARGETS = {TdTarget.sarsa: 0, TdTarget.q_learning: 1, TdTarget.expected_sarsa: 2}


def load_kernels(backend: TdBackend | str) -> ModuleType | None:
    """The compiled kernels for ``backend``, or None for numpy.

    ``auto`` is numba if it can be imported, else numpy; ``numba`` without numba, or any other
    name, is refused in one sentence.
    """
    name = parse(TdBackend, "update.backend", backend)
    if name is TdBackend.numpy:
        return None
    try:
        return importlib.import_module("twrl_exp.update._td_kernels")
    except ImportError as exc:
        if name is TdBackend.auto:
            return None
        raise ConfigError(
            "update.backend=numba needs numba, which cannot be imported here "
            f'({exc}): pip install "twrl-exp[fast]", or use update.backend=auto or numpy.'
        ) from exc


class SparseTraces:
    """Per env, the non-zero eligibility traces as a list of (entry, value), entry =
    ``feature * A + action``, in the order they were first marked; ``slot`` finds an entry's
    place in its list (position + 1, 0 if absent). Plus the scratch space of a step. Sized for
    the worst case (every entry non-zero): 16 bytes per env and entry, dense traces take 8."""

    def __init__(self, num_envs: int, entries: int) -> None:
        index = np.int32 if entries < 2**31 else np.int64
        self.entry = np.zeros((num_envs, entries), dtype=index)
        self.value = np.zeros((num_envs, entries))
        self.slot = np.zeros((num_envs, entries), dtype=index)
        self.length = np.zeros(num_envs, dtype=np.int64)
        self.sums = np.zeros((2, entries))  # per entry: sum_n delta_n z_n, sum_n min(z_n, 1)
        self.touched = np.zeros(entries, dtype=index)  # entries with a non-zero sum

    def clear(self) -> None:
        self.slot[...] = 0
        self.length[...] = 0
