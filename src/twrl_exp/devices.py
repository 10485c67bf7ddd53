"""Where the networks live (``device=cpu|cuda|auto``) and the one crossing between numpy and
torch.

Networks, their optimisers' state and every tensor a learner creates are made on the run's
device (``build`` constructs the agent inside ``with torch.device(...)``); data crosses from
numpy (envs, storages) to torch only through :func:`to_tensor`, which puts it on the device of
the network that reads it, and back only through :func:`to_numpy`. On the CPU both are free
(``torch.from_numpy`` shares the array's memory; ``.cpu()`` of a CPU tensor is itself); a test
(tests/unit/test_devices.py) keeps the learning code from crossing any other way.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from twrl_exp.errors import ConfigError

CPU = torch.device("cpu")


def resolve(device: str) -> torch.device:
    """``cpu``, ``cuda`` (or ``cuda:N``), or ``auto`` (CUDA where torch sees a GPU, else CPU)."""
    text = str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else CPU
    if text == "cpu":
        return CPU
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={device} is not available: this torch ({torch.__version__}) sees no "
                "CUDA GPU; use device=cpu or device=auto."
            )
        index = int(text[5:]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device={device} is not available: torch sees {torch.cuda.device_count()} "
                "CUDA GPU(s), numbered from 0."
            )
        return torch.device(text)
    raise ConfigError(f"device={device} is invalid: it must be cpu, cuda, cuda:N or auto.")


def device_of(module: nn.Module | object) -> torch.device:
    """The device of a network's parameters (the CPU for one without any)."""
    if isinstance(module, nn.Module):
        for parameter in module.parameters():
            return parameter.device
    return CPU


def to_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device``: shared memory on the CPU, one copy to a GPU."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor if device.type == "cpu" else tensor.to(device, non_blocking=True)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """``tensor``'s values in numpy (a view on the CPU, a copy from a GPU)."""
    return tensor.detach().cpu().numpy()


__all__ = ["CPU", "device_of", "resolve", "to_numpy", "to_tensor"]
