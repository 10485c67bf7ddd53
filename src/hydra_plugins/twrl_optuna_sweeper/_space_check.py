"""A search space checked against the composed config before a study exists.

A sweep over a key the config does not have, or over values its key cannot take, used to start
anyway: every job then failed to compose (Hydra advising ``+key=…``), its trials stayed RUNNING
and counted toward ``n_trials``, and the sweep exited 0 with an empty parent run. Here each
swept key is looked up in the config the sweep composed (for a key under a swept group, in the
config of each of that group's options) and refused in one sentence naming the valid keys or
values: an unknown key, an interval or range over a key that is not a number (a string, a
boolean, an enum, a list), a float interval over an integer key, a choice value its key's type
cannot take, an option a group does not have.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from enum import Enum
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Override
from omegaconf import DictConfig, ListConfig, Node, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from omegaconf.nodes import AnyNode, BooleanNode, EnumNode, FloatNode, IntegerNode, StringNode
from optuna.distributions import FloatDistribution

from hydra_plugins.twrl_optuna_sweeper import _search_space as search_space
from twrl_exp.errors import ConfigError

PARAMS = "hydra.sweeper.params"
_ITEMS: dict[Any, str] = {
    int: " of integers",
    float: " of numbers",
    str: " of strings",
    bool: " of booleans",
}
COMMAND_LINE = "the command line"


def swept(params: dict[str, str], arguments: list[str]) -> dict[str, tuple[str, Override]]:
    """Each swept key with where it was given and its override (the command line wins)."""
    parser = OverridesParser.create()
    out: dict[str, tuple[str, Override]] = {}
    sources = ((PARAMS, [f"{k}={v}" for k, v in params.items()]), (COMMAND_LINE, arguments))
    for origin, lines in sources:
        for override in parser.parse_overrides(lines):
            if override.is_sweep_override():
                out[override.get_key_element()] = (origin, override)
    return out


def check(
    config: DictConfig,
    loader: Any,
    params: dict[str, str],
    arguments: list[str],
    fixed: list[str],
) -> None:
    """Refuse (:class:`ConfigError`, one sentence) a search space the jobs could not compose.

    ``config``: the sweep's composed config; ``loader``: Hydra's config loader (it composes
    the config of each option of a swept group); ``fixed``: the overrides every job gets."""
    sweeps = swept(params, arguments)
    groups: dict[str, list[str]] = {}
    for origin, override in sweeps.values():
        options = _group_options(loader, override.key_or_group)
        if options:
            groups[override.key_or_group] = _check_group(origin, override, options)
    for origin, override in sweeps.values():
        if override.key_or_group in groups:
            continue
        for label, variant in _variants(config, loader, fixed, override.key_or_group, groups):
            _check_key(origin, override, variant, label)


def _group_options(loader: Any, key: str) -> list[str]:
    return [o for o in loader.get_group_options(key) if not o.startswith("schema")]


def _check_group(origin: str, override: Override, options: list[str]) -> list[str]:
    key, line = override.key_or_group, override.input_line
    if not isinstance(override.value(), ChoiceSweep):
        raise ConfigError(
            f"{origin}: {line} is invalid: {key} is a config group, which only choice(...) can "
            f"sweep; its options are {', '.join(options)}."
        )
    chosen = [str(v) for v in override.sweep_iterator()]
    for value in chosen:
        if value not in options:
            raise ConfigError(
                f"{origin}: {line} is invalid: {value} is not an option of {key}; valid: "
                f"{', '.join(options)}."
            )
    return chosen


def _variants(
    config: DictConfig, loader: Any, fixed: list[str], key: str, groups: dict[str, list[str]]
) -> Iterator[tuple[str, DictConfig]]:
    """The configs ``key`` must fit: the sweep's own, or, when ``key`` lies under a swept
    group, the config of each of that group's options."""
    top = key.split(".")[0]
    if top not in groups:
        yield top, config
        return
    for option in groups[top]:
        yield f"{top} ({option})", loader.load_sweep_config(config, [*fixed, f"{top}={option}"])


def _label(config: DictConfig, path: list[str], top_label: str) -> str:
    """How a node of the config is named in a sentence: ``update (reinforce)``, ``model.x``."""
    if not path:
        return "the config (top level)"
    if len(path) == 1:
        if top_label != path[0]:
            return top_label
        choice = OmegaConf.select(config, "hydra.runtime.choices", default=None)
        if isinstance(choice, DictConfig) and isinstance(choice.get(path[0]), str):
            return f"{path[0]} ({choice[path[0]]})"
    return ".".join(path)


def _check_key(origin: str, override: Override, config: DictConfig, top_label: str) -> None:
    key, line = override.key_or_group, override.input_line
    if override.is_force_add():
        return  # ++key: set whether or not it exists, as the user asked
    if override.is_delete():
        raise ConfigError(f"{origin}: {line} is invalid: a search space sets values, not ~keys.")
    parts = key.split(".")
    node: Node | None = config
    for depth, part in enumerate(parts):
        where = _label(config, parts[:depth], top_label)
        if not isinstance(node, DictConfig):
            raise ConfigError(
                f"{origin}: {line} is invalid: {where} is {_describe(node)}, not a group of keys."
            )
        if part not in node:
            free_form = not dataclasses.is_dataclass(OmegaConf.get_type(node))
            if override.is_add() and free_form:
                return  # +key adds it to a free-form group (an option's schema has no room)
            valid = [str(k) for k in node if not str(k).startswith("_") and k != "hydra"]
            known = f"valid: {', '.join(valid)}" if valid else "it has no keys yet"
            add = f" (a free-form group: add the key with +{key}=...)" if free_form else ""
            raise ConfigError(
                f"{origin}: {'.'.join(parts[: depth + 1])} is not a key of {where}; {known}{add}."
            )
        node = node._get_node(part)
    if override.is_add():
        raise ConfigError(
            f"{origin}: {line} is invalid: {key} is already a key of "
            f"{_label(config, parts[:-1], top_label)}; sweep it without the '+'."
        )
    assert node is not None
    _check_values(origin, override, node, config)


def _check_values(origin: str, override: Override, node: Node, config: DictConfig) -> None:
    key, line = override.key_or_group, override.input_line
    if not isinstance(override.value(), ChoiceSweep):
        kind = _numeric(node)
        if kind is None:
            raise ConfigError(
                f"{origin}: {line} is invalid: {key} is {_describe(node)}, which an interval or "
                "range cannot sweep; use choice(...) of its values."
            )
        if kind == "int" and isinstance(search_space.distribution(override), FloatDistribution):
            raise ConfigError(
                f"{origin}: {line} is invalid: {key} is an integer; use "
                "tag(int, interval(low, high)) or range(low, high, step) for it."
            )
        return
    probe = copy.deepcopy(config)
    for value in override.sweep_iterator():
        try:
            OmegaConf.update(probe, key, value, merge=True)
        except OmegaConfBaseException:
            raise ConfigError(
                f"{origin}: {line} is invalid: {value!r} is not a value {key} can take "
                f"({_describe(node)})."
            ) from None


def _numeric(node: Node) -> str | None:
    """``"int"``, ``"float"`` or ``"any"`` for a key an interval may sweep; None otherwise."""
    if isinstance(node, IntegerNode):
        return "int"
    if isinstance(node, FloatNode):
        return "float"
    plain = isinstance(node, AnyNode) and not isinstance(node._value(), bool | str)
    if isinstance(node, AnyNode) and (plain or node._is_interpolation()):
        return "any"
    return None


def _describe(node: Any) -> str:
    value = node._value() if isinstance(node, AnyNode) else None
    if isinstance(node, BooleanNode) or isinstance(value, bool):
        return "a boolean (true or false)"
    if isinstance(node, EnumNode):
        enum = node._metadata.ref_type
        names = [m.name for m in enum] if isinstance(enum, type) and issubclass(enum, Enum) else []
        return f"one of {', '.join(names)}" if names else "an enum"
    if isinstance(node, IntegerNode):
        return "an integer"
    if isinstance(node, FloatNode):
        return "a number"
    if isinstance(node, StringNode) or isinstance(value, str):
        return "a string"
    if isinstance(node, ListConfig):
        item = _ITEMS.get(node._metadata.element_type, "")
        return f"a list{item}"
    if isinstance(node, DictConfig):
        return "a group of keys"
    return "a value"
