"""One step at a time: online learning rules (TD(lambda)) learn from every vector step."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from twrl_exp.protocols import Step


class OnlineStorage:
    """Keeps the latest step and hands it to learning once."""

    def __init__(self) -> None:
        self.step: Step | None = None

    def add(self, step: Step) -> None:
        self.step = step

    def batches(self) -> Iterator[Any]:
        if self.step is not None:
            step, self.step = self.step, None
            yield step

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state
