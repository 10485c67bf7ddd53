"""A multilayer perceptron over flat (or one-hot) observations, and the empty model."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from twrl_exp.choices import Activation, parse
from twrl_exp.devices import device_of, to_numpy, to_tensor
from twrl_exp.errors import ConfigError

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
}


_NUMPY_ACTIVATIONS: dict[str, Any] = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0, dtype=x.dtype),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
}


def flat_size(space: spaces.Space[Any], *, model: str) -> int:
    """Input width for a flat encoding of ``space`` (Box flattened, Discrete one-hot)."""
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    raise ConfigError(
        f"model={model} cannot read a {type(space).__name__} observation space "
        "(supported: Box and Discrete); flatten it with an env wrapper first."
    )


class MLP(nn.Module):
    """Fully connected network ``obs -> hidden... -> num_outputs`` (logits, means or values).

    Hidden layers use orthogonal init with gain sqrt(2) and the output layer gain 0.01, so an
    untrained policy starts close to uniform (Andrychowicz et al. 2021, "What matters in
    on-policy RL"); ``ortho_init=false`` keeps torch's default init (SB3's ``ortho_init=False``,
    which some of the zoo's presets use).
    """

    is_torch = True

    def __init__(
        self,
        *,
        observation_space: spaces.Space[Any],
        num_outputs: int,
        hidden_sizes: list[int] | tuple[int, ...],
        activation: Activation | str,
        critic_hidden_sizes: list[int] | tuple[int, ...] | None,
        dueling: bool,
        ortho_init: bool,
        output_gain: float = 0.01,
        latent_outputs: bool = False,
    ) -> None:
        super().__init__()
        activation = parse(Activation, "model.activation", activation).value
        if any(h < 1 for h in hidden_sizes):
            raise ConfigError(f"model.hidden_sizes={list(hidden_sizes)} must all be >= 1.")
        self.observation_space = observation_space
        self.in_features = flat_size(observation_space, model="mlp")
        self.num_outputs = num_outputs
        self.hidden_sizes = list(hidden_sizes)
        # Sizes of the critics an update builds from this model group (null: hidden_sizes).
        self.critic_hidden_sizes = list(critic_hidden_sizes) if critic_hidden_sizes else None
        if self.critic_hidden_sizes and any(h < 1 for h in self.critic_hidden_sizes):
            raise ConfigError(
                f"model.critic_hidden_sizes={self.critic_hidden_sizes} must all be >= 1."
            )
        self.dueling = dueling
        self.activation = activation
        self._one_hot = isinstance(observation_space, spaces.Discrete)
        self._views: list[tuple[np.ndarray, np.ndarray]] | None = None
        layers: list[nn.Module] = []
        width = self.in_features
        self.ortho_init = ortho_init
        for size in self.hidden_sizes:
            linear = nn.Linear(width, size)
            if ortho_init:
                nn.init.orthogonal_(linear.weight, gain=float(np.sqrt(2.0)))
                nn.init.zeros_(linear.bias)
            layers += [linear, _ACTIVATIONS[activation]()]
            width = size
        # A dueling head (Wang et al. 2016) makes V(s) and A(s, .): Q = V + A - mean(A).
        head = nn.Linear(width, max(num_outputs, 1) + (1 if dueling else 0))
        if ortho_init:  # else torch's default (Kaiming-uniform) init, as SB3's ortho_init=False
            nn.init.orthogonal_(head.weight, gain=output_gain)
            nn.init.zeros_(head.bias)
        self.net = nn.Sequential(*layers, head)
        # gSDE's policies read the last hidden layer too: outputs are then [head, hidden].
        if latent_outputs and dueling:
            raise ConfigError("model.dueling=true makes action values; gSDE's policies need none.")
        self.latent_outputs = latent_outputs
        self.latent_dim = width

    def features(self, obs: np.ndarray) -> np.ndarray:
        """``obs: [N, ...]`` -> ``[N, in_features]`` float32."""
        if self._one_hot:
            return np.eye(self.in_features, dtype=np.float32)[np.asarray(obs, dtype=np.int64)]
        return np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)

    def outputs(self, features: np.ndarray) -> np.ndarray:
        """Forward pass without gradients: ``[N, in_features]`` -> ``[N, num_outputs]``.

        Acting runs the same layers in numpy on views of the torch parameters (optimizers
        update them in place, so the views stay current): for the small batches of one vector
        step this is several times faster than torch's per-module call overhead.
        """
        activation = _NUMPY_ACTIVATIONS.get(self.activation)
        if activation is None or (self._views is None and device_of(self).type != "cpu"):
            with torch.inference_mode():  # a GPU's weights (or no numpy activation): torch's
                return to_numpy(self(to_tensor(features, device_of(self))))
        x = features
        layers = self._numpy_layers()
        for weight, bias in layers[:-1]:
            x = activation(x @ weight + bias)
        weight, bias = layers[-1]
        out = x @ weight + bias
        if self.latent_outputs:
            return np.concatenate([out, x], axis=1)
        return self._dueling_numpy(out) if self.dueling else out

    @staticmethod
    def _dueling_numpy(out: np.ndarray) -> np.ndarray:
        advantages = out[:, 1:]
        return out[:, :1] + advantages - advantages.mean(axis=1, keepdims=True)

    def _numpy_layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self._views is None:
            linears = [m for m in self.net if isinstance(m, nn.Linear)]
            self._views = [(to_numpy(m.weight).T, to_numpy(m.bias)) for m in linears]
        return self._views

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._views = None  # parameters may have been replaced: rebuild the numpy views
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.latent_outputs:
            hidden = self.net[:-1](x)
            return torch.cat([self.net[-1](hidden), hidden], dim=-1)
        out = self.net(x)
        if self.dueling:
            advantages = out[:, 1:]
            return out[:, :1] + advantages - advantages.mean(dim=1, keepdim=True)
        return out


class NoModel:
    """The empty model of a random agent: no parameters, no outputs."""

    is_torch = False
    produces_outputs = False

    def __init__(self, *, observation_space: spaces.Space[Any], num_outputs: int) -> None:
        self.observation_space = observation_space
        self.num_outputs = num_outputs

    def features(self, obs: np.ndarray) -> np.ndarray:
        return obs

    def outputs(self, features: np.ndarray) -> np.ndarray:
        """``[N, 0]``: nothing to compute, only the batch size."""
        return np.empty((len(features), 0), dtype=np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state
