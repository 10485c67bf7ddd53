"""Videos encoded by ffmpeg (a process): every frame of the episode, and no more than asked."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np

from tests.unit.test_video import Balancer, make_env
from twrl_exp.monitor.video import record_episode, record_mp4


def test_record_mp4_holds_every_frame_of_the_episode(tmp_path: Path) -> None:
    frames, total = record_episode(make_env, Balancer(), seed=3)  # type: ignore[arg-type]
    path, streamed_total = record_mp4(
        make_env,
        Balancer(),  # type: ignore[arg-type]
        tmp_path / "final.mp4",
        seed=3,
        fps=30,
    )
    assert streamed_total == total == 60.0  # the same episode, to its time limit
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["size"] == (600, 400)
    decoded = list(reader)
    assert len(decoded) == len(frames) == 61  # the reset frame and one per step
    first = np.frombuffer(decoded[0], np.uint8).reshape(400, 600, 3).astype(int)
    assert np.abs(first - frames[0]).mean() < 3  # H.264 is lossy, not different


def test_max_frames_caps_the_video(tmp_path: Path) -> None:
    path, _ = record_mp4(make_env, Balancer(), tmp_path / "v.mp4", seed=0, max_frames=10)  # type: ignore[arg-type]
    reader = imageio_ffmpeg.read_frames(str(path))
    next(reader)
    assert len(list(reader)) == 10
