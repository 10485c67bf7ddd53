"""Hydra sweep syntax -> Optuna distributions: ``choice(...)``, ``range(a, b, step)``,
``interval(a, b)`` (floats; ``tag(int, interval(a, b))`` for integers) and ``tag(log, ...)``."""

from __future__ import annotations

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
)
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from twrl_exp.errors import ConfigError


def _as_choice(value: Any) -> Any:
    """Optuna choices must be None, bool, int, float or str: lists become their override text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(_as_choice(v)) for v in value) + "]"
    return str(value)


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override (``key=choice(...)`` and friends)."""
    try:
        return _distribution(override)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{override.input_line} is not a valid search space: {exc} "
            "(e.g. interval(low, high) with low <= high, and low > 0 under tag(log, ...))."
        ) from exc


def _distribution(override: Override) -> BaseDistribution:
    value = override.value()
    log = "log" in getattr(value, "tags", set())
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution([_as_choice(v) for v in override.sweep_iterator()])
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        assert start is not None
        assert stop is not None
        assert step is not None
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(int(start), int(stop) - int(step), step=int(step), log=log)
        return FloatDistribution(float(start), float(stop) - float(step), step=float(step))
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        assert low is not None
        assert high is not None
        if "int" in value.tags or (isinstance(low, int) and isinstance(high, int)):
            return IntDistribution(int(low), int(high), log=log)
        return FloatDistribution(float(low), float(high), log=log)
    raise ConfigError(f"{override.input_line} is not a sweep (use choice, range or interval).")


def parse(
    params: dict[str, str], arguments: list[str]
) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Search space from the sweep config's ``params`` and sweeps on the command line.

    Returns the distributions by key and the fixed (non-sweep) command-line overrides, which
    every trial receives unchanged.
    """
    parser = OverridesParser.create()
    lines = [f"{key}={text}" for key, text in params.items()]
    space: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    for override in parser.parse_overrides(lines) + parser.parse_overrides(arguments):
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(str(override.input_line))
    return space, fixed


def grid(space: dict[str, BaseDistribution]) -> dict[str, list[Any]]:
    """The finite search space a grid sampler needs; intervals cannot be gridded."""
    out: dict[str, list[Any]] = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            out[key] = list(dist.choices)
        elif isinstance(dist, IntDistribution):
            out[key] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution) and dist.step is not None:
            n = round((dist.high - dist.low) / dist.step)
            out[key] = [dist.low + i * dist.step for i in range(n + 1)]
        else:
            raise ConfigError(
                f"sampler=grid needs finite choices, but {key} is a continuous interval; "
                "use choice(...) or range(...) for it."
            )
    return out


def override_text(key: str, value: Any) -> str:
    """``key=value`` in Hydra's override syntax for a sampled value."""
    if isinstance(value, str) and not value.startswith("["):
        return f"{key}={value}"
    if isinstance(value, float):
        return f"{key}={value!r}"
    return f"{key}={value}"


def describe(dist: BaseDistribution) -> str:
    """A distribution as one line for the parent run's params: ``log-uniform[1e-05, 0.05]``,
    ``uniform[0.9, 0.999]``, ``int[2, 9]``, ``int[1000, 4000] step 1000``, ``choice(4, 8)``."""
    if isinstance(dist, CategoricalDistribution):
        return "choice(" + ", ".join(str(c) for c in dist.choices) + ")"
    if isinstance(dist, FloatDistribution | IntDistribution):
        floats = isinstance(dist, FloatDistribution)
        text = f"{'log-' if dist.log else ''}{'uniform' if floats else 'int'}"
        text += f"[{dist.low!r}, {dist.high!r}]"
        plain = dist.step is None if floats else dist.step == 1
        return text if plain else f"{text} step {dist.step!r}"
    return repr(dist)
