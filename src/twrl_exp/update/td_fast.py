"""Compiled TD(lambda) step for linear action values over binary features (``update.backend``).

The per-step work of :class:`~twrl_exp.update.td_lambda.TdLambda` with tile coding is some
forty small numpy calls, each about a microsecond whatever the array size. With numba (the
optional extra ``pip install "twrl-exp[fast]"``) it is three compiled calls: tile indices,
action values, and one learning step. They give bit-identical results to the numpy path: each
floating-point sum adds its terms in the order numpy does (pairwise along a contiguous axis,
one row after the other along a strided one), so the same seeds give the same returns and
weights with either backend.

The learning step keeps sparse traces beside the dense ones: per env, the list of the entries
whose trace is non-zero, in the order they were first marked. Only those entries are updated,
decayed and cut, which is exact because every other entry adds ``delta * 0`` to the dense sum.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twrl_exp.errors import ConfigError

try:
    import numba
except ImportError:  # the numpy path is the fallback
    numba = None

BACKENDS = ("auto", "numpy", "numba")
TARGETS = {"sarsa": 0, "q_learning": 1, "expected_sarsa": 2}
_BLOCK = 128  # numpy's pairwise-summation block (PW_BLOCKSIZE)


def resolve_backend(backend: Any) -> str:
    """``auto`` -> ``numba`` if it can be imported, else ``numpy``; refuse anything else."""
    name = str(getattr(backend, "value", backend))
    if name not in BACKENDS:
        raise ConfigError(
            f"update.backend={name} is invalid: it must be one of {', '.join(BACKENDS)}."
        )
    if name == "numba" and numba is None:
        raise ConfigError(
            'update.backend=numba needs numba, which is not installed: pip install "twrl-exp[fast]" '
            "(or use update.backend=auto, which falls back to numpy)."
        )
    if name == "auto":
        return "numpy" if numba is None else "numba"
    return name


def _njit(fn: Any) -> Any:
    return numba.njit(cache=True, nogil=True)(fn) if numba is not None else fn


@_njit
def _block_sum(x: np.ndarray, start: int, n: int) -> float:  # pragma: no cover - compiled
    """numpy's pairwise_sum of ``x[start:start + n]`` for ``n <= 128``: eight accumulators."""
    if n < 8:
        res = 0.0
        for i in range(start, start + n):
            res += x[i]
        return res
    r0, r1, r2, r3 = x[start], x[start + 1], x[start + 2], x[start + 3]
    r4, r5, r6, r7 = x[start + 4], x[start + 5], x[start + 6], x[start + 7]
    i = start + 8
    stop = start + n - n % 8
    while i < stop:
        r0 += x[i]
        r1 += x[i + 1]
        r2 += x[i + 2]
        r3 += x[i + 3]
        r4 += x[i + 4]
        r5 += x[i + 5]
        r6 += x[i + 6]
        r7 += x[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < start + n:
        res += x[i]
        i += 1
    return res


@_njit
def _pairwise_sum(x: np.ndarray, start: int, n: int) -> float:  # pragma: no cover - compiled
    """``x[start:start + n].sum()`` in numpy's order for a contiguous axis.

    numpy halves the range (at a multiple of 8) until a block holds at most 128 terms; this
    walks the same tree with an explicit stack (numba's cache cannot hold recursive functions).
    """
    if n <= _BLOCK:
        return _block_sum(x, start, n)
    starts = np.empty(128, dtype=np.int64)
    sizes = np.empty(128, dtype=np.int64)  # a negative size: add the two sums on top
    sums = np.empty(128)
    starts[0], sizes[0] = start, n
    todo, done = 1, 0
    while todo:
        todo -= 1
        first, size = starts[todo], sizes[todo]
        if size < 0:
            done -= 1
            sums[done - 1] += sums[done]
        elif size <= _BLOCK:
            sums[done] = _block_sum(x, first, size)
            done += 1
        else:
            half = size // 2 - (size // 2) % 8
            starts[todo], sizes[todo] = first, -1
            starts[todo + 1], sizes[todo + 1] = first + half, size - half
            starts[todo + 2], sizes[todo + 2] = first, half
            todo += 3
    return sums[0]


@_njit
def tile_features(
    obs: np.ndarray, low: np.ndarray, span: np.ndarray, primes: np.ndarray, sizes: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """:func:`twrl_exp.returns.tile_indices` of ``(obs - low) / span``: ``[N, D]`` -> ``[N, T]``.

    ``sizes = [num_tilings, tiles_per_dim, memory_size or 0]``; ``primes`` as in tile_indices.
    """
    num_tilings, tiles_per_dim, memory_size = sizes[0], sizes[1], sizes[2]
    n, dims = obs.shape
    side = tiles_per_dim + 1
    out = np.empty((n, num_tilings), dtype=np.int64)
    q = np.empty(dims, dtype=np.int64)
    for i in range(n):
        for d in range(dims):
            unit = (np.float64(obs[i, d]) - low[d]) / span[d]
            if unit != unit:
                raise ValueError("model=tilecoding cannot encode a NaN observation.")
            clipped = min(max(unit, 0.0), 1.0 - 1e-9)
            q[d] = np.int64(np.floor(clipped * tiles_per_dim * num_tilings))
        for t in range(num_tilings):
            index = t if memory_size == 0 else 0
            for d in range(dims):
                coord = (q[d] + (t * (2 * d + 1)) % num_tilings) // num_tilings
                if memory_size == 0:
                    index = index * side + coord  # t * side**dims + coords @ strides
                else:
                    mixed = coord * primes[d + 1] + t * primes[0]
                    index ^= mixed ^ (mixed >> 17)
            out[i, t] = index if memory_size == 0 else index % memory_size
    return out


@_njit
def _check_indices(indices: np.ndarray, size: int) -> None:  # pragma: no cover - compiled
    """Unchecked indexing would read or write outside the arrays: refuse bad indices first."""
    for i in range(indices.shape[0]):
        for t in range(indices.shape[1]):
            if indices[i, t] < 0 or indices[i, t] >= size:
                raise IndexError("a feature or action index is out of range for the weights.")


@_njit
def _check_actions(actions: np.ndarray, size: int) -> None:  # pragma: no cover - compiled
    for i in range(actions.shape[0]):
        if actions[i] < 0 or actions[i] >= size:
            raise IndexError("an action index is out of range for the weights.")


@_njit
def linear_outputs(weights: np.ndarray, features: np.ndarray) -> np.ndarray:  # pragma: no cover
    """``weights[features].sum(axis=1)``: ``[N, T]`` feature indices -> ``[N, A]`` values."""
    n, num_active = features.shape
    num_outputs = weights.shape[1]
    _check_indices(features, weights.shape[0])
    out = np.empty((n, num_outputs))
    if num_outputs == 1:  # numpy reduces a contiguous axis pairwise
        column = np.empty(num_active)
        for i in range(n):
            for t in range(num_active):
                column[t] = weights[features[i, t], 0]
            out[i, 0] = _pairwise_sum(column, 0, num_active)
        return out
    for i in range(n):  # and a strided axis one row after the other
        for a in range(num_outputs):
            out[i, a] = weights[features[i, 0], a]
        for t in range(1, num_active):
            for a in range(num_outputs):
                out[i, a] += weights[features[i, t], a]
    return out


@_njit
def _row_max(values: np.ndarray, i: int) -> float:  # pragma: no cover - compiled
    """``values[i].max()`` (NaN wins, as in numpy)."""
    best = values[i, 0]
    for b in range(1, values.shape[1]):
        v = values[i, b]
        if v > best or v != v:
            best = v
    return best


@_njit
def learn_step(
    weights: np.ndarray,
    traces: np.ndarray,
    traced: np.ndarray,
    num_traced: np.ndarray,
    scratch: np.ndarray,
    delta: np.ndarray,
    features: np.ndarray,
    actions: np.ndarray,
    reward: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    valid: np.ndarray,
    q_next: np.ndarray,
    next_actions: np.ndarray,
    probs: np.ndarray,
    params: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """One :meth:`TdLambda.learn <twrl_exp.update.td_lambda.TdLambda.learn>` in place.

    Args:
        weights: ``[F, A]``, updated in place.
        traces: ``[N, F * A]`` dense traces; ``traced[n, :num_traced[n]]`` lists the non-zero
            entries of row ``n`` (flat indices ``feature * A + action``).
        scratch: ``[2, F * A]`` zeros (left as zeros): per-entry sums of ``delta_n z_n`` and
            of ``min(z_n, 1)`` over the envs.
        delta: ``[N]``, receives the TD errors (0 where ``valid`` is False).
        features, actions: ``[N, T]`` and ``[N]``: the decision the step learns from.
        reward, terminated, truncated, valid: ``[N]``.
        q_next, next_actions: ``[N, A]`` and ``[N]``: the decision taken in the next state.
        probs: ``[N, A]`` ``pi(a|s')`` for expected Sarsa (anything otherwise).
        params: ``[gamma, lam, step_size, target (TARGETS), replacing (0 or 1)]``.

    Returns:
        The number of envs that learned.
    """
    gamma, lam, step_size = params[0], params[1], params[2]
    target, replacing = int(params[3]), params[4] != 0.0
    num_envs, num_active = features.shape
    num_outputs = weights.shape[1]
    _check_indices(features, weights.shape[0])
    _check_actions(actions, num_outputs)
    _check_actions(next_actions, num_outputs)
    flat = weights.reshape(-1)
    total, count = scratch[0], scratch[1]
    terms = np.empty(max(num_active, num_outputs))
    learned = 0
    for i in range(num_envs):
        delta[i] = 0.0
        if valid[i]:
            a = actions[i]
            for t in range(num_active):
                terms[t] = flat[features[i, t] * num_outputs + a]
            q_prev = _pairwise_sum(terms, 0, num_active)
            future = 0.0
            if not terminated[i]:
                if target == 0:
                    future = q_next[i, next_actions[i]]
                elif target == 1:
                    future = _row_max(q_next, i)
                else:
                    for b in range(num_outputs):
                        terms[b] = probs[i, b] * q_next[i, b]
                    future = _pairwise_sum(terms, 0, num_outputs)
            delta[i] = reward[i] + gamma * future - q_prev
            learned += 1
            for t in range(num_active):
                j = features[i, t] * num_outputs + a
                if traces[i, j] == 0.0:
                    traced[i, num_traced[i]] = j
                    num_traced[i] += 1
                traces[i, j] = 1.0 if replacing else traces[i, j] + 1.0
        for k in range(num_traced[i]):
            j = traced[i, k]
            z = traces[i, j]
            total[j] += delta[i] * z
            count[j] += z if z <= 1.0 or z != z else 1.0
    decay = gamma * lam
    for i in range(num_envs):
        cut = terminated[i] or truncated[i]
        if target == 1 and not cut:
            cut = not q_next[i, next_actions[i]] == _row_max(q_next, i)
        kept = 0
        for k in range(num_traced[i]):
            j = traced[i, k]
            if count[j] != 0.0:  # not yet applied (another env's list may hold j too)
                shared = count[j] if count[j] >= 1.0 or count[j] != count[j] else 1.0
                flat[j] += step_size * (total[j] / shared)
                total[j] = 0.0
                count[j] = 0.0
            if cut:
                traces[i, j] = 0.0
                continue
            traces[i, j] *= decay
            if traces[i, j] != 0.0:
                traced[i, kept] = j
                kept += 1
        num_traced[i] = kept
    return learned
