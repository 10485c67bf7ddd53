"""The update that learns nothing (random agents, evaluating a fixed policy)."""

from __future__ import annotations

from twrl_exp.protocols import Clock, Metrics, Model, ModelFactory, Policy, State, Step, Update
from twrl_exp.storage import NoStorage


class NoLearning:
    """Learns nothing: its storage never hands it a batch."""

    def learn(self, batch: Step, clock: Clock) -> None:
        del batch, clock

    def stats(self) -> Metrics:
        return {}

    def state_dict(self) -> State:
        return {}

    def load_state_dict(self, state: State) -> None:
        del state


def no_update(
    *,
    model: Model | None = None,
    make_model: ModelFactory | None = None,
    policy: Policy | None = None,
    num_envs: int = 1,
    total_env_steps: int | None = None,
    seed: int = 0,
) -> Update[Step]:
    """``update=none``: keeps nothing, learns nothing."""
    del model, make_model, policy, num_envs, total_env_steps, seed
    return Update(storage=NoStorage(), learner=NoLearning())
