"""The typed learning contract: no ``Any`` in the signatures of update/ and storage/, the parts
of every option satisfy the protocols learners read, and the learning core type-checks
against the real types of what it imports."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import types
import typing
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces

from twrl_exp import protocols, storage, update
from twrl_exp.config import make


def modules(package: types.ModuleType) -> list[types.ModuleType]:
    found = [package]
    for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        try:
            found.append(importlib.import_module(info.name))
        except ImportError:  # the numba kernels, where numba is not installed
            continue
    return found


def contains_any(annotation: object) -> bool:
    """Whether ``Any`` appears anywhere in ``annotation`` (unions, generics, the fields of a
    TypedDict unpacked into ``**kwargs``)."""
    if annotation is typing.Any:
        return True
    if typing.is_typeddict(annotation):
        hints = typing.get_type_hints(annotation)
        return any(contains_any(hint) for hint in hints.values())
    return any(contains_any(arg) for arg in typing.get_args(annotation))


def signatures(module: types.ModuleType) -> list[tuple[str, dict[str, object]]]:
    """``(name, resolved annotations)`` of every function, method and dataclass defined in
    ``module``."""
    found = []
    for name, obj in vars(module).items():
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        members = [(name, obj)] if inspect.isfunction(obj) else []
        if inspect.isclass(obj):
            members += [
                (f"{name}.{attr}", member)
                for attr, member in vars(obj).items()
                if inspect.isfunction(member)
            ]
            if dataclasses.is_dataclass(obj) or typing.is_typeddict(obj):
                members.append((name, obj))
        for qualified, member in members:
            hints = typing.get_type_hints(member, vars(module))
            found.append((f"{module.__name__}.{qualified}", hints))
    return found


@pytest.mark.parametrize("package", [update, storage], ids=["update", "storage"])
def test_no_signature_in_update_or_storage_is_typed_any(package: types.ModuleType) -> None:
    checked = [(name, hints) for m in modules(package) for name, hints in signatures(m)]
    assert len(checked) > 20
    untyped = [
        f"{name}: {key}"
        for name, hints in checked
        for key, hint in hints.items()
        if contains_any(hint)
    ]
    assert untyped == []
    sources = [Path(m.__file__ or "").read_text() for m in modules(package)]
    assert not any("import Any" in source or "typing.Any" in source for source in sources)


def test_the_check_finds_any_in_a_typed_dict_and_a_union() -> None:
    class Settings(typing.TypedDict):
        lr: float
        extra: dict[str, typing.Any]

    assert contains_any(Settings)
    assert contains_any(int | list[typing.Any])
    assert not contains_any(int | list[float] | None)


BOX = spaces.Box(-1.0, 1.0, (3,), np.float32)
POLICIES = [
    ("categorical", spaces.Discrete(3)),
    ("egreedy", spaces.Discrete(3)),
    ("greedy", spaces.Discrete(3)),
    ("random", spaces.Discrete(3)),
    ("random", BOX),
    ("normal", BOX),
    ("tanh_normal", BOX),
    ("deterministic", BOX),
]


@pytest.mark.parametrize(("option", "space"), POLICIES)
def test_every_policy_declares_what_storages_and_learners_read(option, space) -> None:
    policy = make("policy", option, action_space=space)
    assert isinstance(policy, protocols.Policy)
    assert isinstance(policy.action_dtype, np.dtype)
    outputs = np.zeros((4, policy.num_outputs), np.float32)
    actions, _ = policy.act(outputs, np.random.default_rng(0), protocols.Clock())
    assert actions.shape == (4, *policy.action_shape)
    assert actions.dtype == policy.action_dtype


@pytest.mark.parametrize(
    ("option", "space"),
    [("mlp", BOX), ("tilecoding", spaces.Box(-1.0, 1.0, (2,))), ("table", spaces.Discrete(4))],
)
def test_every_model_declares_what_learners_read(option, space) -> None:
    model = make("model", option, observation_space=space, num_outputs=2)
    assert isinstance(model, protocols.Model)
    assert isinstance(model, protocols.NetworkModel) == (option == "mlp")
    assert isinstance(model, protocols.LinearValues) == (option != "mlp")


def test_batch_records_are_frozen() -> None:
    batch = storage.ReplayBatch(*(np.zeros((1, 2)) for _ in range(5)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        batch.obs = np.ones((1, 2))  # type: ignore[misc]
    assert batch.gradient_steps == 1
