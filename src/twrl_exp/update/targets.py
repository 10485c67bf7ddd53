"""Target networks: a frozen copy, refreshed by a hard copy or Polyak averaging."""

from __future__ import annotations

import copy
from typing import TypeVar

import torch

from twrl_exp.protocols import Differentiable

Net = TypeVar("Net", bound=Differentiable)


def frozen_copy(net: Net) -> Net:
    """A copy of ``net`` that takes no gradients."""
    target = copy.deepcopy(net)
    for parameter in target.parameters():
        parameter.requires_grad_(False)
    return target


@torch.no_grad()
def soft_update(target: Differentiable, source: Differentiable, tau: float) -> None:
    """``theta' <- tau * theta + (1 - tau) * theta'`` in place (``tau = 1``: a hard copy), so
    views of the target's parameters (the numpy acting path) stay current."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.lerp_(s, tau)
