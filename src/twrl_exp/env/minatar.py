"""MinAtar (Young & Tian 2019) as Gymnasium envs: ``MinAtar/<Game>-v1`` (pip install
'twrl-exp[minatar]').

MinAtar's five games (Asterix, Breakout, Freeway, Seaquest, SpaceInvaders) on a 10x10 grid,
one boolean channel per kind of object (``[10, 10, C]``), with the paper's settings: sticky
actions (0.1) and difficulty ramping. The ids are MinAtar's own ``v1`` ones (the minimal action
set, as its ``minatar.gym.register_envs`` names them), registered here without importing the
package, so that a missing MinAtar is said in one sentence when the env is built; MinAtar's
own Gymnasium class is not used because its ``rgb_array`` frames need seaborn: ours colour each
channel from matplotlib's cubehelix map (the palette of MinAtar's own display), scaled up 16x
for videos.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

GAMES = {
    "Asterix": "asterix",
    "Breakout": "breakout",
    "Freeway": "freeway",
    "Seaquest": "seaquest",
    "SpaceInvaders": "space_invaders",
}
# A guard for agents that learn to stall: MinAtar's games end by themselves (Freeway after
# 2,500 frames), but a good agent can play Breakout for a long time.
MAX_EPISODE_STEPS = 10_000
SCALE = 16  # pixels per grid cell in rgb_array frames (160x160: a multiple of 16 for codecs)


class MinAtarEnv(gym.Env[np.ndarray, np.int64]):
    """One MinAtar game; observations ``[10, 10, C]`` booleans, the minimal action set."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}  # noqa: RUF012 (Gymnasium's)

    def __init__(
        self,
        game: str,
        render_mode: str | None = None,
        sticky_action_prob: float = 0.1,
        difficulty_ramping: bool = True,
    ) -> None:
        from minatar import Environment  # the optional extra: imported when the env is built

        self.game = Environment(
            env_name=game,
            sticky_action_prob=sticky_action_prob,
            difficulty_ramping=difficulty_ramping,
        )
        self.render_mode = render_mode
        self.action_set = list(self.game.minimal_action_set())
        self.action_space = spaces.Discrete(len(self.action_set))
        shape = tuple(int(d) for d in self.game.state_shape())
        self.observation_space = spaces.Box(0, 1, shape=shape, dtype=np.bool_)
        self._palette: np.ndarray | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self.game.seed(seed)  # MinAtar's own RandomState: sticky actions and the game's
        self.game.reset()
        return self._state(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        reward, done = self.game.act(self.action_set[int(action)])
        return self._state(), float(reward), bool(done), False, {}

    def _state(self) -> np.ndarray:
        return np.asarray(self.game.state(), dtype=np.bool_)

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        state = self._state()
        channels = state.shape[-1]
        if self._palette is None:
            from matplotlib import colormaps

            colours = colormaps["cubehelix"](np.linspace(0.0, 1.0, channels + 2))[1:-1, :3]
            self._palette = np.vstack([np.zeros((1, 3)), colours]).astype(np.float64) * 255
        # each cell shows its highest channel (as MinAtar's display), black where empty
        index = np.max(state * np.arange(1, channels + 1), axis=2)
        frame = self._palette[index].astype(np.uint8)
        return np.repeat(np.repeat(frame, SCALE, axis=0), SCALE, axis=1)


def register() -> None:
    """Register ``MinAtar/<Game>-v1`` for each game (once; MinAtar itself is not imported)."""
    for name, game in GAMES.items():
        env_id = f"MinAtar/{name}-v1"
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="twrl_exp.env.minatar:MinAtarEnv",
            kwargs={"game": game},
            max_episode_steps=MAX_EPISODE_STEPS,
        )


__all__ = ["GAMES", "MinAtarEnv", "register"]
