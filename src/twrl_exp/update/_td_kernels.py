"""The kernels of ``update.backend=numba`` (:mod:`twrl_exp.update.td_fast` imports this module
only when that backend is chosen, so numba costs nothing otherwise).

Each reproduces a numpy computation exactly: every floating-point sum adds its terms in the
order numpy does (pairwise along a contiguous axis, one row after the other along a strided
one). Helpers take few arrays: a call to a compiled function counts references to each array it
passes, which costs more than the work of a per-entry helper.

The first process on a machine compiles the kernels (seconds, which ``make bench`` measures
and a run counts in its training time); numba caches them on disk and later processes load
them. The cache goes to ``$NUMBA_CACHE_DIR`` if set, else ``__pycache__`` beside this file,
else the user's cache folder (``~/.cache/numba``): the first of them that is writable, so a
read-only install works. Where none is, the kernels compile in every process, with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TypeVar, cast

import numba
import numpy as np

_cache = {"usable": True}
Function = TypeVar("Function", bound=Callable[..., object])


def jit(function: Function) -> Function:
    """``numba.njit(cache=True)``, or uncached (one warning) where no cache folder is writable."""
    if _cache["usable"]:
        try:
            return cast(Function, numba.njit(cache=True)(function))
        except RuntimeError:  # numba: "cannot cache function ...: no locator available"
            _cache["usable"] = False
            warnings.warn(
                "numba can write its cache nowhere here, so the TD(lambda) kernels compile in "
                "every process: set NUMBA_CACHE_DIR to a writable folder to compile them once.",
                RuntimeWarning,
                stacklevel=2,
            )
    return cast(Function, numba.njit(function))


_BLOCK = 128  # numpy's pairwise-summation block (PW_BLOCKSIZE)


@jit
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


@jit
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


@jit
def tile_features(
    obs: np.ndarray, low: np.ndarray, span: np.ndarray, primes: np.ndarray, sizes: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """``tile_indices`` (twrl_exp.model.tiles) of ``(obs - low) / span``: ``[N, D]`` -> ``[N, T]``.

    ``sizes = [num_tilings, tiles_per_dim, memory_size or 0]``; ``primes`` as in tile_indices.
    """
    num_tilings, tiles_per_dim, memory_size = sizes[0], sizes[1], sizes[2]
    n, dims = obs.shape
    side = tiles_per_dim + 1
    offsets = np.empty((num_tilings, dims), dtype=np.int64)
    for t in range(num_tilings):
        for d in range(dims):
            offsets[t, d] = (t * (2 * d + 1)) % num_tilings
    out = np.empty((n, num_tilings), dtype=np.int64)
    whole = np.empty(dims, dtype=np.int64)
    part = np.empty(dims, dtype=np.int64)
    for i in range(n):
        for d in range(dims):
            unit = (np.float64(obs[i, d]) - low[d]) / span[d]
            if unit != unit:
                raise ValueError("model=tilecoding cannot encode a NaN observation.")
            q = np.int64(np.floor(min(max(unit, 0.0), 1.0 - 1e-9) * tiles_per_dim * num_tilings))
            whole[d], part[d] = q // num_tilings, q % num_tilings
        for t in range(num_tilings):
            index = t if memory_size == 0 else 0
            for d in range(dims):
                # (q + offset) // T without a division: offset < T, q >= 0
                coord = whole[d] + (part[d] + offsets[t, d] >= num_tilings)
                if memory_size == 0:
                    index = index * side + coord  # t * side**dims + coords @ strides
                else:
                    mixed = coord * primes[d + 1] + t * primes[0]
                    index ^= mixed ^ (mixed >> 17)
            out[i, t] = index if memory_size == 0 else index % memory_size
    return out


@jit
def tile_values(
    obs: np.ndarray,
    low: np.ndarray,
    span: np.ndarray,
    primes: np.ndarray,
    sizes: np.ndarray,
    weights: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """:func:`tile_features` and :func:`linear_outputs` of them, in one call."""
    features = tile_features(obs, low, span, primes, sizes)
    return features, linear_outputs(weights, features)


@jit
def _check_indices(indices: np.ndarray, size: int) -> None:  # pragma: no cover - compiled
    """Unchecked indexing would read or write outside the arrays: refuse bad indices first."""
    for i in range(indices.shape[0]):
        for t in range(indices.shape[1]):
            if indices[i, t] < 0 or indices[i, t] >= size:
                raise IndexError("a feature or action index is out of range for the weights.")


@jit
def _check_actions(actions: np.ndarray, size: int) -> None:  # pragma: no cover - compiled
    for i in range(actions.shape[0]):
        if actions[i] < 0 or actions[i] >= size:
            raise IndexError("an action index is out of range for the weights.")


@jit
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


@jit
def _row_max(values: np.ndarray, i: int) -> float:  # pragma: no cover - compiled
    """``values[i].max()`` (NaN wins, as in numpy)."""
    best = values[i, 0]
    for b in range(1, values.shape[1]):
        v = values[i, b]
        if v > best or v != v:
            best = v
    return best


@jit
def learn_step(
    weights: np.ndarray,
    entry: np.ndarray,
    value: np.ndarray,
    slot: np.ndarray,
    length: np.ndarray,
    sums: np.ndarray,
    touched: np.ndarray,
    totals: np.ndarray,
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
) -> None:  # pragma: no cover - compiled
    """One :meth:`TdLambda.learn <twrl_exp.update.td_lambda.TdLambda.learn>`, in place.

    One function, loops written out: a call to a helper that takes arrays costs more here than
    the work it does (numba counts references to each array it passes).

    Args:
        weights: ``[F, A]``.
        entry, value, slot, length, sums, touched: a :class:`~twrl_exp.update.td_fast.SparseTraces`.
        totals: ``[2]``: the sum of squared TD errors and their number, accumulated.
        features, actions: ``[N, T]`` and ``[N]``: the decision the step learns from.
        reward, terminated, truncated, valid: ``[N]``.
        q_next, next_actions: ``[N, A]`` and ``[N]``: the decision taken in the next state.
        probs: ``[N, A]`` ``pi(a|s')`` for expected Sarsa (anything otherwise).
        params: ``[gamma, lam, step_size, target (TARGETS), replacing (0 or 1)]``.
    """
    gamma, step_size, target, replacing = params[0], params[2], params[3], params[4] != 0.0
    num_envs, num_active = features.shape
    num_outputs = weights.shape[1]
    _check_indices(features, weights.shape[0])
    _check_actions(actions, num_outputs)
    _check_actions(next_actions, num_outputs)
    flat = weights.reshape(-1)
    total, count = sums[0], sums[1]
    terms = np.empty(max(num_active, num_outputs))
    squares = np.zeros(num_envs)
    num_touched = 0
    for i in range(num_envs):
        delta = 0.0
        if valid[i]:
            a = actions[i]
            for t in range(num_active):
                terms[t] = flat[features[i, t] * num_outputs + a]
            q_prev = _pairwise_sum(terms, 0, num_active)
            future = 0.0
            if terminated[i]:
                pass
            elif target == 0.0:  # Sarsa
                future = q_next[i, next_actions[i]]
            elif target == 1.0:  # Watkins's Q
                future = _row_max(q_next, i)
            else:  # expected Sarsa
                for b in range(num_outputs):
                    terms[b] = probs[i, b] * q_next[i, b]
                future = _pairwise_sum(terms, 0, num_outputs)
            delta = reward[i] + gamma * future - q_prev
            squares[i] = delta * delta
            for t in range(num_active):  # z[j] <- 1 or += 1, listing j if it is new
                j = features[i, t] * num_outputs + a
                k = slot[i, j] - 1
                if k < 0:
                    k = length[i]
                    entry[i, k], value[i, k], slot[i, j] = j, 0.0, k + 1
                    length[i] = k + 1
                value[i, k] = 1.0 if replacing else value[i, k] + 1.0
        for k in range(length[i]):  # envs in order, as numpy sums the dense traces
            j, z = entry[i, k], value[i, k]
            if count[j] == 0.0:
                touched[num_touched] = j
                num_touched += 1
            total[j] += delta * z
            count[j] += z if z <= 1.0 or z != z else 1.0
    for k in range(num_touched):
        j = touched[k]
        shared = count[j] if count[j] >= 1.0 or count[j] != count[j] else 1.0
        flat[j] += step_size * (total[j] / shared)
        total[j], count[j] = 0.0, 0.0
    decay = gamma * params[1]
    for i in range(num_envs):
        cut = terminated[i] or truncated[i]
        if target == 1.0 and not cut:  # Watkins: cut after an exploratory action
            cut = q_next[i, next_actions[i]] != _row_max(q_next, i)
        kept = 0
        for k in range(length[i]):  # z <- gamma * lam * z; entries that reach 0 leave
            j = entry[i, k]
            z = 0.0 if cut else value[i, k] * decay
            if z == 0.0:
                slot[i, j] = 0
                continue
            if kept != k:
                entry[i, kept], slot[i, j] = j, kept + 1
            value[i, kept] = z
            kept += 1
        length[i] = kept
    totals[0] += _pairwise_sum(squares, 0, num_envs)
    totals[1] += np.count_nonzero(valid)


@jit
def egreedy_actions(
    q_values: np.ndarray, uniforms: np.ndarray, epsilon: float
) -> tuple[np.ndarray, int]:  # pragma: no cover - compiled
    """:meth:`EGreedy.sample <twrl_exp.policy.value.EGreedy.sample>` up to its last draw.

    ``uniforms`` holds ``rng.random((N, A))`` (tie breaking) then ``rng.random(N)``
    (exploring), drawn in one call. Returns the greedy actions with ``-1`` where the env
    explores, and the number of those: the caller draws their actions, as numpy does.
    """
    n, num_actions = q_values.shape
    actions = np.empty(n, dtype=np.int64)
    explorers = 0
    for i in range(n):
        top = _row_max(q_values, i)
        best, best_key = 0, -1.0
        for a in range(num_actions):
            key = uniforms[i * num_actions + a] * (q_values[i, a] == top)
            if key > best_key:  # argmax: the first of equal keys
                best, best_key = a, key
        if uniforms[n * num_actions + i] < epsilon:
            best = -1
            explorers += 1
        actions[i] = best
    return actions, explorers
