"""Argument checks and optimizer construction shared by the updates."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import torch

from twrl_exp.choices import OptimizerName, parse
from twrl_exp.errors import ConfigError
from twrl_exp.protocols import NetworkModel

_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}


def check_range(
    name: str,
    value: float,
    low: float | None,
    high: float | None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Refuse ``value`` outside ``[low, high]`` (either end open or absent), or not finite, in
    one sentence."""
    if not math.isfinite(value):
        raise ConfigError(f"{name}={value} is invalid: it must be a finite number.")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        if high is None:
            valid = f"{'>' if low_open else '>='} {low:g}"
        elif low is None:
            valid = f"{'<' if high_open else '<='} {high:g}"
        else:
            valid = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{name}={value} is invalid: it must be {valid}.")


# Parameters from which Adam is torch's fused kernel (DQN's and SAC's 256-256 networks; not
# PPO's 64-64, whose steps are bound by per-call costs).
FUSED_ADAM_FROM = 32_768


def make_optimizer(
    optimizer: OptimizerName | str,
    params: list[torch.nn.Parameter],
    lr: float,
    weight_decay: float,
    kwargs: Mapping[str, object],
) -> torch.optim.Optimizer:
    """``torch.optim`` Adam / RMSprop / SGD, ``kwargs`` passed through (betas, momentum, ...).

    Adam over :data:`FUSED_ADAM_FROM` parameters or more is torch's fused kernel unless
    ``kwargs`` choose (``fused`` or ``foreach``): one pass over the parameters, not ~9."""
    check_range("update.weight_decay", weight_decay, 0.0, None)
    name = parse(OptimizerName, "update.optimizer", optimizer).value
    chosen = "fused" in kwargs or "foreach" in kwargs
    if name == "adam" and not chosen and sum(p.numel() for p in params) >= FUSED_ADAM_FROM:
        kwargs = {**kwargs, "fused": True}
    try:
        return _OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, **kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"update.optimizer_kwargs={kwargs} are not accepted by {name}: {exc}."
        ) from exc
    except ValueError as exc:
        raise ConfigError(
            f"update.optimizer_kwargs={kwargs} are invalid for {name}: {exc}."
        ) from exc


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, object]) -> None:
    """A checkpoint's optimiser state (moments, step counts) into ``optimizer``, which keeps its
    own settings (``lr``, betas, ...): those of the run's config, so that ``resume=<id>
    update.lr=...`` continues with the new value (torch's ``load_state_dict`` would restore the
    saved one). A schedule sets ``lr`` again at its next update, from the clock."""
    settings = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, own in zip(optimizer.param_groups, settings, strict=True):
        group.update(own)


def linear_lr(lr: float, final_fraction: float, progress: float) -> float:
    """``lr_schedule=linear``: from ``lr`` at ``progress`` 0 to ``lr * final_fraction`` at 1.

    >>> linear_lr(1.0, 0.5, 0.5)
    0.75
    """
    return lr * (1.0 - (1.0 - final_fraction) * progress)


def network(update: str, model: object, hint: str = "") -> NetworkModel:
    """``model`` as a network, or refused in one sentence naming the fix."""
    if not isinstance(model, NetworkModel):
        raise ConfigError(
            f"update={update} needs a differentiable model (model=mlp); "
            f"{type(model).__name__} has no gradients{hint}."
        )
    return model


def feature_dtype(model: object) -> np.dtype:
    """The dtype of ``model.features`` (storages keep them as they are): a CNN's uint8 frames
    or boolean grids; float32 for the rest."""
    return np.dtype(getattr(model, "feature_dtype", np.float32))
