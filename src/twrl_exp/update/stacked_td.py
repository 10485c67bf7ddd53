"""K TD(lambda) learners of one structure in one process: a TD(lambda) population (tile coding
or tables).

TD(lambda)'s maths is float64 numpy (or its compiled twin, ``update.backend=numba``) over a few
sparse entries per step: there is no matrix product for stacking to batch, and bit-identity
with single runs is the contract. So each member keeps its own learner (weights, traces,
``alpha``, ``lam``, ``gamma``) and the population trains its members in turn, each from start
to end (:meth:`twrl_exp.population.Population.run`), sharing the process (one start-up, one
load of numba's kernels: what a grid on the Ray launcher or an Optuna sweep saves per trial)
and the compiled step's scratch space. Member ``m`` computes exactly what its single run
computes, bit for bit.

The structure is shared and checked: the model's shape (features x actions, its active
features per step), the target, the traces kind and the backend.
"""

from __future__ import annotations

from collections.abc import Sequence

from twrl_exp.errors import ConfigError
from twrl_exp.update.td_lambda import TdLambda


def _structure(member: TdLambda) -> tuple[object, ...]:
    model = member.model
    return (
        tuple(model.weights.shape),
        model.num_active,
        member.target,
        member.replacing,
        member.backend,
    )


class StackedTdLambda:
    """``members`` (TD(lambda) learners of one structure), each learning on its own."""

    def __init__(self, members: Sequence[TdLambda]) -> None:
        structures = {_structure(m) for m in members}
        if len(structures) > 1:
            raise ConfigError(
                "TD(lambda) population members differ in their structure (weights' shape, "
                f"active features, target, traces or backend: {sorted(map(str, structures))}); "
                "members share all of it and differ in alpha, lam, gamma, seed and policy."
            )
        self.members = list(members)
        self.size = len(members)
        for member in self.members[1:]:
            self._share_scratch(member)

    def _share_scratch(self, member: TdLambda) -> None:
        """The compiled step's scratch space (per-entry sums, the entries touched: zero again
        when a step ends) is the first member's: members learn one after another, and K
        copies of it would take a quarter of each member's memory."""
        first = self.members[0]
        if member is not first and member.kernels is not None:
            member.sparse.sums = first.sparse.sums
            member.sparse.touched = first.sparse.touched

    def replace(self, m: int, member: TdLambda) -> None:
        """Slot ``m`` trains ``member`` from now on (a refilled slot)."""
        if _structure(member) != _structure(self.members[0]):
            raise ConfigError(
                "a refilled TD(lambda) slot takes a member of the population's structure."
            )
        self.members[m] = member
        self._share_scratch(member)

    def write_back(self, *, with_state: bool) -> None:
        """Nothing to write: each member's weights are its own learner's."""
        del with_state

    def export_state(self, m: int) -> None:
        """Nothing to export: member ``m``'s learner holds its state."""
        del m
