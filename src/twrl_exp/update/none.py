"""The update that learns nothing (random agents, evaluating a fixed policy)."""

from __future__ import annotations

from typing import Any

from twrl_exp.protocols import Update
from twrl_exp.storage import OnlineStorage


class NoLearning:
    def learn(self, batch: Any) -> None:
        del batch

    def stats(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


def no_update(**parts: Any) -> Update:
    """``update=none``."""
    del parts
    return Update(storage=OnlineStorage(), learner=NoLearning())
