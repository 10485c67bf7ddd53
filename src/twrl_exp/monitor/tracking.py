"""Records a run in MLflow: params, batched metrics, summary figures, config, model, checkpoints.

Metrics use env steps as MLflow's step, so the UI's charts are learning curves. They are
buffered and handed every ``flush_every_s`` seconds to this process's writer process
(:mod:`twrl_exp.monitor.writer`), which writes them with ``log_batch`` on another core, as it
uploads checkpoints and videos and samples system metrics: the training loop only pays for
building the rows and one pipe write. A killed run loses at most the rows of its last interval.

The record's guarantees: the run carries liveness tags and a heartbeat (so a killed process's run
is marked FAILED by the next process that opens the store); it always ends in a terminal state
with ``twrl.end_reason`` saying why it did not finish; checkpoints alternate between two
artifact slots and the tag ``twrl.checkpoint`` names the last complete one with its SHA-256; and
a resumed run is one consistent timeline (see :meth:`MlflowMonitor.open`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Param
from mlflow.exceptions import MlflowException

from twrl_exp import serialization, store
from twrl_exp.errors import ConfigError, RecordingError
from twrl_exp.monitor import writer
from twrl_exp.monitor.links import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
from twrl_exp.runner import MonitorBase, Runner

_PARAM_BATCH = 100
CHECKPOINT_TAG = "twrl.checkpoint"
RESUMED_FROM_TAG = "twrl.resumed_from"
SUPERSEDED_TAG = "twrl.superseded_by"
# Series a resumed run rebuilds from its checkpoint's history rather than copying.
_REBUILT = ("episode/", "eval/", "evaluate/", "system/")


def default_artifact_root(tracking_uri: str) -> str | None:
    """``<dir of mlflow.db>/mlruns`` for a SQLite store, so artifacts sit beside the database."""
    db = store.sqlite_path(tracking_uri)
    return None if db is None else (db.parent / "mlruns").as_uri()


def ensure_experiment(client: Any, name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created (tolerating a concurrent creator) if missing."""
    found = client.get_experiment_by_name(name)
    if found is None:
        with contextlib.suppress(MlflowException):  # a concurrent creator may win
            client.create_experiment(
                name,
                artifact_location=default_artifact_root(tracking_uri),
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
            )
        found = client.get_experiment_by_name(name)
        if found is None:
            raise ConfigError(f"The MLflow experiment {name!r} could not be created.")
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    if EXPERIMENT_KIND_TAG not in found.tags:  # stores made before: open as model training too
        client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return str(found.experiment_id)


_first_line = store.root_cause


class MlflowMonitor(MonitorBase):
    """One MLflow run per training run; ``resumed_from`` names the run a resume continues."""

    def __init__(
        self,
        *,
        tracking_uri: str,
        experiment: str,
        run_name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        config_yaml: str,
        log_model: bool = True,
        curve: bool = True,
        flush_every_s: float = 1.0,
        resumed_from: str | None = None,
        system_metrics: bool = False,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment, self.run_name = experiment, run_name
        self.params, self.tags, self.config_yaml = params, tags, config_yaml
        self.log_model, self.flush_every_s = log_model, flush_every_s
        self.curve = curve
        self.resumed_from = resumed_from
        self.system_metrics = system_metrics
        self.client: Any = None
        self.run_id: str | None = None
        self._pending: list[writer.Row] = []  # rows not yet handed to the writer
        # Started now, so that its start-up overlaps the building of the run.
        self._writer = writer.shared()
        self._last_flush = time.monotonic()
        self._heartbeat: store.Heartbeat | None = None
        self._slot = 0
        self.experiment_id = ""
        self.artifact_uri = ""
        # What the end-of-run report points to: label -> artifact path.
        self.logged: dict[str, str] = {}
        self.model_uri: str | None = None
        self.objective: float | None = None  # what the run returns to a sweep

    # ------------------------------------------------------------------ lifecycle

    def open(self, runner: Runner) -> str:
        """Create the run, write its params, tags and config, start its heartbeat.

        A resume (``resumed_from``) creates a new run that continues the old one's timeline:
        episodes and evaluations come from the checkpoint's history, other series are copied up
        to the checkpoint's env step, and the old run, whose record after the checkpoint belongs
        to a dead timeline, is tagged ``twrl.superseded_by`` and deleted (recoverable with
        ``mlflow runs restore``).
        """
        # Artifact uploads print a tqdm bar per file in MLflow 3; a run's terminal has its own.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.client = store.open_client(self.tracking_uri)
        experiment_id = ensure_experiment(self.client, self.experiment, self.tracking_uri)
        tags = {
            "mlflow.runName": self.run_name,
            "mlflow.user": getpass.getuser(),
            "mlflow.source.type": "LOCAL",
            "mlflow.source.name": "train.py",
            **store.liveness_tags(),
            **self.tags,
        }
        if self.resumed_from:
            tags[RESUMED_FROM_TAG] = self.resumed_from
        run = self.client.create_run(experiment_id, run_name=self.run_name, tags=tags)
        self.run_id = run.info.run_id
        self.experiment_id, self.artifact_uri = experiment_id, run.info.artifact_uri
        self._heartbeat = store.run_heartbeat(self.client, self.run_id)
        if self.system_metrics:  # MLflow's sampler, every 10 s: the run's System metrics tab
            self._writer.system(self.tracking_uri, self.run_id, True)
        items = [Param(k, _param_text(v)) for k, v in self.params.items()]
        for i in range(0, len(items), _PARAM_BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + _PARAM_BATCH])
        self.client.log_text(self.run_id, self.config_yaml, "config.yaml")
        if self.resumed_from:
            self._continue_timeline(runner, self.resumed_from)
        return self.run_id

    def _continue_timeline(self, runner: Runner, old_id: str) -> None:
        assert self.run_id is not None
        h = runner.history
        old = self.client.get_run(old_id)
        for key in old.data.metrics:
            if "/" not in key or key.startswith(_REBUILT):
                continue  # summary figures are recomputed; rebuilt series come from history
            rows = self.client.get_metric_history(old_id, key)
            self._pending += [
                (m.key, m.value, m.timestamp, m.step) for m in rows if m.step <= h.env_steps
            ]
        if h.episodes:
            self.episodes(runner, 0)
        for step, mean, std in zip(h.eval_steps, h.eval_means, h.eval_stds, strict=True):
            self._pending += [
                ("eval/mean_return", mean, _now_ms(), step),
                ("eval/std_return", std, _now_ms(), step),
            ]
        self.flush()
        self._copy_videos(old_id, h.env_steps)
        self.client.set_tag(old_id, SUPERSEDED_TAG, self.run_id)
        self.client.delete_run(old_id)

    def _copy_videos(self, old_id: str, until_step: int) -> None:
        try:
            items = self.client.list_artifacts(old_id, "videos")
        except (MlflowException, OSError):
            return
        with tempfile.TemporaryDirectory() as tmp:
            for item in items:
                name = Path(item.path).name
                if not name.startswith("eval_") or int(name[5:].split(".")[0]) > until_step:
                    continue
                local = self.client.download_artifacts(old_id, item.path, tmp)
                self.client.log_artifact(self.run_id, local, "videos")

    def finishing(self, status: str) -> str | None:
        del status
        return "writing the last metrics, the model and the learning curve to MLflow"

    def finish(self, runner: Runner, status: str, reason: str | None = None) -> None:
        """Write what is left and end the run as ``status`` (FAILED if writing fails).

        Raises :class:`RecordingError` when part of the record could not be written; the run is
        then marked FAILED if the store still accepts that, and otherwise by the next process
        that opens the store (its heartbeat has stopped).
        """
        assert self.run_id is not None
        problems: list[str] = []
        try:
            self._add_stats(runner)
            summary = runner.history.summary(runner.solve_window)
            if runner.history.train_time > 0:
                summary["steps_per_s"] = runner.history.env_steps / runner.history.train_time
            if self.objective is not None and math.isfinite(self.objective):
                summary["objective"] = self.objective
            now = _now_ms()
            self._pending += [(k, float(v), now, 0) for k, v in summary.items()]
            self._hand_over()
            if self.system_metrics:
                self._stop_system_metrics()
            if self.curve:  # drawn and uploaded by the writer while the model is written here
                self._log_curve(runner)
        except RecordingError as exc:
            problems.append(str(exc))
        if self.log_model and runner.parameters_finite() and not problems:
            try:
                self._log_agent(runner)
            except Exception as exc:
                problems.append(f"the model could not be logged ({_first_line(exc)})")
        try:
            self.flush()  # every row, upload and the curve are in the store
        except RecordingError as exc:
            problems.append(str(exc))
        if problems and reason and problems[0] in reason:  # the very error that ended the run
            problems[0] = "the rest of its metrics are lost"
        if problems:
            status = "FAILED"
            reason = "; ".join([*([reason] if reason else []), *problems])
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self.system_metrics:
            self._stop_system_metrics()  # if an error came first
        try:
            if reason:
                self.client.set_tag(self.run_id, store.END_REASON_TAG, reason[:5000])
            self.client.set_terminated(self.run_id, status)
        except Exception as exc:
            problems.append(f"its end could not be written ({_first_line(exc)})")
        if problems:
            raise RecordingError(
                f"MLflow run {self.run_id} in {self.tracking_uri} is incomplete: "
                + "; ".join(problems)
                + "."
            )

    def set_tag(self, key: str, value: str) -> None:
        assert self.run_id is not None
        self.client.set_tag(self.run_id, key, value)

    # ------------------------------------------------------------------ events

    def episodes(self, runner: Runner, first: int) -> None:
        h = runner.history
        for k in range(first, h.episodes):
            ts, step = _now_ms(), h.end_steps[k]
            self._pending += [
                ("episode/return", float(h.returns[k]), ts, step),
                ("episode/length", float(h.lengths[k]), ts, step),
                ("episode/mean_return_100", float(h.trailing[k]), ts, step),
            ]

    def update(self, runner: Runner, metrics: dict[str, float]) -> None:
        ts, step = _now_ms(), runner.history.env_steps
        self._pending += [(f"update/{k}", float(v), ts, step) for k, v in metrics.items()]

    def evaluation(self, runner: Runner, returns: np.ndarray) -> None:
        ts, step = _now_ms(), runner.history.env_steps
        self._pending += [
            ("eval/mean_return", float(returns.mean()), ts, step),
            ("eval/std_return", float(returns.std()), ts, step),
        ]

    def tick(self, runner: Runner) -> None:
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self._add_stats(runner)
            self._hand_over()

    # ------------------------------------------------------------------ writing

    def _add_stats(self, runner: Runner) -> None:
        h = runner.history
        ts, step = _now_ms(), h.env_steps
        stats = runner.agent.stats()
        if h.train_time > 0:
            stats["steps_per_s"] = h.env_steps / h.train_time
        self._pending += [(f"train/{k}", float(v), ts, step) for k, v in stats.items()]

    def _hand_over(self, wait: bool = False) -> None:
        """Give the buffered rows to the writer (with ``wait``, return once everything handed
        over so far is written); :class:`RecordingError` if the store refused any of it."""
        assert self.run_id is not None
        try:
            rows, self._pending = self._pending, []
            self._writer.rows(self.tracking_uri, self.run_id, rows)
            if wait:
                self._writer.sync(self.run_id)
        except writer.WriterError as exc:
            raise RecordingError(
                f"MLflow could not write to run {self.run_id} in {self.tracking_uri} ({exc})"
            ) from exc
        self._last_flush = time.monotonic()

    def flush(self) -> None:
        """Write the buffered metrics and wait until all handed over is in the store."""
        self._hand_over(wait=True)

    def _stop_system_metrics(self) -> None:
        assert self.run_id is not None
        with contextlib.suppress(writer.WriterError):  # the writer is gone: so is its sampler
            self._writer.system(self.tracking_uri, self.run_id, False)

    def _upload(self, path: Path, artifact_dir: str, tag: tuple[str, str] | None = None) -> None:
        """Hand a copy of ``path`` to the writer for upload (then ``tag``); the caller may
        delete ``path`` at once."""
        assert self.run_id is not None
        staged_dir = Path(tempfile.mkdtemp(prefix="twrl-upload-"))
        staged = staged_dir / path.name
        shutil.copyfile(path, staged)
        try:
            self._writer.upload(
                self.tracking_uri, self.run_id, staged, artifact_dir, tag=tag, remove=staged_dir
            )
        except writer.WriterError as exc:
            shutil.rmtree(staged_dir, ignore_errors=True)
            raise RecordingError(
                f"MLflow could not write to run {self.run_id} in {self.tracking_uri} ({exc})"
            ) from exc

    def log_video(self, path: Path, name: str) -> None:
        self._upload(path, "videos")
        self.logged["video"] = f"videos/{path.name}"

    def _log_curve(self, runner: Runner) -> None:
        """The writer draws the learning curve (matplotlib lives in its process) and uploads it."""
        assert self.run_id is not None
        try:
            self._writer.curve(
                self.tracking_uri,
                self.run_id,
                dataclasses.asdict(runner.history),
                title=self.run_name,
                threshold=runner.reward_threshold,
                window=runner.solve_window,
                eval_label=runner.eval_label,
            )
        except writer.WriterError as exc:
            raise RecordingError(
                f"MLflow could not write to run {self.run_id} in {self.tracking_uri} ({exc})"
            ) from exc
        self.logged["curve"] = "learning_curve.png"

    def log_checkpoint(self, path: Path, env_steps: int) -> None:
        """Upload to the slot not named by ``twrl.checkpoint``, then point the tag at it: a
        process killed mid-upload leaves the previous checkpoint intact and named."""
        assert self.run_id is not None
        name = f"checkpoint-{self._slot}.pt"
        self._slot = 1 - self._slot
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / name
            shutil.copyfile(path, staged)
            digest = serialization.sha256(staged)
            record = {"path": f"checkpoints/{name}", "sha256": digest, "env_steps": env_steps}
            # The writer uploads it, then points the tag at it.
            self._upload(staged, "checkpoints", (CHECKPOINT_TAG, json.dumps(record)))

    def _log_agent(self, runner: Runner) -> None:
        assert self.run_id is not None
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "model"
            folder.mkdir()
            agent_state = runner.agent.state_dict()
            serialization.save(
                {"model": agent_state["model"], "policy": agent_state["policy"]},
                folder / "agent.pt",
            )
            (folder / "config.yaml").write_text(self.config_yaml)
            (folder / "README.md").write_text(
                "Trained agent: `twrl_exp.artifacts.load_agent(run_id)` rebuilds it from "
                "config.yaml and agent.pt (model and policy weights; tensors only).\n"
            )
            self.client.log_artifacts(self.run_id, str(folder), "model")
            self.logged["model"] = "model"
            from twrl_exp.mlflow_model import log_agent_model

            space = runner.env.single_observation_space
            self.model_uri = log_agent_model(
                self.tracking_uri,
                self.experiment_id,
                self.run_id,
                folder,
                tuple(space.shape or ()),
            )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _param_text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."
