"""Stacked networks and optimisers: member m of a stack computes what its own MLP and its own
``torch.optim`` optimiser compute (the first brick of populations)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from gymnasium import spaces

from twrl_exp.errors import ConfigError
from twrl_exp.model.mlp import MLP
from twrl_exp.model.stacked import StackedMLP
from twrl_exp.update.stacked_optim import StackedOptimizer, clip_grad_norms_

OBS = spaces.Box(-1.0, 1.0, (4,), np.float32)
OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}


def members(k: int, *, activation: str = "tanh", dueling: bool = False, outputs: int = 2):
    nets = []
    for seed in range(k):
        torch.manual_seed(seed)
        nets.append(
            MLP(
                observation_space=OBS,
                num_outputs=outputs,
                hidden_sizes=[16, 16],
                activation=activation,
                critic_hidden_sizes=None,
                dueling=dueling,
                ortho_init=True,
                output_gain=1.0,
            )
        )
    return nets


@pytest.mark.parametrize(("activation", "dueling"), [("tanh", False), ("relu", True)])
def test_a_stack_computes_what_each_member_computes(activation: str, dueling: bool) -> None:
    nets = members(3, activation=activation, dueling=dueling)
    stack = StackedMLP(nets)
    x = torch.randn(3, 5, 4)
    out = stack(x)
    for m, net in enumerate(nets):
        torch.testing.assert_close(out[m], net(x[m]), rtol=1e-6, atol=1e-6)


def test_members_of_different_shapes_are_refused_in_one_sentence() -> None:
    small = members(1)[0]
    wide = MLP(
        observation_space=OBS,
        num_outputs=2,
        hidden_sizes=[32],
        activation="tanh",
        critic_hidden_sizes=None,
        dueling=False,
        ortho_init=True,
    )
    with pytest.raises(ConfigError, match="member 1 has the network"):
        StackedMLP([small, wide])


def loss_of(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out - y) ** 2).mean()


CASES = [
    ("adam", {}, 0.0, None),
    ("adam", {"eps": 1e-5, "betas": (0.8, 0.99)}, 1e-3, 0.5),
    ("rmsprop", {"alpha": 0.99, "eps": 1e-5}, 0.0, 0.5),
    ("rmsprop", {"momentum": 0.5, "centered": True}, 0.0, None),
    ("sgd", {}, 0.0, None),
    ("sgd", {"momentum": 0.9, "nesterov": True}, 1e-4, 1.0),
    ("sgd", {"momentum": 0.5, "dampening": 0.1}, 0.0, None),
]


@pytest.mark.parametrize(("name", "kwargs", "weight_decay", "max_norm"), CASES)
def test_each_member_trains_as_it_would_alone(name, kwargs, weight_decay, max_norm) -> None:
    """30 steps on each member's own batches, each with its own learning rate: every member's
    parameters equal those of its own MLP trained by torch.optim (within 1e-5)."""
    k, lrs = 4, [1e-3, 3e-3, 1e-2, 3e-4]
    nets = members(k)
    stack = StackedMLP(copy.deepcopy(nets))
    stacked_opt = StackedOptimizer(name, list(stack.parameters()), lrs, weight_decay, kwargs)
    singles = [
        OPTIMIZERS[name](net.parameters(), lr=lr, weight_decay=weight_decay, **kwargs)
        for net, lr in zip(nets, lrs, strict=True)
    ]
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        x, y = torch.randn(k, 8, 4, generator=gen), torch.randn(k, 8, 2, generator=gen)
        out = stack(x)
        total = sum(loss_of(out[m], y[m]) for m in range(k))
        stacked_opt.zero_grad()
        total.backward()  # type: ignore[union-attr]
        if max_norm is not None:
            clip_grad_norms_(stacked_opt.params, max_norm)
        stacked_opt.step()
        for m, (net, opt) in enumerate(zip(nets, singles, strict=True)):
            opt.zero_grad()
            loss_of(net(x[m]), y[m]).backward()
            if max_norm is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm)
            opt.step()
    for m, net in enumerate(nets):
        written = copy.deepcopy(net)
        stack.write_back([written if i == m else copy.deepcopy(n) for i, n in enumerate(nets)])
        for alone, stacked in zip(net.parameters(), written.parameters(), strict=True):
            torch.testing.assert_close(stacked, alone, rtol=0, atol=1e-5)
        assert not torch.equal(next(net.parameters()), next(members(k)[m].parameters()))


def test_inactive_members_do_not_move_and_resume_where_they_stopped() -> None:
    """A member left out of steps 5-9 (pruned, paused) keeps its parameters and Adam state, and
    its later steps are those of a run that took only the steps it was active for."""
    nets = members(2)
    stack = StackedMLP(copy.deepcopy(nets))
    opt = StackedOptimizer("adam", list(stack.parameters()), [1e-2, 1e-2], 0.0, {})
    alone = torch.optim.Adam(nets[1].parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for step in range(15):
        x, y = torch.randn(2, 8, 4, generator=gen), torch.randn(2, 8, 2, generator=gen)
        active = torch.tensor([True, not 5 <= step < 10])
        out = stack(x)
        opt.zero_grad()
        (loss_of(out[0], y[0]) + loss_of(out[1], y[1])).backward()
        before = [p[1].clone() for p in opt.params]
        opt.step(active)
        if not active[1]:
            assert all(torch.equal(b, p[1]) for b, p in zip(before, opt.params, strict=True))
            continue
        alone.zero_grad()
        loss_of(nets[1](x[1]), y[1]).backward()
        alone.step()
    assert opt.steps.tolist() == [15, 10]
    written = members(2)
    stack.write_back(written)
    for a, b in zip(nets[1].parameters(), written[1].parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "kwargs"), [("adam", {}), ("rmsprop", {"momentum": 0.9}), ("sgd", {"momentum": 0.9})]
)
def test_a_member_moves_to_and_from_a_single_run_optimiser(name, kwargs) -> None:
    """After 10 stacked steps, member 1 goes on alone (its state exported into torch.optim over
    its own MLP) and, from the same export, inside another stack (imported): after 10 more
    steps both hold the same parameters."""
    gen = torch.Generator().manual_seed(2)
    batches = [
        (torch.randn(2, 8, 4, generator=gen), torch.randn(2, 8, 2, generator=gen))
        for _ in range(20)
    ]

    def stacked_steps(stack: StackedMLP, opt: StackedOptimizer, todo) -> None:
        for x, y in todo:
            out = stack(x)
            opt.zero_grad()
            (loss_of(out[0], y[0]) + loss_of(out[1], y[1])).backward()
            opt.step()

    stack = StackedMLP(members(2))
    opt = StackedOptimizer(name, list(stack.parameters()), [1e-3, 5e-3], 0.0, kwargs)
    stacked_steps(stack, opt, batches[:10])
    at_ten = members(2)
    stack.write_back(at_ten)

    alone = copy.deepcopy(at_ten[1])
    single = OPTIMIZERS[name](alone.parameters(), lr=0.123, **kwargs)
    opt.export_member(1, single)
    assert single.param_groups[0]["lr"] == pytest.approx(5e-3)
    for x, y in batches[10:]:
        single.zero_grad()
        loss_of(alone(x[1]), y[1]).backward()
        single.step()

    carrier = OPTIMIZERS[name](at_ten[1].parameters(), lr=0.5, **kwargs)
    opt.export_member(1, carrier)
    other = StackedMLP(members(2))
    other.load_member(1, at_ten[1])
    other_opt = StackedOptimizer(name, list(other.parameters()), [1.0, 1.0], 0.0, kwargs)
    other_opt.import_member(1, carrier)
    assert int(other_opt.steps[1]) == (1 if name == "sgd" else 10)  # torch's SGD counts no steps
    assert float(other_opt.lr[1]) == pytest.approx(5e-3)
    stacked_steps(other, other_opt, batches[10:])
    written = members(2)
    other.write_back(written)
    for a, b in zip(alone.parameters(), written[1].parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


def test_unsupported_options_are_refused_in_one_sentence() -> None:
    params = [torch.zeros(2, 3, requires_grad=True)]
    with pytest.raises(ConfigError, match=r"\['amsgrad'\] are not supported for adam"):
        StackedOptimizer("adam", params, [1e-3, 1e-3], 0.0, {"amsgrad": True})
    with pytest.raises(ConfigError, match="2 members need 2 learning rates"):
        StackedOptimizer("adam", params, [1e-3], 0.0, {})
    with pytest.raises(ConfigError, match=r"update\.optimizer"):
        StackedOptimizer("lion", params, [1e-3, 1e-3], 0.0, {})


def test_each_member_is_clipped_to_its_own_norm() -> None:
    p = torch.zeros(2, 3, requires_grad=True)
    p.grad = torch.tensor([[3.0, 4.0, 0.0], [0.3, 0.4, 0.0]])
    norms = clip_grad_norms_([p], 1.0)
    torch.testing.assert_close(norms, torch.tensor([5.0, 0.5]))
    torch.testing.assert_close(p.grad[0].norm(), torch.tensor(1.0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(p.grad[1], torch.tensor([0.3, 0.4, 0.0]))
