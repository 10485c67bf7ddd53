"""Hydra's and OmegaConf's composition errors as one sentence that keeps what to type instead.

Hydra reports an unknown option, a wrongly typed value or a misspelt key over several lines,
ending with a ``HYDRA_FULL_ERROR`` hint; a user needs the bad value and the valid ones.
"""

from __future__ import annotations

import dataclasses
import re

from hydra.errors import (
    ConfigCompositionException,
    HydraException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

from twrl_exp import config as schemas

_INTERNAL = ("schema", "tuned")


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in out:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def _field(text: str, name: str) -> str | None:
    match = re.search(rf"{name}\s*[:=]\s*(\S+)", text)
    return match.group(1) if match else None


def _schema_keys(type_name: str | None) -> list[str]:
    if not type_name:
        return []
    node = getattr(schemas, type_name, None)
    if node is None or not dataclasses.is_dataclass(node):
        return []
    return [f.name for f in dataclasses.fields(node) if not f.name.startswith("_")]


def _missing(exc: MissingConfigException) -> str:
    text = str(exc)
    match = re.search(r"Could not find '([^']+)'", text)
    path = match.group(1) if match else (exc.missing_cfg_file or "?")
    group, _, option = path.rpartition("/")
    options = [o for o in (exc.options or []) if not o.startswith(_INTERNAL)]
    if not group:
        return f"The config '{path}' does not exist."
    prefix = "+" if group in ("sweep", "experiment", "monitor/observers") else ""
    valid = f"choose one of {', '.join(options)}" if options else f"{group} has no options here"
    return f"{prefix}{group}={option} is not an option: {valid}."


def _validation(exc: ValidationError, override: str | None) -> str:
    text = str(exc)
    key = _field(text, "full_key") or (override or "?").split("=", 1)[0]
    what = override or key
    first = _first_line(text)
    choices = re.search(r"expected one of \[([^\]]*)\]", first)
    if choices:
        return f"{what} is invalid: {key} must be one of {choices.group(1)}."
    converted = re.search(r"could not be converted to (\w+)", first)
    if converted:
        kind = {"Float": "a number", "Integer": "an integer", "Boolean": "true or false"}.get(
            converted.group(1), converted.group(1)
        )
        return f"{what} is invalid: {key} must be {kind}."
    return f"{what} is invalid: {first.rstrip('.')}."


def _unknown_key(exc: ConfigAttributeError | ConfigKeyError, override: str | None) -> str:
    text = str(exc)
    key = _field(text, "full_key") or "?"
    valid = _schema_keys(_field(text, "object_type"))
    given = override.split("=", 1) if override else []
    value = given[1] if len(given) == 2 and given[0].lstrip("+~") == key else None
    old_spelling = schemas.renamed(key, value)
    if old_spelling is not None and schemas.RENAMED[key][0].rpartition(".")[2] in valid:
        return old_spelling
    group = key.rpartition(".")[0]
    where = f"a key of {group}" if group else "a top-level key"
    tail = f": valid keys are {', '.join(valid)}" if valid else ""
    add = f" (to add a new key, write +{override})" if override and not valid else ""
    return f"{key} is not {where}{tail}{add}."


def describe(exc: BaseException) -> str | None:
    """One sentence for a composition or override error, or None if ``exc`` is not one."""
    chain = _chain(exc)
    if not any(isinstance(e, HydraException | OmegaConfBaseException) for e in chain):
        return None
    override = None
    for e in chain:
        match = re.search(r"(?:override|Could not override) '?([^'\s]+=?[^'\s]*)'?", str(e))
        if match and isinstance(e, ConfigCompositionException):
            override = match.group(1)
            # "Could not override 'k'" names the key only; its hint "use +k=v" has the value.
            typed = re.search(r"use \+(\S+=\S*)", str(e))
            if typed and "=" not in override:
                override = typed.group(1)
            break
    for e in chain:
        if isinstance(e, MissingConfigException):
            return _missing(e)
        if isinstance(e, OverrideParseException):
            line = re.search(r"Error parsing override '([^']*)'", str(e))
            detail = str(e).splitlines()[1] if len(str(e).splitlines()) > 1 else ""
            detail = detail.split(" expecting ")[0]
            what = line.group(1) if line else "an override"
            return f"{what} is not valid override syntax ({detail}); see `python train.py --help`."
        if isinstance(e, ValidationError):
            return _validation(e, override)
        if isinstance(e, ConfigAttributeError | ConfigKeyError):
            return _unknown_key(e, override)
        appended = re.search(r"To append to your default list use (\+\S+)", str(e))
        if appended:  # monitor/observers=tensorboard: a group that is only ever added
            return f"{_first_line(str(e)).rstrip('.')}: write {appended.group(1)} to add it."
    return _first_line(str(exc)).rstrip(".") + "."


def say(message: str, style: str = "bold red", label: str = "error") -> None:
    """``error: <message>`` on stderr, on one line, brackets and all (no rich markup)."""
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    console.print(f"{label}:", style=style, end=" ")
    console.print(message, markup=False, highlight=False)


def is_composition_error(exc: BaseException) -> bool:
    return any(isinstance(e, HydraException | OmegaConfBaseException) for e in _chain(exc))
