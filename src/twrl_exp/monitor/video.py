"""Videos of the greedy agent, recorded headless from a separate evaluation env.

Episodes are rendered with ``render_mode="rgb_array"`` and encoded as H.264 mp4 (yuv420p, even
frame sizes) with the ffmpeg that imageio-ffmpeg ships, which every browser plays, so MLflow's
artifact view plays them. Nothing here runs unless the monitor is enabled.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from twrl_exp import seeding
from twrl_exp.agent import Agent
from twrl_exp.runner import MonitorBase, Runner


class CannotRender(Exception):
    """The env cannot give ``rgb_array`` frames: its own limit, not a failure of the run."""


def _frame(env: Any) -> np.ndarray:
    """One rendered frame, or :class:`CannotRender` saying why the env gives none."""
    try:
        frame = env.render()
    except NotImplementedError as exc:
        raise CannotRender(f"render() is not implemented: {exc}".rstrip(": ")) from exc
    except Exception as exc:  # the env's own rendering (or Gymnasium's check of it) refused
        raise CannotRender(f"render() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] not in (3, 4):
        kind = type(frame).__name__ if not isinstance(frame, np.ndarray) else f"shape {frame.shape}"
        raise CannotRender(f"render() returned {kind}, not an RGB image [H, W, 3]")
    return frame


def _open(make_env: Callable[[], Any]) -> Any:
    from gymnasium.error import DependencyNotInstalled

    try:
        with warnings.catch_warnings():  # an env without rgb_array is said once, below
            warnings.filterwarnings("ignore", message=".*not in the possible render_modes")
            return make_env()
    except TypeError as exc:
        if "render_mode" not in str(exc):
            raise
        raise CannotRender(str(exc.__cause__ or exc)) from exc
    except DependencyNotInstalled as exc:
        raise CannotRender(str(exc)) from exc


def record_episode(
    make_env: Callable[[], Any],
    agent: Agent,
    *,
    seed: int,
    max_frames: int = 1000,
    sink: Callable[[np.ndarray], None] | None = None,
) -> tuple[list[np.ndarray], float]:
    """Frames and return of one greedy episode in a fresh ``rgb_array`` env (each frame handed
    to ``sink`` as it is rendered instead, if given: then no frames are kept)."""
    # Rendering needs no window or sound device (pygame complains on headless machines); set
    # when a video is recorded, not when this module is imported.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    frames: list[np.ndarray] = []
    keep = frames.append if sink is None else sink
    env = _open(make_env)
    try:
        obs, _ = env.reset(seed=seed)
        keep(_frame(env))
        total = 0.0
        for _ in range(max_frames - 1):
            action = agent.act(np.asarray(obs)[None], greedy=True)[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            keep(_frame(env))
            if terminated or truncated:
                break
        return frames, total
    finally:
        env.close()


class _Mp4:
    """A browser-playable H.264 mp4 fed one RGB frame at a time: ffmpeg (its own process)
    encodes each frame while the next is rendered, not after the last."""

    def __init__(self, path: Path, fps: int) -> None:
        self.path, self.fps = Path(path), fps
        self._encoder: Any = None
        self._size = (0, 0)

    def add(self, frame: np.ndarray) -> None:
        if self._encoder is None:
            import imageio_ffmpeg

            height, width = frame.shape[:2]
            self._size = (width - width % 2, height - height % 2)
            self._encoder = imageio_ffmpeg.write_frames(
                str(self.path),
                self._size,
                fps=self.fps,
                codec="libx264",
                pix_fmt_out="yuv420p",
                output_params=["-movflags", "+faststart"],
                macro_block_size=1,
            )
            self._encoder.send(None)
        width, height = self._size
        self._encoder.send(np.ascontiguousarray(frame[:height, :width, :3]))

    def close(self) -> None:
        if self._encoder is not None:
            self._encoder.close()


def record_mp4(
    make_env: Callable[[], Any],
    agent: Agent,
    path: Path,
    *,
    seed: int,
    max_frames: int = 1000,
    fps: int = 30,
) -> tuple[Path, float]:
    """Record one greedy episode (see :func:`record_episode`) straight into an mp4 at ``path``,
    encoding while rendering; the path and the episode's return."""
    video = _Mp4(path, fps)
    try:
        _, total = record_episode(make_env, agent, seed=seed, max_frames=max_frames, sink=video.add)
    finally:
        video.close()
    return path, total


class VideoMonitor(MonitorBase):
    """Records the greedy policy every ``every_evals`` evaluations and at the end of the run.

    ``upload(path, name)`` stores a finished video (e.g. as an MLflow artifact under videos/);
    ``recorded(runner, path, name)``, if given, is then shown it too (the observers' hook).
    An env that cannot render (no ``render_mode``, no ``render()``) makes no video: the monitor
    says why once, through ``unavailable(reason)``, and the run goes on; any other error of a
    recording fails the run as before.
    """

    def __init__(
        self,
        *,
        make_env: Callable[[], Any],
        upload: Callable[[Path, str], None],
        seed: int,
        every_evals: int = 0,
        final: bool = True,
        fps: int = 30,
        max_frames: int = 1000,
        unavailable: Callable[[str], None] | None = None,
        recorded: Callable[[Runner, Path, str], None] | None = None,
    ) -> None:
        self.make_env, self.upload, self.seed = make_env, upload, seed
        self.recorded = recorded
        self.every_evals, self.final = every_evals, final
        self.fps, self.max_frames = fps, max_frames
        self.unavailable = unavailable
        self.evaluations = 0
        self.cannot_render: str | None = None

    def _record(self, runner: Runner, name: str) -> None:
        if self.cannot_render is not None:
            return
        with tempfile.TemporaryDirectory(prefix="twrl-video-") as folder:
            try:
                path, _ = record_mp4(
                    self.make_env,
                    runner.agent,
                    Path(folder) / name,
                    seed=seeding.integer(self.seed, seeding.Stream.VIDEO),
                    max_frames=self.max_frames,
                    fps=self.fps,
                )
            except CannotRender as exc:
                self.cannot_render = str(exc)
                if self.unavailable is not None:
                    self.unavailable(self.cannot_render)
                return
            self.upload(path, name)
            if self.recorded is not None:
                self.recorded(runner, path, name)

    def evaluation(self, runner: Runner, returns: np.ndarray) -> None:
        self.evaluations += 1
        if self.every_evals and self.evaluations % self.every_evals == 0:
            self._record(runner, f"eval_{runner.history.env_steps:09d}.mp4")

    def finishing(self, status: str) -> str | None:
        """What :meth:`finish` is about to do, for a user who waits on it."""
        wanted = self.final and status == "FINISHED" and self.cannot_render is None
        return "recording a video of the final policy" if wanted else None

    def finish(self, runner: Runner, status: str) -> None:
        if self.final and status == "FINISHED":
            self._record(runner, "final.mp4")
