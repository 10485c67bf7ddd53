"""Gymnasium vector envs built from any registered id (native vectorisation where it exists)."""

from __future__ import annotations

import difflib
import importlib
import logging
import os
from functools import partial
from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode, VectorEnv

from twrl_exp.choices import EnvBackend, EnvPreprocess, Vectorization, parse
from twrl_exp.env import atari, minatar
from twrl_exp.env.classic import NATIVE_VECTOR_ENVS, MountainCarVectorEnv
from twrl_exp.errors import ConfigError

__all__ = ["EnvSpecInfo", "make_render_env", "make_vector_env", "prepare_mujoco", "resolve_spec"]


class EnvSpecInfo:
    """What the rest of the system needs to know about an env id, without building it."""

    def __init__(self, spec: gym.envs.registration.EnvSpec, reward_threshold: float | None):
        self.spec = spec
        self.id = spec.id
        self.reward_threshold = reward_threshold
        self.has_native_vector = spec.vector_entry_point is not None


def resolve_spec(env_id: str, reward_threshold: float | None = None) -> EnvSpecInfo:
    """Look an id up in Gymnasium's registry, with a suggestion when it is misspelt.

    ``"package.module:Env-v0"`` first imports the module that registers ``Env-v0``.
    """
    if ":" in env_id:
        module, env_id = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                f"env.id names module '{module}', which cannot be imported ({exc})."
            ) from exc
    if env_id not in gym.registry and _looks_atari(env_id) and not atari.register():
        raise ConfigError(
            f"env.id={env_id} is an Atari game, which needs ale-py; pip install 'twrl-exp[atari]'."
        )
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "see gymnasium.pprint_registry()."
        raise ConfigError(
            f"Unknown env id '{env_id}': it is not registered with Gymnasium ({hint})"
        ) from exc
    threshold = reward_threshold if reward_threshold is not None else spec.reward_threshold
    return EnvSpecInfo(spec, threshold)


def _looks_atari(env_id: str) -> bool:
    """ale-py's ids: ``ALE/Breakout-v5``, ``BreakoutNoFrameskip-v4``, ``Breakout-v4``."""
    return env_id.startswith("ALE/") or "NoFrameskip-v" in env_id


# Env families whose packages are optional: the extra that installs them, by the module of
# the env's entry point.
EXTRAS = {
    "gymnasium.envs.mujoco": "mujoco",
    "twrl_exp.env.minatar": "minatar",
    "ale_py": "atari",
}

minatar.register()  # MinAtar/<Game>-v1 (the package is imported when such an env is built)


_MUJOCO_SEEN: set[str] = set()


def prepare_mujoco() -> None:
    """Before MuJoCo is imported or renders: off-screen rendering through EGL on a machine
    without a display (MuJoCo's default, GLFW, opens a window; a user's own MUJOCO_GL wins), no
    PyOpenGL INFO lines, and MuJoCo's warnings, which it writes to MUJOCO_LOG.TXT in the
    working directory (the user's project), to Python's logging instead, once each
    (deprecation notes of Gymnasium's own models at debug level)."""
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")
    logging.getLogger("OpenGL").setLevel(logging.WARNING)
    try:
        import mujoco

        importlib.import_module("gymnasium.envs.mujoco")  # its renderer: GLFW, PyOpenGL
    except ImportError:
        return
    log = logging.getLogger("mujoco")

    def told(message: str) -> None:
        text = str(message).strip()
        if text in _MUJOCO_SEEN:
            return
        _MUJOCO_SEEN.add(text)
        log.log(logging.DEBUG if "deprecated" in text else logging.WARNING, text)

    mujoco.set_mju_user_warning(told)


def missing_dependency(info: EnvSpecInfo, exc: BaseException) -> ConfigError:
    """One sentence for an env whose optional package is not installed: which, and how."""
    entry = str(info.spec.entry_point)
    extra = next((e for module, e in EXTRAS.items() if entry.startswith(module)), None)
    how = f"pip install 'twrl-exp[{extra}]'" if extra else "install the package it names"
    reason = (
        str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
    )
    return ConfigError(f"env.id={info.id} cannot be built: {reason}; {how}.")


def make_render_env(
    *,
    id: str,
    kwargs: dict[str, Any] | None,
    max_episode_steps: int | None,
    preprocess: EnvPreprocess | str,
) -> gym.Env[Any, Any]:
    """One copy of the env that renders ``rgb_array`` frames (videos are recorded from it),
    preprocessed as evaluation envs are (whole games, raw scores)."""
    spec_id = resolve_spec(id).id
    env_kwargs: dict[str, Any] = dict(kwargs or {})
    if max_episode_steps is not None:
        env_kwargs["max_episode_steps"] = max_episode_steps
    if str(gym.spec(spec_id).entry_point).startswith("gymnasium.envs.mujoco"):
        prepare_mujoco()
    env = gym.make(spec_id, render_mode="rgb_array", **env_kwargs)
    if parse(EnvPreprocess, "env.preprocess", preprocess) is EnvPreprocess.atari:
        env = atari.preprocess(env, training=False)
    return env


def _our_vector_env(
    cls: type[MountainCarVectorEnv],
    info: EnvSpecInfo,
    num_envs: int,
    kwargs: dict[str, Any] | None,
    max_episode_steps: int | None,
) -> VectorEnv:
    limit = max_episode_steps or info.spec.max_episode_steps or 200  # MountainCar-v0's
    try:
        return cls(num_envs=num_envs, max_episode_steps=limit, **(kwargs or {}))
    except TypeError as exc:
        raise ConfigError(f"env.kwargs {kwargs} are not accepted by {info.id}: {exc}.") from exc


def make_vector_env(
    *,
    id: str,
    num_envs: int,
    kwargs: dict[str, Any] | None,
    max_episode_steps: int | None,
    reward_threshold: float | None,
    vectorization: Vectorization | str,
    backend: EnvBackend | str,
    normalize_obs: bool,
    normalize_reward: bool,
    normalize_clip: float,
    preprocess: EnvPreprocess | str,
    render_mode: str | None = None,
    training: bool = True,
) -> VectorEnv:
    """Build ``num_envs`` copies of ``id`` that step together, in next-step autoreset mode.

    ``vectorization="auto"`` uses a native numpy implementation when there is one (Gymnasium's
    for CartPole-v1, ours for MountainCar-v0: several times faster than stepping copies in a
    loop), else a SyncVectorEnv.
    ``reward_threshold`` is not used here; it is part of the env config for the runner, as the
    ``normalize_*`` settings are for the agent (:mod:`twrl_exp.normalize`). The defaults of the
    other settings live in :class:`twrl_exp.config.EnvConfig`. ``preprocess="atari"`` wraps each
    copy in :func:`twrl_exp.env.atari.preprocess`, for training (``training``: life-loss ends,
    clipped rewards) or for evaluation (whole games, raw scores).
    """
    del reward_threshold, normalize_obs, normalize_reward, normalize_clip
    if num_envs < 1:
        raise ConfigError(f"env.num_envs={num_envs} is invalid: it must be at least 1.")
    info = resolve_spec(id)
    id = info.id
    atari_stack = parse(EnvPreprocess, "env.preprocess", preprocess) is EnvPreprocess.atari
    if parse(EnvBackend, "env.backend", backend) is EnvBackend.envpool:
        if atari_stack:
            raise ConfigError(
                "env.preprocess=atari wraps Gymnasium's ALE envs; EnvPool preprocesses its own "
                "Atari envs: use env.backend=gymnasium with it."
            )
        if render_mode is not None:
            raise ConfigError("env.backend=envpool renders no frames; videos use Gymnasium's env.")
        from twrl_exp.env.pool import EnvPoolVectorEnv

        limit = max_episode_steps or info.spec.max_episode_steps
        return EnvPoolVectorEnv(id, num_envs, limit, dict(kwargs or {}))
    mode = parse(Vectorization, "env.vectorization", vectorization).value
    ours = NATIVE_VECTOR_ENVS.get(id) if not info.has_native_vector else None
    if mode == "auto":
        native = (info.has_native_vector or ours is not None) and not atari_stack
        mode = "native" if native and render_mode is None else "sync"
    if mode == "native" and ours is not None:
        return _our_vector_env(ours, info, num_envs, kwargs, max_episode_steps)
    if mode == "native" and not info.has_native_vector:
        raise ConfigError(
            f"env.vectorization=native is not available for {id}: it has no vector entry point "
            "(use env.vectorization=auto, sync or async)."
        )
    env_kwargs = dict(kwargs or {})
    if max_episode_steps is not None:
        env_kwargs["max_episode_steps"] = max_episode_steps
    if render_mode is not None:
        env_kwargs["render_mode"] = render_mode
    if str(info.spec.entry_point).startswith("gymnasium.envs.mujoco"):
        prepare_mujoco()
    gym_mode = {"native": "vector_entry_point", "sync": "sync", "async": "async"}[mode]
    vector_kwargs = {} if mode == "native" else {"autoreset_mode": AutoresetMode.NEXT_STEP}
    if atari_stack and mode == "native":
        raise ConfigError(
            f"env.preprocess=atari wraps each copy of {id}; use env.vectorization=auto or sync."
        )
    wrappers = [partial(atari.preprocess, training=training)] if atari_stack else None
    try:
        env = gym.make_vec(
            id,
            num_envs=num_envs,
            vectorization_mode=gym_mode,
            vector_kwargs=vector_kwargs,
            wrappers=wrappers,
            **env_kwargs,
        )
    except TypeError as exc:
        raise ConfigError(f"env.kwargs {env_kwargs} are not accepted by {id}: {exc}.") from exc
    except (gym.error.DependencyNotInstalled, ImportError) as exc:
        raise missing_dependency(info, exc) from exc
    autoreset = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if autoreset != AutoresetMode.NEXT_STEP:
        env.close()
        raise ConfigError(f"{id} resets in {autoreset} mode; twrl-exp needs next-step autoreset.")
    return env
