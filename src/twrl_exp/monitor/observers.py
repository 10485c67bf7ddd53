"""Observers as configuration: more monitors, each one built from a ``_target_``.

``cfg.monitor.observers`` maps a name to a config node; ``+monitor/observers=<name>`` adds
``conf/monitor/observers/<name>.yaml`` (a project's own ``conf/`` too), whose one key is
``<name>``, and ``+monitor/observers=[tensorboard,mine]`` adds several. Each node's ``_target_``
is called with the node's other keys (plain values) and ``run=``, a :class:`RunContext`; what
it returns follows the run through the hooks of :class:`twrl_exp.runner.Monitor` (subclass
:class:`~twrl_exp.runner.MonitorBase`, whose hooks do nothing) and, if it has it, the hook of
:class:`VideoObserver`. Observers finish after the video and before MLflow ends the run.

A run's record names no code: the config logged with it keeps each observer's values but not its
``_target_``, which a rerun, a resume or a saved experiment (``+experiment=``) takes from this
checkout's option of the same name, as the groups' code is (:mod:`twrl_exp.logged`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from omegaconf import DictConfig, OmegaConf, open_dict

from twrl_exp.errors import ConfigError
from twrl_exp.runner import Monitor, Runner

HOOKS = ("start", "episodes", "update", "evaluation", "tick", "finish")
_CODE_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")


@dataclass(frozen=True)
class RunContext:
    """What an observer knows of its run besides the runner's events (given as ``run=``)."""

    folder: Path  # the run's own folder (Hydra's run dir; <dir>/seed<n> when trial.seeds > 1)
    name: str  # the run's name, as MLflow shows it
    env_id: str
    seed: int
    config: dict[str, Any]  # the run's resolved config, plain values
    params: dict[str, Any]  # flat ("update.lr": 0.01), as MLflow records them (no paths.*)
    resumed_from: str | None = None  # the MLflow run id a resume continues


@runtime_checkable
class VideoObserver(Protocol):
    """An observer that sees the videos ``monitor.video`` records (when that is on)."""

    def video(self, runner: Runner, path: Path, name: str) -> None:
        """A video of the greedy policy (``final.mp4``, ``eval_<env step>.mp4``) is at ``path``,
        an mp4 that exists only during this call; ``runner.history.env_steps`` is its step."""


def build_observers(nodes: Any, run: RunContext) -> list[Monitor]:
    """The observers of ``cfg.monitor.observers``, in order; a :class:`ConfigError` in one
    sentence for one that cannot be built (its ``_target_`` does not import, its options are
    not its arguments, it has no observer hooks)."""
    return [_build(str(name), nodes[name], run) for name in nodes]


def _build(name: str, node: Any, run: RunContext) -> Monitor:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    where = f"monitor.observers.{name}"
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{where} is {node!r}, not an observer (a mapping with a _target_).")
    if "_target_" not in node:  # from a record, which names no code: this checkout's option
        node = node.copy()
        with open_dict(node):
            node._target_ = _local_target(name, where)
    target = str(node._target_)
    try:
        factory = instantiate(node, _partial_=True, _convert_="all")
    except InstantiationException as exc:
        cause: BaseException = exc
        while cause.__cause__ is not None:  # Hydra's ImportError, then the import's own error
            cause = cause.__cause__
        raise ConfigError(
            f"{where}: its _target_ {target} cannot be imported ({_first_line(cause)}); check "
            "the name, and that its module is importable (run twrl-train from your project)."
        ) from exc
    try:
        observer = factory(run=run)
    except TypeError as exc:
        raise ConfigError(f"{where}: {target} refused its options ({exc}).") from exc
    missing = [hook for hook in HOOKS if not callable(getattr(observer, hook, None))]
    if missing:
        raise ConfigError(
            f"{where}: {target} made a {type(observer).__name__}, which has no {missing[0]}() "
            "hook; an observer subclasses twrl_exp.runner.MonitorBase."
        )
    return observer


def _local_target(name: str, where: str) -> str:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from twrl_exp.logged import compose_config

    refusal = (
        f"{where} has no _target_ (a logged run's or a saved experiment's config names no "
        f"code), and no option +monitor/observers={name} here names one."
    )
    try:
        composed = compose_config([f"+monitor/observers={name}"])
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(refusal) from exc
    node = composed.monitor.observers.get(name)
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(refusal)
    return str(node._target_)


def recorded_config(cfg: DictConfig) -> DictConfig:
    """``cfg`` as a run's record keeps it: its observers without their ``_target_`` (and the
    other instantiation keys), which a store may not name."""
    observers = cfg.monitor.get("observers") if "monitor" in cfg else None
    if not observers:
        return cfg
    kept = copy.deepcopy(cfg)
    for node in kept.monitor.observers.values():
        if isinstance(node, DictConfig):
            with open_dict(node):
                for key in _CODE_KEYS:
                    node.pop(key, None)
    return kept


def video_hook(observers: list[Monitor]) -> Any:
    """One callback ``(runner, path, name)`` handing a recorded video to every observer that
    has the :class:`VideoObserver` hook; None if none has."""
    hooks = [o.video for o in observers if isinstance(o, VideoObserver)]
    if not hooks:
        return None

    def recorded(runner: Runner, path: Path, name: str) -> None:
        for hook in hooks:
            hook(runner, path, name)

    return recorded


def plain(node: Any) -> dict[str, Any]:
    values = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    assert isinstance(values, dict)
    return {str(k): v for k, v in values.items()}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
