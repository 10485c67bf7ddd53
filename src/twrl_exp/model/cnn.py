"""Convolutional networks over image observations (``model=cnn``).

The model reads observations of a 3-D Box, channels first (``[C, H, W]``: Atari's stacked
frames) or last (``[H, W, C]``: MinAtar's), and keeps the rest of the system's contract: its
:meth:`features` are the observation flattened, in its own dtype (``feature_dtype``: uint8
frames and boolean grids are stored as they are, a quarter or less of float32's memory in a
replay buffer), its forward pass restores the image, makes it float (``[0, 255]`` integers
scaled to ``[0, 1]``) and applies a torso and a fully connected head. Torsos (``model.arch``):

- ``nature``: Mnih et al. 2015 (32 8x8/4, 64 4x4/2, 64 3x3/1), for 84x84 frames;
- ``impala``: Espeholt et al. 2018's residual stacks (16, 32, 32 channels, each a 3x3 conv, a
  3x3/2 max-pool and two residual blocks), as CleanRL's and Procgen's;
- ``minatar``: Young & Tian 2019 (one 16-channel 3x3/1 conv), for MinAtar's 10x10 grids;
- ``auto`` (the default): ``nature`` for images of at least 36x36 pixels (the smallest its
  strides reduce to one cell), ``minatar`` for smaller ones.

Then ``hidden_sizes`` fully connected layers (ReLU by default) and the output layer (gain 0.01,
or the rule's), orthogonally initialised as the MLP is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from twrl_exp.choices import Activation, parse
from twrl_exp.devices import device_of, to_numpy, to_tensor
from twrl_exp.errors import ConfigError, describe_space
from twrl_exp.model.mlp import _ACTIVATIONS

ARCHS = ("auto", "nature", "impala", "minatar")
NATURE_MIN_SIDE = 36  # (36 - 8) / 4 + 1 = 8, (8 - 4) / 2 + 1 = 3, 3 - 3 + 1 = 1


def _orthogonal(layer: nn.Module, gain: float) -> nn.Module:
    if isinstance(layer, (nn.Conv2d, nn.Linear)):
        nn.init.orthogonal_(layer.weight, gain=gain)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return layer


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv0(torch.relu(x))
        return x + self.conv1(torch.relu(out))


def _impala_stack(in_channels: int, channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1),
        nn.MaxPool2d(3, stride=2, padding=1),
        _Residual(channels),
        _Residual(channels),
    )


def _torso(arch: str, channels: int) -> nn.Sequential:
    if arch == "nature":
        return nn.Sequential(
            nn.Conv2d(channels, 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
    if arch == "impala":
        return nn.Sequential(
            _impala_stack(channels, 16),
            _impala_stack(16, 32),
            _impala_stack(32, 32),
            nn.ReLU(),
            nn.Flatten(),
        )
    return nn.Sequential(nn.Conv2d(channels, 16, 3, stride=1), nn.ReLU(), nn.Flatten())


class CNN(nn.Module):
    """``image -> torso -> hidden... -> num_outputs``; see the module's docstring."""

    is_torch = True

    def __init__(
        self,
        *,
        observation_space: spaces.Space[Any],
        num_outputs: int,
        arch: str,
        hidden_sizes: list[int] | tuple[int, ...],
        activation: Activation | str,
        critic_hidden_sizes: list[int] | tuple[int, ...] | None,
        channels_first: bool | None,
        dueling: bool,
        output_gain: float = 0.01,
    ) -> None:
        super().__init__()
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 3:
            raise ConfigError(
                "model=cnn reads images (a 3-D Box, [C, H, W] or [H, W, C]), but the env's "
                f"observations are {describe_space(observation_space)}; use model=mlp."
            )
        if arch not in ARCHS:
            raise ConfigError(
                f"model.arch={arch} is invalid: it must be one of {', '.join(ARCHS)}."
            )
        if any(h < 1 for h in hidden_sizes):
            raise ConfigError(f"model.hidden_sizes={list(hidden_sizes)} must all be >= 1.")
        activation = parse(Activation, "model.activation", activation).value
        shape = tuple(int(d) for d in observation_space.shape)
        # Channels are the short end: MinAtar's [10, 10, C], Atari's stacked [4, 84, 84].
        first = shape[0] <= shape[-1] if channels_first is None else channels_first
        self.channels_first = first
        self.image_shape = shape
        channels = shape[0] if first else shape[-1]
        side = min(shape[1:] if first else shape[:2])
        if arch == "auto":
            arch = "nature" if side >= NATURE_MIN_SIDE else "minatar"
        if arch == "nature" and side < NATURE_MIN_SIDE:
            raise ConfigError(
                f"model.arch=nature needs images of at least {NATURE_MIN_SIDE}x{NATURE_MIN_SIDE} "
                f"pixels, but the env's are {shape}; use model.arch=minatar or impala."
            )
        self.observation_space = observation_space
        self.in_features = int(np.prod(shape))
        self.num_outputs = num_outputs
        self.arch, self.activation = arch, activation
        self.hidden_sizes = list(hidden_sizes)
        self.critic_hidden_sizes = list(critic_hidden_sizes) if critic_hidden_sizes else None
        self.dueling = dueling
        dtype = np.dtype(observation_space.dtype)
        raw = dtype in (np.dtype(np.uint8), np.dtype(np.bool_))
        self.feature_dtype = dtype if raw else np.dtype(np.float32)
        self.scale = 1.0 / 255.0 if np.issubdtype(dtype, np.integer) and dtype != np.bool_ else 1.0
        self.torso = _torso(arch, channels)
        for layer in self.torso.modules():
            _orthogonal(layer, float(np.sqrt(2.0)))
        with torch.no_grad():  # (made on the device the torso is being built on)
            width = int(self.torso(torch.zeros(1, channels, *self._spatial())).shape[1])
        layers: list[nn.Module] = []
        for size in self.hidden_sizes:
            layers += [
                _orthogonal(nn.Linear(width, size), float(np.sqrt(2.0))),
                _ACTIVATIONS[activation](),
            ]
            width = size
        head = nn.Linear(width, max(num_outputs, 1) + (1 if dueling else 0))
        layers.append(_orthogonal(head, output_gain))
        self.head = nn.Sequential(*layers)

    def _spatial(self) -> tuple[int, int]:
        h, w = self.image_shape[1:] if self.channels_first else self.image_shape[:2]
        return int(h), int(w)

    def features(self, obs: np.ndarray) -> np.ndarray:
        """``obs: [N, *shape]`` -> ``[N, in_features]`` of ``feature_dtype`` (the image,
        flattened; made float in :meth:`forward`)."""
        return np.asarray(obs, dtype=self.feature_dtype).reshape(len(obs), -1)

    def outputs(self, features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return to_numpy(self(to_tensor(features, device_of(self))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x.reshape(len(x), *self.image_shape).to(torch.float32)
        if not self.channels_first:
            image = image.permute(0, 3, 1, 2)
        if self.scale != 1.0:
            image = image * self.scale
        out = self.head(self.torso(image))
        if self.dueling:
            advantages = out[:, 1:]
            return out[:, :1] + advantages - advantages.mean(dim=1, keepdim=True)
        return out


__all__ = ["ARCHS", "CNN"]
