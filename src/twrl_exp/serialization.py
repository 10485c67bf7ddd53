"""Checkpoints and saved agents hold tensors and plain data only, and load without pickle.

Stores are shared between people, so a file read from one must not be able to run code:
``torch.load(weights_only=True)`` refuses anything but tensors, containers and primitives. NumPy
arrays and scalars in a state dict are therefore encoded as tensors on save (bit for bit) and
decoded back to NumPy on load.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twrl_exp.errors import ConfigError

_NDARRAY = "__ndarray__"
_NUMBERS = "__numbers__"
# Lists this long or longer of nothing but floats (or nothing but ints) are saved as one tensor:
# pickling a run's history number by number cost a checkpoint tenths of a second at 1M steps.
_NUMBERS_MIN = 16
_TENSOR_DTYPE = {float: torch.float64, int: torch.int64}


def encode(state: Any) -> Any:
    """``state`` with every NumPy array as ``{"__ndarray__": tensor}``, NumPy scalars as Python
    numbers and long lists of only floats or only ints as ``{"__numbers__": tensor}`` (float64
    and int64: exact), so ``torch.load(weights_only=True)`` can read it."""
    if isinstance(state, dict):
        return {key: encode(value) for key, value in state.items()}
    if isinstance(state, list):
        if len(state) >= _NUMBERS_MIN:
            kinds = set(map(type, state))  # exact types: bool and NumPy scalars take the long way
            if len(kinds) == 1 and (kind := kinds.pop()) in _TENSOR_DTYPE:
                with contextlib.suppress(OverflowError, ValueError):  # ints beyond int64
                    return {_NUMBERS: torch.tensor(state, dtype=_TENSOR_DTYPE[kind])}
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
        if set(state) == {_NUMBERS}:  # back to the list of Python floats or ints it was
            return state[_NUMBERS].tolist()
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
