"""K multilayer perceptrons of one shape as one module: parameters stacked on a member axis.

A population trains K members that share a network's structure but not its parameters. Their
layers are kept as ``[K, out, in]`` weights and ``[K, 1, out]`` biases, and a forward pass is one
batched matmul per layer (``torch.baddbmm``) for all members: on classic control's small
networks that costs little more than one member's pass (the per-call overhead dominates), so the
per-member cost falls with K.

Member ``m`` computes exactly what its own :class:`~twrl_exp.model.mlp.MLP` computes (up to
float rounding of the batched matmul): the stack is built *from* the members' MLPs, each one
initialised as a single run with its seed would initialise it, and written back to them
(:meth:`StackedMLP.write_back`) for what reads one member (its checkpoint, its MLflow model).

Losses: a member's gradient is that of its own loss only if the stacked loss is the **sum over
members** of each member's loss (a mean over the flattened ``[K * B]`` batch would scale every
gradient by ``1 / K``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from twrl_exp.errors import ConfigError
from twrl_exp.model.mlp import MLP


class StackedMLP(nn.Module):
    """``K`` :class:`MLP`\\ s of one shape: ``[K, B, in_features] -> [K, B, outputs]``."""

    def __init__(self, members: Sequence[MLP]) -> None:
        super().__init__()
        if not members:
            raise ConfigError("a population needs at least one member.")
        first = members[0]
        shape = _shape(first)
        for m, member in enumerate(members[1:], start=1):
            if _shape(member) != shape:
                raise ConfigError(
                    f"population member {m} has the network {_shape(member)}, member 0 "
                    f"{shape}: members share structure (model.hidden_sizes, model.activation, "
                    "model.dueling) and differ only in seed and vectorisable values."
                )
        self.size = len(members)
        self.in_features, self.num_outputs = first.in_features, first.num_outputs
        self.dueling = first.dueling
        self.activation = type(first.net[1])() if len(first.net) > 1 else None
        linears = [[layer for layer in m.net if isinstance(layer, nn.Linear)] for m in members]
        stacked: list[nn.Parameter] = []
        for i in range(len(linears[0])):  # in the members' order: weight, bias, weight, ...
            stacked.append(nn.Parameter(torch.stack([ls[i].weight.detach() for ls in linears])))
            biases = torch.stack([ls[i].bias.detach() for ls in linears]).unsqueeze(1)
            stacked.append(nn.Parameter(biases))
        self.layers = nn.ParameterList(stacked)

    @property
    def weights(self) -> list[nn.Parameter]:
        """``[K, out, in]`` per layer."""
        return list(self.layers)[0::2]

    @property
    def biases(self) -> list[nn.Parameter]:
        """``[K, 1, out]`` per layer."""
        return list(self.layers)[1::2]

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """``x: [K, B, in_features]`` -> ``[K, B, outputs]`` (Q-values combined when dueling);
        with ``members`` (``[k]`` indices), only those members' networks: ``x: [k, B, ...]``
        (their gradients flow back into their rows; the other rows get zeros)."""
        last = len(self.weights) - 1
        for i, (stacked_weight, stacked_bias) in enumerate(
            zip(self.weights, self.biases, strict=True)
        ):
            weight: torch.Tensor = stacked_weight
            bias: torch.Tensor = stacked_bias
            if members is not None:
                weight, bias = stacked_weight[members], stacked_bias[members]
            x = torch.baddbmm(bias, x, weight.transpose(1, 2))
            if i < last and self.activation is not None:
                x = self.activation(x)
        if self.dueling:
            advantages = x[..., 1:]
            return x[..., :1] + advantages - advantages.mean(dim=-1, keepdim=True)
        return x

    def write_back(self, members: Sequence[MLP]) -> None:
        """Copy each member's slice into its own :class:`MLP` (in place: views stay valid)."""
        for m, member in enumerate(members):
            self.write_member(m, member)

    def write_member(self, m: int, member: MLP) -> None:
        """Copy member ``m``'s slice into its own :class:`MLP`."""
        linears = [layer for layer in member.net if isinstance(layer, nn.Linear)]
        with torch.no_grad():
            for linear, weight, bias in zip(linears, self.weights, self.biases, strict=True):
                linear.weight.copy_(weight[m])
                linear.bias.copy_(bias[m, 0])

    def load_member(self, m: int, member: MLP) -> None:
        """Set member ``m``'s slice from ``member`` (a refilled slot, a resumed member)."""
        linears = [layer for layer in member.net if isinstance(layer, nn.Linear)]
        with torch.no_grad():
            for linear, weight, bias in zip(linears, self.weights, self.biases, strict=True):
                weight[m].copy_(linear.weight)
                bias[m, 0].copy_(linear.bias)


def _shape(member: MLP) -> tuple[object, ...]:
    widths = tuple(
        tuple(layer.weight.shape) for layer in member.net if isinstance(layer, nn.Linear)
    )
    return widths, member.activation, member.dueling
