"""One step at a time: online learning rules (TD(lambda)) learn from every vector step."""

from __future__ import annotations

from collections.abc import Iterator

from twrl_exp.protocols import Clock, State, Step


class OnlineStorage:
    """Keeps the latest :class:`~twrl_exp.protocols.Step` and hands it to learning once."""

    def __init__(self) -> None:
        self.step: Step | None = None

    def add(self, step: Step) -> None:
        self.step = step

    def batches(self, clock: Clock) -> Iterator[Step]:
        del clock
        if self.step is not None:
            step, self.step = self.step, None
            yield step

    def state_dict(self) -> State:
        return {}

    def load_state_dict(self, state: State) -> None:
        del state


class NoStorage:
    """Keeps nothing and never asks to learn (``update=none``)."""

    def add(self, step: Step) -> None:
        del step

    def batches(self, clock: Clock) -> Iterator[Step]:
        del clock
        return iter(())

    def state_dict(self) -> State:
        return {}

    def load_state_dict(self, state: State) -> None:
        del state
