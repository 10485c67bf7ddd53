"""Adam, RMSprop and SGD over parameters stacked on a member axis, one learning rate per member.

Each parameter is a ``[K, ...]`` tensor holding K members' copies. The step of member ``m`` is
exactly the step ``torch.optim``'s single-tensor implementation takes for that member's own
parameters (same formulas, same order of operations, float32 state), with the member's own
learning rate and its own step count (a slot refilled by a new member starts again at step 1).
Only members marked active move: the others keep their parameters and state.

Written here rather than wrapping ``torch.optim`` because ``torch.optim`` takes one scalar
learning rate per parameter group (K groups would mean K small kernels per tensor, the cost a
population exists to avoid), and creating one imports ``torch._dynamo`` (about a second).

:func:`clip_grad_norms_` clips each member's gradient to its own norm, as
``torch.nn.utils.clip_grad_norm_`` does for one run. :meth:`StackedOptimizer.export_member` and
:meth:`StackedOptimizer.import_member` move one member's state to and from a ``torch.optim``
optimiser over that member's own parameters (its single-run checkpoint, or resuming it alone).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

import torch
from torch.optim.adam import adam as functional_adam

from twrl_exp.choices import OptimizerName, parse
from twrl_exp.errors import ConfigError

_ACCEPTED: dict[str, frozenset[str]] = {
    "adam": frozenset({"betas", "eps", "fused"}),
    "rmsprop": frozenset({"alpha", "eps", "momentum", "centered"}),
    "sgd": frozenset({"momentum", "dampening", "nesterov"}),
}
_STATE: dict[str, tuple[str, ...]] = {  # per-parameter state, as torch.optim names it
    "adam": ("exp_avg", "exp_avg_sq"),
    "rmsprop": ("square_avg", "momentum_buffer", "grad_avg"),
    "sgd": ("momentum_buffer",),
}


class StackedOptimizer:
    """``optimizer`` (adam | rmsprop | sgd) over ``params`` (each ``[K, ...]``), ``lr: [K]``."""

    def __init__(
        self,
        optimizer: OptimizerName | str,
        params: Sequence[torch.Tensor],
        lr: torch.Tensor | Sequence[float],
        weight_decay: float,
        kwargs: Mapping[str, object],
    ) -> None:
        self.name = parse(OptimizerName, "update.optimizer", optimizer).value
        unknown = sorted(set(kwargs) - _ACCEPTED[self.name])
        if unknown:
            raise ConfigError(
                f"update.optimizer_kwargs key(s) {unknown} are not supported for {self.name} in "
                f"a population (supported: {sorted(_ACCEPTED[self.name])})."
            )
        # Unset options take torch.optim's own defaults, read from its signature (their home).
        options = {**_torch_defaults(self.name), **kwargs}
        self.beta1 = self.beta2 = self.alpha = self.momentum = self.dampening = 0.0
        self.eps, self.centered, self.nesterov = 0.0, False, False
        if self.name == "adam":
            betas = options["betas"]
            if not (isinstance(betas, Sequence) and len(betas) == 2):
                raise ConfigError(f"update.optimizer_kwargs.betas={betas} must be two numbers.")
            self.beta1, self.beta2 = (_number("betas", beta) for beta in betas)
        for key in sorted(_ACCEPTED[self.name] - {"betas", "centered", "nesterov", "fused"}):
            setattr(self, key, _number(key, options[key]))
        self.centered = bool(options.get("centered"))
        self.nesterov = bool(options.get("nesterov"))
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ConfigError(
                "update.optimizer_kwargs.nesterov=true needs momentum > 0 and dampening 0."
            )
        self.params = list(params)
        if not self.params:
            raise ConfigError("a stacked optimiser needs parameters.")
        self.size = self.params[0].shape[0]
        self.lr = torch.as_tensor(lr, dtype=torch.float64).clone()
        if self.lr.shape != (self.size,):
            raise ConfigError(f"{self.size} members need {self.size} learning rates, not {lr}.")
        self.weight_decay = weight_decay
        self.steps = torch.zeros(self.size, dtype=torch.int64)
        self.state: list[dict[str, torch.Tensor]] = [
            {name: torch.zeros_like(p) for name in _STATE[self.name]} for p in self.params
        ]
        # Members whose own optimiser is torch's fused Adam (large networks: DQN's and SAC's
        # 256-256, see checks.make_optimizer) step one after another, each with that kernel
        # over its rows: its single run's numbers, in one pass over its parameters rather than
        # the ~9 passes over all K members' stacked tensors of the single-tensor form.
        self._fused = self.name == "adam" and bool(options.get("fused"))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        """One step for every active member (``active: [K]`` bool, all by default).

        In place, as ``torch.optim`` steps (a stacked tensor is K members' worth of memory:
        every temporary is a pass over all of them); inactive members' rows are put back."""
        if self._fused:
            self._adam_each_member(active)
            return
        frozen = None if active is None else torch.nonzero(~active).flatten()
        if frozen is not None and not len(frozen):
            frozen = None
        self.steps += 1 if active is None else active.to(torch.int64)
        for p, state in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            kept = None
            if frozen is not None:
                kept = (p[frozen].clone(), {k: v[frozen].clone() for k, v in state.items()})
            grad = p.grad
            if self.weight_decay:
                grad = grad.add(p, alpha=self.weight_decay)
            getattr(self, f"_{self.name}")(p, grad, state)
            if kept is not None:
                p[frozen] = kept[0]
                for key, value in kept[1].items():
                    state[key][frozen] = value

    def _adam_each_member(self, active: torch.Tensor | None) -> None:
        """Adam for each active member alone: ``torch.optim``'s fused CPU kernel over its rows
        (views into the stacked tensors), with its own learning rate and step count; members
        of one learning rate (a population of seeds) in one call."""
        flags = [True] * self.size if active is None else active.tolist()
        by_lr: dict[float, list[int]] = {}
        for m, lr in enumerate(self.lr.tolist()):
            if flags[m]:
                by_lr.setdefault(lr, []).append(m)
        rows = [(p, s) for p, s in zip(self.params, self.state, strict=True) if p.grad is not None]
        for lr, members in by_lr.items():
            own = [(m, p, s) for m in members for p, s in rows]
            functional_adam(
                [p[m] for m, p, _ in own],
                [p.grad[m] for m, p, _ in own],  # type: ignore[index]
                [s["exp_avg"][m] for m, _, s in own],
                [s["exp_avg_sq"][m] for m, _, s in own],
                [],
                [torch.tensor(float(self.steps[m])) for m, _, _ in own],  # the kernel adds 1
                fused=True,
                amsgrad=False,
                beta1=self.beta1,
                beta2=self.beta2,
                lr=lr,
                weight_decay=self.weight_decay,
                eps=self.eps,
                maximize=False,
            )
        self.steps += 1 if active is None else active.to(torch.int64)

    def _per_member(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``[K]`` float64 values -> float32 ``[K, 1, ...]`` broadcastable against ``like``."""
        return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def _adam(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        beta1, beta2 = self.beta1, self.beta2
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        steps = self.steps.to(torch.float64)
        bias_correction1 = 1 - beta1**steps
        bias_correction2_sqrt = (1 - beta2**steps).sqrt()
        step_size = self._per_member(-(self.lr / bias_correction1), p)
        denom = exp_avg_sq.sqrt().div_(self._per_member(bias_correction2_sqrt, p)).add_(self.eps)
        # p + (value * exp_avg) / denom: torch's addcdiv_, with a value per member
        p.add_(torch.mul(exp_avg, step_size).div_(denom))

    def _rmsprop(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        alpha = self.alpha
        square_avg = state["square_avg"].mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        if self.centered:
            grad_avg = state["grad_avg"].lerp_(grad, 1 - alpha)
            avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_().add_(self.eps)
        else:
            avg = square_avg.sqrt().add_(self.eps)
        neg_lr = self._per_member(-self.lr, p)
        if self.momentum > 0:
            buf = state["momentum_buffer"].mul_(self.momentum).addcdiv_(grad, avg)
            p.add_(buf * neg_lr)
        else:
            p.add_(torch.mul(grad, neg_lr).div_(avg))

    def _sgd(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        neg_lr = self._per_member(-self.lr, p)
        if self.momentum == 0:
            p.add_(grad * neg_lr)
            return
        first = (self.steps == 1).view(-1, *([1] * (p.dim() - 1)))
        buf = state["momentum_buffer"]
        buf.mul_(self.momentum).add_(grad, alpha=1 - self.dampening)
        buf.copy_(torch.where(first, grad, buf))
        direction = grad.add(buf, alpha=self.momentum) if self.nesterov else buf
        p.add_(direction * neg_lr)

    def export_member(self, m: int, optimizer: torch.optim.Optimizer) -> None:
        """Write member ``m``'s state into ``optimizer``, a ``torch.optim`` optimiser of the same
        kind over the member's own parameters (in the stacked order, shapes ``p.shape[1:]``)."""
        params = _params_of(optimizer, len(self.params))
        steps = int(self.steps[m])
        for own, state in zip(params, self.state, strict=True):
            entry: dict[str, torch.Tensor] = {}
            if steps:
                entry = {name: state[name][m].reshape(own.shape).clone() for name in self._kept()}
                if self.name != "sgd":  # torch's SGD keeps no step count
                    entry["step"] = torch.tensor(float(steps), dtype=torch.float32)
            if entry:
                optimizer.state[own] = entry
            else:
                optimizer.state.pop(own, None)
        for group in optimizer.param_groups:
            group["lr"] = float(self.lr[m])

    def import_member(self, m: int, optimizer: torch.optim.Optimizer) -> None:
        """Set member ``m``'s state from ``optimizer`` (see :meth:`export_member`)."""
        params = _params_of(optimizer, len(self.params))
        steps = 0
        for own, state in zip(params, self.state, strict=True):
            entry = optimizer.state.get(own, {})
            for name in _STATE[self.name]:
                value = entry.get(name)
                state[name][m] = 0.0 if value is None else value.reshape(state[name][m].shape)
            if "step" in entry:
                steps = int(entry["step"])
            elif self.name == "sgd" and "momentum_buffer" in entry:
                steps = max(steps, 1)
        self.steps[m] = steps
        self.lr[m] = float(optimizer.param_groups[0]["lr"])

    def _kept(self) -> tuple[str, ...]:
        """The state ``torch.optim`` keeps for this optimiser and these options."""
        if self.name == "adam":
            return ("exp_avg", "exp_avg_sq")
        if self.name == "rmsprop":
            kept = ["square_avg"]
            if self.momentum > 0:
                kept.append("momentum_buffer")
            if self.centered:
                kept.append("grad_avg")
            return tuple(kept)
        return ("momentum_buffer",) if self.momentum else ()


def _torch_defaults(name: str) -> dict[str, object]:
    """The keyword defaults of ``torch.optim``'s optimiser ``name``."""
    signature = inspect.signature(
        {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD}[name]
    )
    return {
        key: parameter.default
        for key, parameter in signature.parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def _number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"update.optimizer_kwargs.{key}={value} is invalid: it must be a number.")
    return float(value)


def _params_of(optimizer: torch.optim.Optimizer, expected: int) -> list[torch.Tensor]:
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if len(params) != expected:
        raise ValueError(f"the optimiser holds {len(params)} parameters, the stack {expected}.")
    return params


@torch.no_grad()
def clip_grad_norms_(
    params: Sequence[torch.Tensor], max_norm: float | torch.Tensor
) -> torch.Tensor:
    """Clip each member's gradient (over all ``params``, each ``[K, ...]``) to its ``max_norm``
    (one for all, or ``[K]``; ``inf``: measure only), as ``torch.nn.utils.clip_grad_norm_``
    clips one run's; returns the ``[K]`` norms before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    per_param = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])
    norms = torch.linalg.vector_norm(per_param, dim=0)  # [P, K] -> [K]
    coef = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
    return norms


def options_of(optimizer: torch.optim.Optimizer) -> dict[str, object]:
    """The options a stacked optimiser needs, read back from a torch.optim optimiser."""
    group = optimizer.param_groups[0]
    if group.get("weight_decay"):
        raise ConfigError("a population does not support update.weight_decay yet.")
    name = type(optimizer).__name__.lower()
    keys = _ACCEPTED.get(name)
    if keys is None:
        raise ConfigError(f"a population does not support the {name} optimiser.")
    if group.get("amsgrad"):
        raise ConfigError("a population does not support amsgrad.")
    options = {key: tuple(group[key]) if key == "betas" else group[key] for key in sorted(keys)}
    if "fused" in options:
        options["fused"] = bool(options["fused"])  # None: torch's default, not fused on CPU
    return options


def shared_structure(members: Sequence[object], names: Sequence[str]) -> dict[str, object]:
    """Refuse, in one sentence, members that differ in a structural setting (``names``, read
    as attributes) or in their optimiser (its kind and options: ``optimizer`` attributes);
    return the options of the optimiser they share."""
    first = members[0]
    optimizer = first.optimizer  # type: ignore[attr-defined]
    options = options_of(optimizer)
    for m, member in enumerate(members):
        for name in names:
            if getattr(member, name) != getattr(first, name):
                raise ConfigError(
                    f"population member {m} has update.{name}={getattr(member, name)}, "
                    f"member 0 {getattr(first, name)}: members share the structural "
                    "settings and differ only in seed and vectorisable values."
                )
        other = member.optimizer  # type: ignore[attr-defined]
        if type(other) is not type(optimizer) or options_of(other) != options:
            raise ConfigError(
                f"population member {m} has another optimiser than member 0 "
                "(update.optimizer and update.optimizer_kwargs are shared)."
            )
    return options
