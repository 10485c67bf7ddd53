"""TensorBoard: a run's scalars by env step, its hyperparameters and its videos, as event files.

``+monitor/observers=tensorboard`` (``conf/monitor/observers/tensorboard.yaml``) adds it to a
run; the files go to ``<run folder>/tensorboard/`` and ``tensorboard --logdir outputs`` shows
every run kept there. Scalars have the MLflow metrics' names and env steps: ``episode/return``,
``episode/length`` and ``episode/mean_return_100`` at each episode's last step,
``eval/mean_return`` and ``eval/std_return``, the learner's ``update/*`` and the agent's
``train/*`` (learning rate, epsilon, steps/s). They are buffered and written every
``flush_every_s`` seconds from the loop's tick and at the end, never per step.

The HParams tab gets the run's params as MLflow records them, and its end status. Each video the
run records (``monitor.video``) becomes an animated GIF in the Images tab, ``video/final`` and
``video/eval`` by env step: torch's ``add_video`` needs moviepy 1, so the GIF is encoded here,
with Pillow, as ``add_video`` would encode it. A resumed run writes its checkpoint's history of
episodes and evaluations first, so its folder holds the whole timeline (its update metrics
from before the resume are not in the checkpoint).
"""

from __future__ import annotations

import io
import itertools
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from twrl_exp.errors import ConfigError
from twrl_exp.monitor.observers import RunContext
from twrl_exp.runner import MonitorBase, Runner

# MLflow's end statuses as the HParams plugin's (which has no "aborted").
_STATUS = {"FINISHED": "STATUS_SUCCESS", "FAILED": "STATUS_FAILURE", "KILLED": "STATUS_FAILURE"}
METRICS = ("eval/mean_return", "episode/mean_return_100", "episode/return")


def _summary_writer() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch's own words: "TensorBoard logging requires ..."
        raise ConfigError(
            'The TensorBoard observer needs the tensorboard package: pip install "twrl-exp'
            '[tensorboard]" (or drop +monitor/observers=tensorboard).'
        ) from exc
    return SummaryWriter


class TensorBoardObserver(MonitorBase):
    """Writes the run to TensorBoard event files in ``run.folder / folder``."""

    def __init__(
        self,
        *,
        run: RunContext,
        folder: str,
        flush_every_s: float,
        hparams: bool,
        video: bool,
        video_max_frames: int,
        video_max_width: int,
    ) -> None:
        self._writer_class = _summary_writer()
        self.run = run
        self.folder = run.folder / folder
        self.flush_every_s, self.hparams = flush_every_s, hparams
        self.show_video = video
        self.video_max_frames, self.video_max_width = video_max_frames, video_max_width
        self.fps = int(run.config.get("monitor", {}).get("video", {}).get("fps", 30))
        self._writer: Any = None
        self._pending: list[tuple[str, float, int]] = []  # (tag, value, env step)
        self._episodes_written = 0
        self._last_flush = time.monotonic()

    # ------------------------------------------------------------------ the Monitor hooks

    def start(self, runner: Runner) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._writer = self._writer_class(log_dir=str(self.folder))
        if self.hparams:
            self._write_hparams()
        h = runner.history  # a resumed run's evaluations (its episodes follow at the next flush)
        for step, mean, std in zip(h.eval_steps, h.eval_means, h.eval_stds, strict=True):
            self._pending += [("eval/mean_return", mean, step), ("eval/std_return", std, step)]

    def update(self, runner: Runner, metrics: dict[str, float]) -> None:
        step = runner.history.env_steps
        self._pending += [(f"update/{k}", v, step) for k, v in metrics.items()]

    def evaluation(self, runner: Runner, returns: np.ndarray) -> None:
        step = runner.history.env_steps
        self._pending += [
            ("eval/mean_return", float(returns.mean()), step),
            ("eval/std_return", float(returns.std()), step),
        ]

    def tick(self, runner: Runner) -> None:
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush(runner)

    def video(self, runner: Runner, path: Path, name: str) -> None:
        if not self.show_video or self._writer is None:
            return
        frames, stride = read_frames(path, self.video_max_frames, self.video_max_width)
        if not frames:
            return
        from torch.utils.tensorboard.summary import Summary

        height, width = frames[0].shape[:2]
        image = Summary.Image(
            height=height,
            width=width,
            colorspace=3,
            encoded_image_string=gif(frames, frame_ms=1000 * stride / max(self.fps, 1)),
        )
        tag = "video/final" if name == "final.mp4" else "video/eval"
        summary = Summary(value=[Summary.Value(tag=tag, image=image)])
        self._writer._get_file_writer().add_summary(summary, runner.history.env_steps)

    def finishing(self, status: str) -> str | None:
        del status
        return f"TensorBoard event files in {self.folder} (tensorboard --logdir {self.folder})"

    def finish(self, runner: Runner, status: str) -> None:
        if self._writer is None:
            return
        self.flush(runner)
        if self.hparams:
            self._write_session_end(status)
        self._writer.close()
        self._writer = None

    # ------------------------------------------------------------------ writing

    def flush(self, runner: Runner) -> None:
        """Write the episodes and rows buffered since the last flush, and the agent's stats:
        one event per env step (an episode's three scalars, an update's metrics), built here
        rather than by ``add_scalar`` (half the cost; TensorBoard's writer checksums every byte
        in Python when TensorFlow is absent)."""
        from torch.utils.tensorboard.summary import Summary

        h = runner.history
        add = self._writer._get_file_writer().add_summary
        for k in range(self._episodes_written, h.episodes):
            values = (
                ("episode/return", h.returns[k]),
                ("episode/length", h.lengths[k]),
                ("episode/mean_return_100", h.trailing[k]),
            )
            add(
                Summary(value=[Summary.Value(tag=t, simple_value=v) for t, v in values]),
                h.end_steps[k],
            )
        self._episodes_written = h.episodes
        stats = runner.agent.stats()
        if h.train_time > 0:
            stats["steps_per_s"] = h.env_steps / h.train_time
        rows, self._pending = self._pending, []
        rows += [(f"train/{k}", v, h.env_steps) for k, v in stats.items()]
        for step, group in itertools.groupby(rows, key=lambda row: row[2]):
            row = [Summary.Value(tag=tag, simple_value=float(value)) for tag, value, _ in group]
            add(Summary(value=row), step)
        self._writer.flush()
        self._last_flush = time.monotonic()

    def _write_hparams(self) -> None:
        from torch.utils.tensorboard.summary import hparams

        values = {k: _hparam(v) for k, v in self.run.params.items()}
        # The metrics' values are not used: hparams() lists their tags, the returns to compare.
        experiment, start, _ = hparams(
            {k: v for k, v in values.items() if v is not None}, dict.fromkeys(METRICS, 0.0)
        )
        writer = self._writer._get_file_writer()
        writer.add_summary(experiment)
        writer.add_summary(start)

    def _write_session_end(self, status: str) -> None:
        from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
        from torch.utils.tensorboard.summary import Summary, SummaryMetadata

        end = plugin_data_pb2.SessionEndInfo(
            status=api_pb2.Status.Value(_STATUS.get(status, "STATUS_UNKNOWN")),
            end_time_secs=int(time.time()),
        )
        content = plugin_data_pb2.HParamsPluginData(version=0, session_end_info=end)
        metadata = SummaryMetadata(
            plugin_data=SummaryMetadata.PluginData(
                plugin_name="hparams", content=content.SerializeToString()
            )
        )
        summary = Summary(
            value=[Summary.Value(tag="_hparams_/session_end_info", metadata=metadata)]
        )
        self._writer._get_file_writer().add_summary(summary)


def _hparam(value: Any) -> bool | int | float | str | None:
    """A param as the HParams plugin takes it: a number, a string or a bool (lists as text)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def read_frames(path: Path, max_frames: int, max_width: int) -> tuple[list[np.ndarray], int]:
    """The RGB frames of the mp4 at ``path``: every ``stride``-th (at most ``max_frames``),
    shrunk by a whole factor to at most ``max_width`` pixels wide; and ``stride``."""
    import imageio_ffmpeg
    from PIL import Image

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    count = meta.get("duration", 0) * meta.get("fps", 0)
    stride = max(1, math.ceil(count / max_frames)) if math.isfinite(count) else 1
    factor = max(1, math.ceil(width / max_width))
    frames: list[np.ndarray] = []
    try:
        for index, raw in enumerate(reader):
            if index % stride or len(frames) >= max_frames:
                continue
            frame = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
            if factor > 1:
                frame = np.asarray(Image.fromarray(frame).reduce(factor))
            frames.append(frame)
    finally:
        reader.close()
    return frames, stride


def gif(frames: list[np.ndarray], *, frame_ms: float) -> bytes:
    """An animated GIF (looping) of RGB ``frames`` ``[H, W, 3]``, ``frame_ms`` each."""
    from PIL import Image

    images = [Image.fromarray(np.ascontiguousarray(f[..., :3])) for f in frames]
    out = io.BytesIO()
    images[0].save(
        out,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(20, round(frame_ms)),
        loop=0,
    )
    return out.getvalue()
