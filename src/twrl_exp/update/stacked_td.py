"""K TD(lambda) learners of one structure trained in one process: the learning step of a TD(lambda)
population (tile coding or tables).

TD(lambda)'s maths is float64 numpy (or its compiled twin, ``update.backend=numba``) over a few
sparse entries per step: there is no matrix product for stacking to batch, and bit-identity
with single runs is the contract. So each member keeps its own learner (weights, traces,
``alpha``, ``lam``, ``gamma``, target, traces kind) and learns from its own step with it, in
slot order; the population shares the process (one start-up, one import of torch and numba's
kernels) and the loop. Member ``m`` computes exactly what its single run computes, bit for bit.

The structure is shared and checked: the model's shape (features x actions, its active
features per step), the target, the traces kind and the backend.
"""

from __future__ import annotations

from collections.abc import Sequence

from twrl_exp.errors import ConfigError
from twrl_exp.protocols import Clock, Metrics, Step
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
    """``members`` (TD(lambda) learners of one structure) learning together, each its own."""

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

    def replace(self, m: int, member: TdLambda) -> None:
        """Slot ``m`` trains ``member`` from now on (a refilled slot)."""
        if _structure(member) != _structure(self.members[0]):
            raise ConfigError(
                "a refilled TD(lambda) slot takes a member of the population's structure."
            )
        self.members[m] = member

    def learn(self, steps: Sequence[Step | None], clocks: Sequence[Clock]) -> list[Metrics | None]:
        """Each member with a step learns from it with its own learner; its metrics (TD(lambda)
        reports through ``stats``: none here)."""
        results: list[Metrics | None] = [None] * self.size
        for m, (member, step) in enumerate(zip(self.members, steps, strict=True)):
            if step is not None:
                member.learn(step, clocks[m])
        return results

    def write_back(self, *, with_state: bool) -> None:
        """Nothing to write: each member's weights are its own learner's."""
        del with_state

    def export_state(self, m: int) -> None:
        """Nothing to export: member ``m``'s learner holds its state."""
        del m
