"""Records a run in MLflow: params, batched metrics, summary figures, config, model, checkpoints.

Metrics use env steps as MLflow's step, so the UI's charts are learning curves. They are
buffered and written with ``log_batch`` at most every ``flush_every_s`` seconds (a single
metric write costs milliseconds on SQLite: per-step logging would dominate training).
"""

from __future__ import annotations

import getpass
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from twrl_exp.runner import MonitorBase, Runner

_BATCH = 1000
_PARAM_BATCH = 100

logging.getLogger("alembic").setLevel(logging.WARNING)
logging.getLogger("mlflow").setLevel(logging.WARNING)


def default_artifact_root(tracking_uri: str) -> str | None:
    """``<dir of mlflow.db>/mlruns`` for a SQLite store, so artifacts sit beside the database."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return (db.parent / "mlruns").as_uri()
    return None


def ensure_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created (tolerating a concurrent creator) if missing."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=default_artifact_root(tracking_uri))
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


class MlflowMonitor(MonitorBase):
    """One MLflow run per training run (or the resumed run's own, when ``run_id`` is given)."""

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
        flush_every_s: float = 5.0,
        run_id: str | None = None,
    ) -> None:
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = tracking_uri
        self.experiment, self.run_name = experiment, run_name
        self.params, self.tags, self.config_yaml = params, tags, config_yaml
        self.log_model, self.flush_every_s = log_model, flush_every_s
        self.curve = curve
        self.run_id = run_id
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> str:
        """Create (or reopen) the run and write its params, tags and config. Returns its id."""
        if self.run_id is not None:
            self.client.update_run(self.run_id, status="RUNNING")
            return self.run_id
        experiment_id = ensure_experiment(self.client, self.experiment, self.tracking_uri)
        tags = {
            "mlflow.runName": self.run_name,
            "mlflow.user": getpass.getuser(),
            "mlflow.source.type": "LOCAL",
            "mlflow.source.name": "train.py",
            **self.tags,
        }
        run = self.client.create_run(experiment_id, run_name=self.run_name, tags=tags)
        self.run_id = run.info.run_id
        items = [Param(k, _param_text(v)) for k, v in self.params.items()]
        for i in range(0, len(items), _PARAM_BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + _PARAM_BATCH])
        self.client.log_text(self.run_id, self.config_yaml, "config.yaml")
        return self.run_id

    def finish(self, runner: Runner, status: str) -> None:
        assert self.run_id is not None
        self._add_stats(runner)
        summary = runner.history.summary(runner.solve_window)
        if runner.history.train_time > 0:
            summary["steps_per_s"] = runner.history.env_steps / runner.history.train_time
        now = _now_ms()
        self._pending += [Metric(k, float(v), now, 0) for k, v in summary.items()]
        self.flush()
        if self.log_model:
            self._log_agent(runner)
        if self.curve:
            self._log_curve(runner)
        self.client.set_terminated(self.run_id, status)

    def set_tag(self, key: str, value: str) -> None:
        assert self.run_id is not None
        self.client.set_tag(self.run_id, key, value)

    # ------------------------------------------------------------------ events

    def episodes(self, runner: Runner, first: int) -> None:
        h = runner.history
        for k in range(first, h.episodes):
            ts, step = _now_ms(), h.end_steps[k]
            self._pending += [
                Metric("episode/return", h.returns[k], ts, step),
                Metric("episode/length", float(h.lengths[k]), ts, step),
                Metric("episode/mean_return_100", h.trailing[k], ts, step),
            ]

    def update(self, runner: Runner, metrics: dict[str, float]) -> None:
        ts, step = _now_ms(), runner.history.env_steps
        self._pending += [Metric(f"update/{k}", float(v), ts, step) for k, v in metrics.items()]

    def evaluation(self, runner: Runner, returns: np.ndarray) -> None:
        ts, step = _now_ms(), runner.history.env_steps
        self._pending += [
            Metric("eval/mean_return", float(returns.mean()), ts, step),
            Metric("eval/std_return", float(returns.std()), ts, step),
        ]

    def tick(self, runner: Runner) -> None:
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self._add_stats(runner)
            self.flush()

    # ------------------------------------------------------------------ writing

    def _add_stats(self, runner: Runner) -> None:
        h = runner.history
        ts, step = _now_ms(), h.env_steps
        stats = runner.agent.stats()
        if h.train_time > 0:
            stats["steps_per_s"] = h.env_steps / h.train_time
        self._pending += [Metric(f"train/{k}", float(v), ts, step) for k, v in stats.items()]

    def flush(self) -> None:
        assert self.run_id is not None
        while self._pending:  # a chunk leaves the queue only once it is written
            chunk = self._pending[:_BATCH]
            self.client.log_batch(self.run_id, metrics=chunk)
            del self._pending[: len(chunk)]
        self._last_flush = time.monotonic()

    def log_video(self, path: Path, name: str) -> None:
        assert self.run_id is not None
        self.client.log_artifact(self.run_id, str(path), "videos")

    def _log_curve(self, runner: Runner) -> None:
        from twrl_exp.monitor.curves import plot_learning_curve  # matplotlib: only when used

        assert self.run_id is not None
        with tempfile.TemporaryDirectory() as tmp:
            path = plot_learning_curve(
                runner.history,
                Path(tmp) / "learning_curve.png",
                title=self.run_name,
                threshold=runner.reward_threshold,
                window=runner.solve_window,
            )
            self.client.log_artifact(self.run_id, str(path))

    def log_checkpoint(self, path: Path) -> None:
        assert self.run_id is not None
        self.client.log_artifact(self.run_id, str(path), "checkpoints")

    def _log_agent(self, runner: Runner) -> None:
        assert self.run_id is not None
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "model"
            folder.mkdir()
            agent_state = runner.agent.state_dict()
            torch.save(
                {"model": agent_state["model"], "policy": agent_state["policy"]},
                folder / "agent.pt",
            )
            (folder / "config.yaml").write_text(self.config_yaml)
            (folder / "README.md").write_text(
                "Trained agent: `twrl_exp.train.load_agent(run_id)` rebuilds it from "
                "config.yaml and agent.pt (model and policy weights).\n"
            )
            self.client.log_artifacts(self.run_id, str(folder), "model")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _param_text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."
