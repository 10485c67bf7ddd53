"""Checkpoints and saved agents hold tensors and plain data only, and load without pickle.

Stores are shared between people, so a file read from one must not be able to run code:
``torch.load(weights_only=True)`` refuses anything but tensors, containers and primitives. NumPy
arrays and scalars in a state dict are therefore encoded as tensors on save (bit for bit) and
decoded back to NumPy on load.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twrl_exp.errors import ConfigError

_NDARRAY = "__ndarray__"


def encode(state: Any) -> Any:
    """``state`` with every NumPy array as ``{"__ndarray__": tensor}`` and NumPy scalars as
    Python numbers, so ``torch.load(weights_only=True)`` can read it."""
    if isinstance(state, dict):
        return {key: encode(value) for key, value in state.items()}
    if isinstance(state, list):
        return [encode(value) for value in state]
    if isinstance(state, tuple):
        return tuple(encode(value) for value in state)
    if isinstance(state, np.ndarray):
        if state.dtype.kind not in "biufc":
            raise TypeError(f"cannot save a NumPy array of dtype {state.dtype}")
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(state).copy())}
    if isinstance(state, np.generic):
        return state.item()
    return state


def decode(state: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(state, dict):
        if set(state) == {_NDARRAY}:
            return state[_NDARRAY].numpy()
        return {key: decode(value) for key, value in state.items()}
    if isinstance(state, list):
        return [decode(value) for value in state]
    if isinstance(state, tuple):
        return tuple(decode(value) for value in state)
    return state


def save(state: Any, path: Path) -> Path:
    """Write ``state`` atomically (temporary name, then rename): never a truncated file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(encode(state), tmp)
    os.replace(tmp, path)
    return path


def load(path: Path, *, what: str = "checkpoint") -> Any:
    """Read a file written by :func:`save` without unpickling anything but tensors and data."""
    try:
        return decode(torch.load(path, weights_only=True, map_location="cpu"))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"The {what} {Path(path).name} was refused: it is damaged or holds more than "
            f"tensors and plain data ({first[:160]}); nothing in it was run."
        ) from exc


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
