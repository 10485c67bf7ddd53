"""TD(lambda)'s compiled backend (update.backend=numba) against numpy: bit for bit the same."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces

from twrl_exp import config, serialization
from twrl_exp.agent import Agent
from twrl_exp.cli_errors import describe
from twrl_exp.errors import ConfigError
from twrl_exp.model.tiles import tile_hash_primes, tile_indices
from twrl_exp.policy import EGreedy
from twrl_exp.runner import Runner
from twrl_exp.update import TdLambda


@pytest.fixture(scope="module")
def kernels() -> ModuleType:
    pytest.importorskip("numba")
    from twrl_exp.update import _td_kernels

    return _td_kernels


class Spy:
    """Passes calls through to the kernels and counts them: proof that the compiled path ran."""

    def __init__(self, kernels: ModuleType) -> None:
        self.kernels, self.calls = kernels, Counter[str]()

    def __getattr__(self, name: str) -> Any:
        function = getattr(self.kernels, name)

        def counted(*args: Any) -> Any:
            self.calls[name] += 1
            return function(*args)

        return counted


def egreedy(space: spaces.Space[Any], **settings: Any) -> EGreedy:
    return config.make("policy", "egreedy", action_space=space, **settings)


def table() -> Any:
    return config.make("model", "table", observation_space=spaces.Discrete(3), num_outputs=2)


def learner_of(model: Any, policy: Any, num_envs: int, **settings: Any) -> TdLambda:
    """``update=td_lambda``'s learner with the schema's defaults and ``settings``."""
    return config.make(
        "update", "td_lambda", model=model, policy=policy, num_envs=num_envs, **settings
    ).learner


LIMITS = {"MountainCar-v0": 300, "CliffWalking-v1": 50}  # goals as well as truncations


def train(
    backend: str, env_id: str, num_envs: int, steps: int, model_kwargs: dict[str, Any], **kw: Any
) -> tuple[Runner, TdLambda, Spy | None]:
    runner, learner, spy = make(backend, env_id, num_envs, steps, model_kwargs, **kw)
    runner.run()
    runner.env.close()
    return runner, learner, spy


def make(
    backend: str, env_id: str, num_envs: int, steps: int, model_kwargs: dict[str, Any], **kw: Any
) -> tuple[Runner, TdLambda, Spy | None]:
    limit = LIMITS[env_id]
    env = config.make("env", id=env_id, num_envs=num_envs, max_episode_steps=limit)
    discrete = isinstance(env.single_observation_space, spaces.Discrete)
    num_actions = int(env.single_action_space.n)
    model = config.make(
        "model",
        "table" if discrete else "tilecoding",
        observation_space=env.single_observation_space,
        num_outputs=num_actions,
        **model_kwargs,
    )
    policy = egreedy(env.single_action_space, epsilon=0.2, decay=0.98)
    update = config.make(
        "update", "td_lambda", model=model, policy=policy, num_envs=num_envs, backend=backend, **kw
    )
    learner = update.learner
    assert isinstance(learner, TdLambda)
    spy = None
    if learner.kernels is not None:
        spy = Spy(learner.kernels)
        learner.kernels = model.kernels = policy.kernels = spy
    agent = Agent(model=model, policy=policy, update=update, seed=11)
    runner = Runner(env=env, agent=agent, seed=11, max_env_steps=steps, final_eval=False)
    return runner, learner, spy


CASES = [
    # env, num_envs, steps, model kwargs, learner kwargs
    ("MountainCar-v0", 1, 5000, {}, {"target": "sarsa"}),
    ("MountainCar-v0", 1, 5000, {}, {"target": "q_learning", "traces": "accumulating"}),
    ("MountainCar-v0", 1, 5000, {}, {"target": "expected_sarsa", "lam": 0.0}),
    ("MountainCar-v0", 4, 8000, {"memory_size": 512}, {"target": "sarsa", "lam": 0.8}),
    ("MountainCar-v0", 16, 16000, {}, {"target": "q_learning", "gamma": 0.999}),
    ("MountainCar-v0", 8, 8000, {}, {"target": "expected_sarsa", "traces": "accumulating"}),
    ("CliffWalking-v1", 2, 3000, {}, {"target": "sarsa", "alpha": 0.5}),
    ("CliffWalking-v1", 3, 4000, {}, {"target": "q_learning", "traces": "accumulating"}),
]


@pytest.mark.parametrize(("env_id", "num_envs", "steps", "model_kwargs", "kw"), CASES)
def test_numba_and_numpy_give_identical_returns_and_weights(
    kernels: ModuleType,
    env_id: str,
    num_envs: int,
    steps: int,
    model_kwargs: dict[str, Any],
    kw: dict[str, Any],
) -> None:
    slow, slow_learner, none = train("numpy", env_id, num_envs, steps, model_kwargs, **kw)
    fast, fast_learner, spy = train("numba", env_id, num_envs, steps, model_kwargs, **kw)
    assert (slow_learner.backend, fast_learner.backend) == ("numpy", "numba")
    assert none is None
    assert spy is not None
    vector_steps = spy.calls["learn_step"]
    assert vector_steps * num_envs >= steps
    assert spy.calls["tile_values" if env_id.startswith("Mountain") else "linear_outputs"] > 0
    assert spy.calls["egreedy_actions"] == vector_steps + 1  # one more for the first actions
    lengths = np.array(slow.history.lengths)
    assert (lengths < LIMITS[env_id]).any(), "no episode terminated"
    assert (lengths == LIMITS[env_id]).any(), "no episode was truncated"
    assert slow.history.returns == fast.history.returns
    assert slow.history.lengths == fast.history.lengths
    slow_weights = slow.agent.model.weights
    assert np.array_equal(slow_weights, fast.agent.model.weights)
    assert not np.array_equal(slow_weights, np.zeros_like(slow_weights))
    assert np.array_equal(slow_learner.totals, fast_learner.totals)
    assert slow_learner.stats() == fast_learner.stats()


def test_sums_follow_numpys_order(kernels: ModuleType) -> None:
    """Pairwise along a contiguous axis, row after row along a strided one, for any size."""
    rng = np.random.default_rng(0)
    for n in [*range(0, 300), 1000, 1023, 1024, 4097, 100_000]:
        x = rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, n)
        padded = np.concatenate([np.ones(3), x])
        assert kernels._pairwise_sum(x, 0, n) == x.sum()
        assert kernels._pairwise_sum(padded, 3, n) == x.sum()
    for actions in (1, 2, 3, 5):
        for active in (1, 3, 8, 9, 20):
            weights = rng.standard_normal((50, actions)) * 10.0 ** rng.integers(-6, 6, (50, 1))
            features = rng.integers(0, 50, (7, active))
            expected = weights[features].sum(axis=1)
            assert np.array_equal(kernels.linear_outputs(weights, features), expected)


@pytest.mark.parametrize("memory_size", [None, 997, 4096])
def test_tile_features_equal_tile_indices(kernels: ModuleType, memory_size: int | None) -> None:
    rng = np.random.default_rng(1)
    for dims in (1, 2, 3, 5):
        for num_tilings, tiles in ((1, 1), (4, 3), (5, 8), (8, 8), (16, 4)):
            low, high = rng.uniform(-2, 0, dims), rng.uniform(0.5, 2, dims)
            obs = rng.uniform(low - 0.3, high + 0.3, (40, dims)).astype(np.float32)
            unit = (obs.astype(np.float64) - low) / (high - low)
            expected = tile_indices(unit, num_tilings, tiles, memory_size)
            sizes = np.array([num_tilings, tiles, memory_size or 0])
            got = kernels.tile_features(obs, low, high - low, tile_hash_primes(dims), sizes)
            assert np.array_equal(got, expected)


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.7, 1.0])
def test_compiled_egreedy_draws_the_same_actions_and_numbers(
    kernels: ModuleType, epsilon: float
) -> None:
    space = spaces.Discrete(4)
    slow, fast = (
        egreedy(space, epsilon=epsilon),
        egreedy(space, epsilon=epsilon),
    )
    fast.use_kernels(kernels)
    rng_slow, rng_fast, values = (np.random.default_rng(5) for _ in range(3))
    for rows in (1, 3, 64, 1, 200):
        q = values.integers(0, 3, (rows, 4)).astype(np.float64)  # many ties
        assert np.array_equal(slow.sample(q, rng_slow, epsilon), fast.sample(q, rng_fast, epsilon))
        assert rng_slow.bit_generator.state == rng_fast.bit_generator.state


def test_a_bad_backend_is_refused_in_one_sentence(make_cfg: Any) -> None:
    model = table()
    policy = egreedy(spaces.Discrete(2))
    with pytest.raises(ConfigError, match=r"^update.backend=gpu is invalid: it must be one of"):
        learner_of(model, policy, 1, backend="gpu")
    with pytest.raises(Exception) as info:  # noqa: PT011 - Hydra's exception, described below
        make_cfg("update=td_lambda", "update.backend=gpu")
    assert describe(info.value) == (
        "update.backend=gpu is invalid: update.backend must be one of auto, numpy, numba."
    )
    assert make_cfg("update=td_lambda")["update"].backend == "auto"


def test_without_numba_auto_falls_back_and_numba_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.setitem(sys.modules, "twrl_exp.update._td_kernels", None)
    model = table()
    policy = egreedy(spaces.Discrete(2))
    learner = learner_of(model, policy, 1, backend="auto")
    assert (learner.backend, learner.kernels, model.kernels, policy.kernels) == (
        "numpy",
        None,
        None,
        None,
    )
    with pytest.raises(ConfigError, match=r'needs numba.*pip install "twrl-exp\[fast\]"') as info:
        learner_of(model, policy, 1, backend="numba")
    assert str(info.value).count(". ") == 0  # one sentence
    assert str(info.value).endswith(".")


def test_auto_compiles_when_numba_is_installed(kernels: ModuleType) -> None:
    model = table()
    policy = egreedy(spaces.Discrete(2))
    learner = learner_of(model, policy, 2)
    assert learner.backend == "numba"
    assert learner.kernels is model.kernels is policy.kernels is kernels
    assert learner_of(model, policy, 2, backend="numpy").kernels is None
    assert model.kernels is None  # numpy again for both
    assert policy.kernels is None


def test_bad_indices_and_nan_observations_raise_instead_of_reading_memory(
    kernels: ModuleType,
) -> None:
    weights = np.zeros((10, 3))
    with pytest.raises(IndexError):
        kernels.linear_outputs(weights, np.array([[0, 10]]))
    with pytest.raises(IndexError):
        kernels.linear_outputs(weights, np.array([[-1, 2]]))
    sizes = np.array([4, 4, 0])
    with pytest.raises(ValueError, match="NaN"):
        kernels.tile_features(np.array([[np.nan]]), np.zeros(1), np.ones(1), np.ones(2, int), sizes)


def test_loading_a_state_clears_the_sparse_traces(kernels: ModuleType) -> None:
    _, learner, _ = train("numba", "MountainCar-v0", 2, 150, {}, target="sarsa")
    assert learner.sparse.length.sum() > 0  # mid-episode: traces in flight
    learner.load_state_dict({})
    assert learner.sparse.length.sum() == 0
    assert not learner.sparse.slot.any()


def assert_same_state(left: Any, right: Any, where: str = "state") -> None:
    assert type(left) is type(right), where
    if isinstance(left, dict):
        assert left.keys() == right.keys(), where
        for key in left:
            assert_same_state(left[key], right[key], f"{where}[{key!r}]")
    elif isinstance(left, np.ndarray):
        assert left.dtype == right.dtype, where
        assert np.array_equal(left, right), where
    elif isinstance(left, torch.Tensor):
        assert torch.equal(left, right), where
    else:
        assert left == right, where


def test_checkpoints_are_the_same_and_resume_with_either_backend(
    kernels: ModuleType, tmp_path: Path
) -> None:
    """A run checkpointed with one backend resumes with the other as it would with its own."""
    case = ("MountainCar-v0", 4, 3000, {}, {"target": "q_learning", "lam": 0.8})
    env_id, num_envs, steps, model_kwargs, kw = case
    saved = {}
    for backend in ("numpy", "numba"):
        runner, _, _ = train(backend, env_id, num_envs, steps, model_kwargs, **kw)
        saved[backend] = serialization.save(runner.state_dict(), tmp_path / f"{backend}.ckpt")
        saved[f"{backend} agent"] = runner.agent.state_dict()
    assert_same_state(saved["numpy agent"], saved["numba agent"])
    finals = {}
    for first, then in (("numba", "numpy"), ("numpy", "numba"), ("numba", "numba")):
        resumed, _, _ = make(then, env_id, num_envs, 2 * steps, model_kwargs, **kw)
        resumed.load_state_dict(serialization.load(saved[first]))
        resumed.run()
        resumed.env.close()
        assert resumed.history.env_steps >= 2 * steps
        finals[first, then] = resumed
    expected = finals["numba", "numba"]
    for resumed in finals.values():
        assert resumed.history.returns == expected.history.returns
        assert_same_state(resumed.agent.state_dict(), expected.agent.state_dict())


def compile_in_a_fresh_process(
    kernels: ModuleType, tmp_path: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Import a copy of the kernels whose own __pycache__ cannot be made (as on a read-only
    install: here a file of that name, since root may write anywhere) and run one; ``env``
    says where else numba may cache."""
    package = tmp_path / "installed"
    package.mkdir()
    shutil.copy(str(kernels.__file__), package / "_td_kernels.py")
    (package / "__pycache__").write_text("not a folder")
    code = (
        f"import sys, numpy as np; sys.path.insert(0, {str(package)!r}); import _td_kernels; "
        "print(_td_kernels._row_max(np.array([[1.0, 3.0, 2.0]]), 0))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("variable", ["NUMBA_CACHE_DIR", "XDG_CACHE_HOME"])
def test_a_read_only_install_caches_elsewhere(
    kernels: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """numba's own fallback: $NUMBA_CACHE_DIR if set, else the user's cache folder."""
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    cache = tmp_path / "cache"
    done = compile_in_a_fresh_process(kernels, tmp_path, {variable: str(cache)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3.0"
    assert "Warning" not in done.stderr
    assert list(cache.rglob("_td_kernels._row_max-*.nbi"))


def test_with_no_writable_cache_the_kernels_compile_anyway_with_one_warning(
    kernels: ModuleType, tmp_path: Path
) -> None:
    nowhere = tmp_path / "a-file"
    nowhere.write_text("")
    done = compile_in_a_fresh_process(
        kernels,
        tmp_path,
        {"NUMBA_CACHE_DIR": str(nowhere / "numba"), "XDG_CACHE_HOME": str(nowhere)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3.0"
    assert done.stderr.count("RuntimeWarning: numba can write its cache nowhere here") == 1
    assert "Traceback" not in done.stderr
