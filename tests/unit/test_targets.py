"""Target networks (update/targets.py): Polyak averaging, and tau=1 copies."""

from __future__ import annotations

import torch

from twrl_exp.update.targets import soft_update


def test_soft_update_is_polyak_averaging_and_tau_one_copies() -> None:
    source, target = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = [p.clone() for p in target.parameters()]
    soft_update(target, source, 0.25)
    for t, b, s in zip(target.parameters(), before, source.parameters(), strict=True):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * s)
    soft_update(target, source, 1.0)
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        torch.testing.assert_close(t, s)
