"""env.backend=envpool: EnvPool's envs behave as Gymnasium's do in the runner's terms, the same
episode boundaries (terminations, truncations at the time limit, next-step autoreset) and the
same observations and rewards on a fixed action sequence."""

from __future__ import annotations

import importlib.util
import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from tests.envs import vector_env
from twrl_exp.errors import ConfigError

# Not pytest.importorskip: importing EnvPool sets MPLBACKEND=Agg in this process, which every
# Jupyter kernel a later test starts would inherit; twrl_exp.env.pool imports it guarded.
if importlib.util.find_spec("envpool") is None:
    pytest.skip(
        "EnvPool is not installed (pip install 'twrl-exp[envpool]')", allow_module_level=True
    )

N, LIMIT, STEPS = 3, 40, 200


def make(env_id: str, backend: str) -> gym.vector.VectorEnv:
    return vector_env(
        id=env_id, num_envs=N, max_episode_steps=LIMIT, vectorization="sync", backend=backend
    )


def cartpole_state(obs: np.ndarray) -> np.ndarray:
    return obs.astype(np.float64)


def pendulum_state(obs: np.ndarray) -> np.ndarray:
    return np.array([math.atan2(float(obs[1]), float(obs[0])), float(obs[2])])


@pytest.mark.parametrize(
    ("env_id", "state_of", "actions"),
    [
        ("CartPole-v1", cartpole_state, lambda rng: rng.integers(0, 2, size=N)),
        (
            "Pendulum-v1",
            pendulum_state,
            lambda rng: rng.uniform(-2, 2, size=(N, 1)).astype(np.float32),
        ),
    ],
)
def test_envpool_steps_as_gymnasium_does(env_id, state_of, actions) -> None:
    """Gymnasium's envs are put in EnvPool's initial states (at the start and after each
    autoreset, whose initial states each draws from its own generator), then both take the same
    actions: every flag, reward and observation agrees, final observations included."""
    pool, ref = make(env_id, "envpool"), make(env_id, "gymnasium")
    assert pool.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert pool.single_observation_space == ref.single_observation_space
    assert pool.single_action_space == ref.single_action_space
    obs, _ = pool.reset(seed=3)
    ref.reset(seed=0)
    for i in range(N):
        ref.envs[i].unwrapped.state = state_of(obs[i])
    rng = np.random.default_rng(0)
    ends = terminations = truncations = 0
    starting = np.zeros(N, bool)
    for _ in range(STEPS):
        a = actions(rng)
        got = pool.step(a)
        want = ref.step(a)
        np.testing.assert_array_equal(got[2], want[2])  # terminated
        np.testing.assert_array_equal(got[3], want[3])  # truncated
        np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-5)
        for i in range(N):
            if starting[i]:  # the autoreset step: a new episode, drawn by each its own way
                ref.envs[i].unwrapped.state = state_of(got[0][i])
                assert got[1][i] == want[1][i] == 0.0
            else:
                np.testing.assert_allclose(got[0][i], want[0][i], rtol=1e-4, atol=1e-4)
        starting = got[2] | got[3]
        ends += int(starting.sum())
        terminations += int(got[2].sum())
        truncations += int(got[3].sum())
    pool.close()
    ref.close()
    assert ends >= N  # episodes ended, and autoresets were compared
    assert truncations >= 1  # the time limit is EnvPool's as Gymnasium's
    if env_id == "CartPole-v1":
        assert terminations >= 1


def test_envpool_is_seeded_by_reset() -> None:
    env = make("CartPole-v1", "envpool")
    first, _ = env.reset(seed=5)
    again, _ = env.reset(seed=5)
    other, _ = env.reset(seed=6)
    env.close()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_an_id_envpool_lacks_is_refused_in_one_sentence() -> None:
    with pytest.raises(ConfigError, match=r"env\.backend=envpool has no Taxi-v4"):
        make("Taxi-v4", "envpool")


def test_using_envpool_leaves_the_environment_of_later_processes_alone(
    monkeypatch, tmp_path
) -> None:
    """Importing EnvPool sets MPLBACKEND=Agg for its renderers; a Jupyter kernel started after it
    showed no plots (the analysis notebook's test failed after the EnvPool tests had run in its
    worker). The import is guarded: here an envpool that does what EnvPool's import does."""
    import os
    import sys

    from twrl_exp.env import pool

    fake = tmp_path / "envpool"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import os\nos.environ.setdefault('MPLBACKEND', 'Agg')\n"
        "os.environ['MPLCONFIGDIR'] = '/tmp/elsewhere'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "envpool", raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.setenv("MPLCONFIGDIR", "/home/me/.config/matplotlib")
    module = pool._import_envpool()
    assert module.__file__ == str(fake / "__init__.py")
    assert "MPLBACKEND" not in os.environ
    assert os.environ["MPLCONFIGDIR"] == "/home/me/.config/matplotlib"
