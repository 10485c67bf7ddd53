"""Tile coding (Sutton & Barto 2018, sec. 9.5.4): the sparse binary features of the tile-coded
linear model, as pure functions on arrays (the numba kernels of TD(lambda) compute the same)."""

from __future__ import annotations

import functools

import numpy as np

_HASH_PRIMES = np.array(
    [2_654_435_761, 2_246_822_519, 3_266_489_917, 668_265_263, 374_761_393, 1_181_783_497],
    dtype=np.int64,
)


def tile_hash_primes(dims: int) -> np.ndarray:
    """``[dims + 1]`` multipliers that hash a tiling and its ``dims`` tile coordinates."""
    return _HASH_PRIMES[np.arange(dims + 1) % _HASH_PRIMES.size]


def tile_indices(
    unit_obs: np.ndarray,
    num_tilings: int,
    tiles_per_dim: int,
    memory_size: int | None,
) -> np.ndarray:
    """Active tiles of each observation under ``num_tilings`` offset grid tilings.

    Offsets are asymmetric as in Sutton's tiles3 (Sutton & Barto 2018, sec. 9.5.4): tiling ``k``
    is displaced by ``(k * (2j + 1) mod num_tilings) / num_tilings`` of a tile width in dimension
    ``j``. Each tiling has ``tiles_per_dim + 1`` tiles per dimension so that displaced grids
    still cover the unit cube. With ``memory_size`` None, indices are exact and disjoint across
    tilings; with a size, tile coordinates are hashed into ``[0, memory_size)``.

    Args:
        unit_obs: ``[N, D]`` observations scaled to the unit cube ``[0, 1]^D``.
        num_tilings: number of tilings ``T``.
        tiles_per_dim: tiles across the unit interval in each dimension.
        memory_size: the size of the hashed index space, or None (exact indices).

    Returns:
        ``[N, T]`` int64 feature indices, one active tile per tiling.

    >>> tile_indices(np.array([[0.0], [0.99]]), 2, 2, None).tolist()
    [[0, 3], [1, 5]]
    """
    n, dims = unit_obs.shape
    clipped = np.minimum(np.maximum(unit_obs, 0.0), 1.0 - 1e-9)
    q = (clipped * tiles_per_dim * num_tilings).astype(np.int64)  # >= 0: truncation floors
    offsets, base, scale = _tile_layout(num_tilings, tiles_per_dim, dims, memory_size is not None)
    coords = (q[:, None, :] + offsets) // num_tilings  # [N, T, D]
    if memory_size is None:
        return base + coords @ scale
    mixed = coords * scale + base
    folded = np.bitwise_xor.reduce(mixed ^ (mixed >> 17), axis=2)
    return np.mod(folded, memory_size).reshape(n, num_tilings)


@functools.cache
def _tile_layout(
    num_tilings: int, tiles_per_dim: int, dims: int, hashed: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What tile_indices computes the same way for every observation (read-only arrays):
    offsets ``[1, T, D]``; then the first index of each tiling ``[T]`` and the strides ``[D]``,
    or, hashed, each tiling's hash term ``[1, T, 1]`` and the multipliers ``[D]``."""
    tilings = np.arange(num_tilings, dtype=np.int64)
    displacement = 2 * np.arange(dims, dtype=np.int64) + 1
    offsets = ((tilings[:, None] * displacement) % num_tilings)[None]
    if hashed:
        primes = tile_hash_primes(dims)
        base, scale = (tilings * primes[0])[None, :, None], primes[1:]
    else:
        side = tiles_per_dim + 1
        base, scale = tilings * side**dims, side ** np.arange(dims - 1, -1, -1, dtype=np.int64)
    for array in (offsets, base, scale):
        array.setflags(write=False)
    return offsets, base, scale
