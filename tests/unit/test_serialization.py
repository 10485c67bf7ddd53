"""Checkpoints round-trip exactly, load without pickle, and save a run's history cheaply."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from twrl_exp import serialization
from twrl_exp.errors import ConfigError
from twrl_exp.runner import History


def _same(a: object, b: object) -> bool:
    """Equal values of equal types, NaN equal to NaN and -0.0 told from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)  # type: ignore[index]
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(_same, a, b))  # type: ignore[arg-type]
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )  # type: ignore[arg-type]
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)  # type: ignore[union-attr]
    return a == b


STATE = {
    "floats": [0.1 * i for i in range(40)] + [math.nan, math.inf, -math.inf, -0.0, 5e-324],
    "ints": [2**62, -(2**62), 0, *range(30)],
    "huge_ints": [2**70, *range(20)],  # beyond int64: saved number by number
    "mixed": [1, 2.5, *range(20)],
    "bools": [True, False] * 10,
    "short": [1.5, 2.5],
    "nested": [[0.5] * 20, {"a": list(range(20))}],
    "array": np.arange(12, dtype=np.float32).reshape(3, 4),
    "tuple": (1, 2.0, "x"),
    "none": None,
}


def test_a_state_round_trips_exactly(tmp_path):
    path = serialization.save(STATE, tmp_path / "last.pt")
    assert _same(serialization.load(path), STATE)


def test_numpy_scalars_come_back_as_python_numbers(tmp_path):
    state = {"xs": [np.float64(0.5)] * 20, "n": np.int64(3)}
    loaded = serialization.load(serialization.save(state, tmp_path / "s.pt"))
    assert _same(loaded, {"xs": [0.5] * 20, "n": 3})


def test_long_number_lists_are_stored_as_one_tensor(tmp_path):
    """A run's history (lists of a float or an int per episode) is saved as tensors, not
    pickled number by number, which cost checkpoints most of their time at 1M steps."""
    path = serialization.save(STATE, tmp_path / "last.pt")
    raw = torch.load(path, weights_only=True)
    assert set(raw["floats"]) == {"__numbers__"}
    assert raw["floats"]["__numbers__"].dtype == torch.float64
    assert set(raw["ints"]) == {"__numbers__"}
    assert raw["ints"]["__numbers__"].dtype == torch.int64
    for key in ("huge_ints", "mixed", "bools", "short"):
        assert isinstance(raw[key], list), key


def test_a_run_history_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    history = History(
        env_steps=123_456,
        returns=rng.normal(size=500).tolist(),
        lengths=rng.integers(1, 500, 500).tolist(),
        end_steps=np.cumsum(rng.integers(1, 500, 500)).tolist(),
        end_times=np.cumsum(rng.random(500)).tolist(),
        trailing=rng.normal(size=500).tolist(),
        solved_episode=7,
    )
    state = history.as_dict()
    loaded = serialization.load(serialization.save(state, tmp_path / "h.pt"))
    assert History(**loaded) == history


def test_checkpoints_written_before_still_load(tmp_path):
    """Files from before the tensor lists (plain lists pickled number by number) load as before."""
    old = {"history": {"returns": [0.25] * 30, "lengths": list(range(30))}}
    torch.save(old, tmp_path / "old.pt")
    assert _same(serialization.load(tmp_path / "old.pt"), old)


def test_a_file_holding_code_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(ConfigError, match="nothing in it was run"):
        serialization.load(tmp_path / "evil.pt")


@pytest.mark.parametrize(
    "planted", [{"__numbers__": [1.0, 2.0]}, {"__numbers__": "1,2"}, {"__ndarray__": 3}]
)
def test_a_tampered_marker_is_refused_in_one_sentence(tmp_path, planted) -> None:
    """A file whose tensor markers were edited to hold something else is refused like any
    damaged checkpoint, not with a traceback from decoding it."""
    torch.save({"history": {"returns": planted}}, tmp_path / "tampered.pt")
    with pytest.raises(ConfigError, match="was refused: it is damaged"):
        serialization.load(tmp_path / "tampered.pt")
