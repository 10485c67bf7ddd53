"""Segment trees over a fixed number of leaves: sums (prefix-sum search) and minima.

Leaf ``i`` of a tree of capacity ``C`` (rounded up to a power of two, ``L``) is ``nodes[L + i]``;
node ``k`` combines its children ``2k`` and ``2k + 1``, and ``nodes[1]`` is the root. Writing
leaves recomputes their ancestors from their children (never by adding differences), so the
sums hold no drift however many updates they see, and repeated indices in one write are fine
(the last value of an index wins, as with numpy's assignment). Every operation is vectorised
over a batch of indices or values: ``log2 L`` numpy calls, not one per element.
"""

from __future__ import annotations

import numpy as np


class SegmentTree:
    """Leaves combined by ``np.add`` (a sum tree) or ``np.minimum`` (a min tree)."""

    def __init__(self, capacity: int, *, minimum: bool) -> None:
        self.capacity = capacity
        self.leaves = 1 << max(0, capacity - 1).bit_length()
        self.combine = np.minimum if minimum else np.add
        self.neutral = np.inf if minimum else 0.0
        self.depth = self.leaves.bit_length() - 1  # levels above the leaves
        self.nodes = np.full(2 * self.leaves, self.neutral, np.float64)

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        return self.nodes[self.leaves + np.asarray(index)]

    def set(self, index: np.ndarray, values: np.ndarray) -> None:
        """``leaf[index] = values`` (``[K]`` each), and every ancestor recomputed."""
        node = self.leaves + np.asarray(index, np.int64).ravel()
        self.nodes[node] = np.asarray(values, np.float64).ravel()
        for _ in range(self.depth):
            node = np.unique(node // 2)
            self.nodes[node] = self.combine(self.nodes[2 * node], self.nodes[2 * node + 1])

    def reset(self, values: np.ndarray) -> None:
        """All leaves at once (``[<= C]``, the rest neutral), every level rebuilt."""
        self.nodes[:] = self.neutral
        self.nodes[self.leaves : self.leaves + len(values)] = values
        for level in range(self.depth - 1, -1, -1):
            first = 1 << level
            children = self.nodes[2 * first : 4 * first]
            self.nodes[first : 2 * first] = self.combine(children[0::2], children[1::2])

    def root(self) -> float:
        """The sum (or minimum) of all leaves."""
        return float(self.nodes[1])

    def find_prefix(self, mass: np.ndarray) -> np.ndarray:
        """For a sum tree: the leaf ``i`` with ``S_{i-1} <= mass < S_i`` of each ``mass``
        (``S_i`` the sum of leaves ``0..i``), any shape. A mass at or past the total (rounding)
        gives the last leaf with a positive value, never an empty one.

        >>> tree = SegmentTree(4, minimum=False); tree.set(np.arange(4), np.array([1., 2, 0, 3]))
        >>> tree.find_prefix(np.array([0.0, 0.99, 1.0, 2.99, 3.0, 5.99, 6.0])).tolist()
        [0, 0, 1, 1, 3, 3, 3]
        """
        mass = np.array(mass, np.float64)
        node = np.ones(mass.shape, np.int64)
        for _ in range(self.depth):
            left = self.nodes[2 * node]
            right = (mass >= left) & (self.nodes[2 * node + 1] > 0)
            mass = np.where(right, mass - left, mass)
            node = 2 * node + right
        return node - self.leaves
