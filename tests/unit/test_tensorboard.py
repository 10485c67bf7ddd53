"""The TensorBoard observer, driven through the Monitor hooks with synthetic episodes,
evaluations, updates and a video, and read back from its event files."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from twrl_exp.errors import ConfigError
from twrl_exp.monitor import tensorboard
from twrl_exp.monitor.observers import RunContext, VideoObserver
from twrl_exp.monitor.tensorboard import TensorBoardObserver
from twrl_exp.runner import History

OPTIONS = {
    "folder": "tensorboard",
    "flush_every_s": 0.0,  # every tick writes
    "hparams": True,
    "video": True,
    "video_max_frames": 300,
    "video_max_width": 320,
}


def context(folder: Path) -> RunContext:
    return RunContext(
        folder=folder,
        name="s0 reinforce/categorical/mlp CartPole-v1",
        env_id="CartPole-v1",
        seed=0,
        config={"monitor": {"video": {"fps": 25}}},
        params={"update.lr": 0.005, "update.name": "reinforce", "model.hidden_sizes": [64, 64]},
    )


def fake_runner() -> SimpleNamespace:
    return SimpleNamespace(history=History(), agent=SimpleNamespace(stats=lambda: {"lr": 0.005}))


def end_episodes(runner: SimpleNamespace, returns: list[float], steps: list[int]) -> None:
    h = runner.history
    for ret, step in zip(returns, steps, strict=True):
        h.returns.append(ret)
        h.lengths.append(int(ret))
        h.end_steps.append(step)
        h.trailing.append(float(np.mean(h.returns[-100:])))
    h.env_steps = steps[-1]


def read(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def points(events: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, pytest.approx(e.value)) for e in events.Scalars(tag)]


def test_scalars_by_env_step_hparams_and_video(tmp_path: Path, monkeypatch) -> None:
    frames = [np.full((40, 64, 3), i * 10, np.uint8) for i in range(12)]
    monkeypatch.setattr(tensorboard, "read_frames", lambda path, n, width: (frames, 2))
    observer = TensorBoardObserver(run=context(tmp_path), **OPTIONS)
    assert isinstance(observer, VideoObserver)
    runner = fake_runner()
    observer.start(runner)
    end_episodes(runner, [10.0, 12.0], [40, 57])
    observer.episodes(runner, 0)
    observer.update(runner, {"loss": 0.5, "grad_norm": 2.0})
    observer.tick(runner)
    end_episodes(runner, [30.0], [100])
    runner.history.env_steps = 120
    observer.evaluation(runner, np.array([20.0, 40.0]))
    observer.video(runner, tmp_path / "eval_000000120.mp4", "eval_000000120.mp4")
    runner.history.env_steps = 130
    observer.video(runner, tmp_path / "final.mp4", "final.mp4")
    observer.finish(runner, "FINISHED")

    events = read(tmp_path / "tensorboard")
    assert points(events, "episode/return") == [(40, 10.0), (57, 12.0), (100, 30.0)]
    assert points(events, "episode/length") == [(40, 10), (57, 12), (100, 30)]
    assert points(events, "episode/mean_return_100") == [(40, 10.0), (57, 11.0), (100, 52 / 3)]
    assert points(events, "eval/mean_return") == [(120, 30.0)]
    assert points(events, "eval/std_return") == [(120, 10.0)]
    assert points(events, "update/loss") == [(57, 0.5)]
    assert points(events, "update/grad_norm") == [(57, 2.0)]
    assert [step for step, _ in points(events, "train/lr")] == [57, 130]
    (evaluation,) = events.Images("video/eval")
    (final,) = events.Images("video/final")
    assert (evaluation.step, final.step) == (120, 130)
    assert (final.width, final.height) == (64, 40)
    assert final.encoded_image_string.startswith(b"GIF89a")

    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["update.lr"].number_value == pytest.approx(0.005)
    assert hparams["update.name"].string_value == "reinforce"
    assert hparams["model.hidden_sizes"].string_value == "[64, 64]"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metrics = [m.name.tag for m in experiment.experiment.metric_infos]
    assert "eval/mean_return" in metrics
    end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"])
    assert end.session_end_info.status == api_pb2.Status.Value("STATUS_SUCCESS")


def test_a_resumed_run_writes_its_history_first(tmp_path: Path) -> None:
    runner = fake_runner()
    end_episodes(runner, [9.0, 11.0], [30, 60])
    h = runner.history
    h.eval_steps, h.eval_means, h.eval_stds = [50], [25.0], [1.0]
    observer = TensorBoardObserver(run=context(tmp_path), **{**OPTIONS, "hparams": False})
    observer.start(runner)
    end_episodes(runner, [14.0], [90])
    observer.finish(runner, "FAILED")
    events = read(tmp_path / "tensorboard")
    assert points(events, "episode/return") == [(30, 9.0), (60, 11.0), (90, 14.0)]
    assert points(events, "eval/mean_return") == [(50, 25.0)]
    with pytest.raises(KeyError):  # hparams=false
        events.PluginTagToContent("hparams")
    assert events.Tags()["images"] == []


def test_scalars_wait_for_the_flush_interval(tmp_path: Path) -> None:
    """Off the hot path: a tick within flush_every_s writes nothing; the end writes it all."""
    observer = TensorBoardObserver(run=context(tmp_path), **{**OPTIONS, "flush_every_s": 3600})
    runner = fake_runner()
    observer.start(runner)
    end_episodes(runner, [10.0], [40])
    observer.tick(runner)
    assert observer._episodes_written == 0
    observer.finish(runner, "KILLED")
    assert points(read(tmp_path / "tensorboard"), "episode/return") == [(40, 10.0)]


def test_without_tensorboard_one_sentence_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError) as refused:
        TensorBoardObserver(run=context(tmp_path), **OPTIONS)
    assert 'pip install "twrl-exp[tensorboard]"' in str(refused.value)
    assert not (tmp_path / "tensorboard").exists()


def test_gif_frames_play_in_order() -> None:
    from PIL import Image, ImageSequence

    frames = [np.full((8, 10, 3), value, np.uint8) for value in (0, 120, 250)]
    image = Image.open(__import__("io").BytesIO(tensorboard.gif(frames, frame_ms=40)))
    shown = [np.asarray(f.convert("RGB"))[0, 0, 0] for f in ImageSequence.Iterator(image)]
    assert shown == [0, 120, 250]
    assert image.info["duration"] == 40
