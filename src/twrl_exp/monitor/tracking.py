"""Records a run in MLflow: params, batched metrics, summary figures, config, model, checkpoints.

The training process does not import MLflow: this process's writer process
(:mod:`twrl_exp.monitor.writer`) creates the run, and is handed its metric rows every
``flush_every_s`` seconds, its checkpoints, videos, tags, curve and model, on another core; the
training loop only pays for building the rows and one pipe write. A killed run loses at most
the rows of its last interval. Metrics use env steps as MLflow's step, so the UI's charts are
learning curves.

The record's guarantees: the run carries liveness tags and a heartbeat (so a killed process's run
is marked FAILED by the next process that opens the store); it always ends in a terminal state
with ``twrl.end_reason`` saying why it did not finish; checkpoints alternate between two
artifact slots and the tag ``twrl.checkpoint`` names the last complete one with its SHA-256; and
a resumed run is one consistent timeline (see :meth:`MlflowMonitor.open`).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import math
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from twrl_exp import serialization, store
from twrl_exp.errors import ConfigError, RecordingError
from twrl_exp.identity import RECORD_TAG, record_digest
from twrl_exp.mlflow_model import OBSERVATION_DTYPE
from twrl_exp.monitor import writer
from twrl_exp.monitor.writer import default_artifact_root, ensure_experiment
from twrl_exp.runner import MonitorBase, Runner

__all__ = ["MlflowMonitor", "default_artifact_root", "ensure_experiment"]
RESUMED_FROM_TAG = "twrl.resumed_from"
SUPERSEDED_TAG = "twrl.superseded_by"
# Series a resumed run rebuilds from its checkpoint's history rather than copying.
_REBUILT = ("episode/", "eval/", "evaluate/", "system/")


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
        self._curve_drawn: tuple[int, int] | None = None  # (episodes, evaluations) it showed
        self.resumed_from = resumed_from
        self.system_metrics = system_metrics
        self.client: Any = None
        self.run_id: str | None = None
        self._pending: list[writer.Row] = []  # rows not yet handed to the writer
        self._writer = writer.shared()
        self._handle: int | None = None
        self._problems: list[str] = []  # what failed before finish, said when it ends the run
        self._disk_full: store.DiskFullError | None = None  # the first full disk it met
        self._last_flush = time.monotonic()
        self._slot = 0
        self.experiment_id = ""
        self.artifact_uri = ""
        # What the end-of-run report points to: label -> artifact path.
        self.logged: dict[str, str] = {}
        self.model_uri: str | None = None
        # What the run returns to a sweep: one value, or a multi-objective sweep's values by name
        # (logged as ``objective.<name>``).
        self.objective: float | dict[str, float] | None = None

    # ------------------------------------------------------------------ lifecycle

    def open(self, runner: Runner) -> str:
        """Create the run, write its params, tags and config, start its heartbeat.

        A resume (``resumed_from``) creates a new run that continues the old one's timeline:
        episodes and evaluations come from the checkpoint's history, other series are copied up
        to the checkpoint's env step, and the old run, whose record after the checkpoint belongs
        to a dead timeline, is tagged ``twrl.superseded_by`` and deleted (recoverable with
        ``mlflow runs restore``); a FINISHED run, a complete result, is tagged and kept.
        """
        self.request()
        assert self._handle is not None
        try:
            info = self._writer.opened(self._handle)
        except writer.WriterError as exc:
            raise self._failure(exc, "create the run") from exc
        self._handle = None
        self.run_id = info["run_id"]
        if info["error"] is not None:
            if info["config_error"]:
                raise ConfigError(info["error"])
            raise self._failure(info["error"], "create the run")
        self.experiment_id, self.artifact_uri = info["experiment_id"], info["artifact_uri"]
        if self.resumed_from:
            self._continue_timeline(runner, self.resumed_from)
        return str(self.run_id)

    def created(self) -> bool:
        """Whether the run exists in the store (waiting for a requested one to be created)."""
        if self.run_id is None and self._handle is not None:
            with contextlib.suppress(writer.WriterError):
                self.run_id = self._writer.opened(self._handle)["run_id"]
            self._handle = None
        return self.run_id is not None

    @property
    def _uri_text(self) -> str:
        return store.redact(self.tracking_uri)

    def _failure(self, problem: BaseException | str, doing: str = "") -> RecordingError:
        """What a job the writer could not do means for the run: a full disk is said as such
        (which disk, its free space, and the run to resume), anything else in the store's words."""
        doing = doing or f"write to run {self.run_id}"
        text = str(problem)
        if store.is_disk_full(problem):
            named = re.search(r"No space left on device: '([^']+)'", text)
            db = store.sqlite_path(self.tracking_uri)
            if named is not None:
                error = store.DiskFullError("the MLflow artifacts", Path(named.group(1)).parent)
            elif db is not None:
                error = store.DiskFullError("the MLflow store", db)
            else:
                error = None
            if error is not None:
                error.run_id = self.run_id
                self._disk_full = self._disk_full or error
                return error
        if "malformed" in text or "not a database" in text:  # damage: said with its repair
            return RecordingError(
                f"MLflow could not {doing}: the store {self._uri_text} is damaged (SQLite says: "
                f"{text}); salvage it with `python -m twrl_exp.store repair {self._uri_text}` "
                "or restore it from a backup"
            )
        return RecordingError(f"MLflow could not {doing} in {self._uri_text} ({text})")

    def request(self) -> None:
        """Ask the writer for the run now (:meth:`open` waits for it): call as soon as the run
        is sure to start, so its creation overlaps what comes before the first step."""
        if self._handle is not None or self.run_id is not None:
            return
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
        try:
            self._handle = self._writer.open(
                self.tracking_uri,
                experiment=self.experiment,
                run_name=self.run_name,
                tags=tags,
                params={k: _param_text(v) for k, v in self.params.items()},
                config_yaml=self.config_yaml,
                system_metrics=self.system_metrics,  # MLflow's sampler: the System metrics tab
                curve=self.curve,
                model=self.log_model,
            )
        except writer.WriterError as exc:
            raise self._failure(exc, "create the run") from exc

    def _continue_timeline(self, runner: Runner, old_id: str) -> None:
        assert self.run_id is not None
        self.client = store.open_client(self.tracking_uri)  # a resume reads the old run here
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
        if old.info.status != "FINISHED":  # a finished run is a result of its own: it stays
            self.client.delete_run(old_id)

    def _copy_videos(self, old_id: str, until_step: int) -> None:
        from mlflow.exceptions import MlflowException

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
        problems: list[str] = self._problems
        try:
            self._add_stats(runner)
            summary = runner.history.summary(runner.solve_window)
            if runner.history.train_time > 0:
                summary["steps_per_s"] = runner.history.env_steps / runner.history.train_time
            found = self.objective
            for key, value in (
                {f"objective.{k}": v for k, v in found.items()}
                if isinstance(found, dict)
                else {"objective": found}
            ).items():
                if value is not None and math.isfinite(value):
                    summary[key] = value
            now = _now_ms()
            self._pending += [(k, float(v), now, 0) for k, v in summary.items()]
            self._hand_over()
            if self.curve and self._curve_drawn != _curve_points(runner):
                self._log_curve(runner)  # not drawn when training ended, or there is more now
            if self.log_model and "model" not in self.logged and runner.parameters_finite():
                self._log_agent(runner)  # not handed over when training ended (it did not)
            self.flush()  # every row, upload, the curve and the model are in the store
            if self.log_model and "model" in self.logged:
                self.model_uri = self._writer.result(self.run_id, "model")
        except RecordingError as exc:
            problems.append(getattr(exc, "end_reason", str(exc)))
        if self.model_uri is None:
            self.logged.pop("model", None)
        if status == "FINISHED" and not problems:
            try:  # what twrl-certify checks the record against (taken now, as it ends)
                self.set_tag(RECORD_TAG, _record_digest(runner, self.config_yaml))
            except RecordingError as exc:
                problems.append(getattr(exc, "end_reason", str(exc)))
        if problems and reason and problems[0] in reason:  # the very error that ended the run
            problems[0] = "the rest of its metrics are lost"
        if problems:
            status = "FAILED"
            reason = "; ".join([*([reason] if reason else []), *problems])
        try:
            self._writer.end(self.tracking_uri, self.run_id, status, reason)
            self._writer.sync(self.run_id)
        except writer.WriterError as exc:
            failure = self._failure(exc)
            if not problems or not self._end_here(status, reason):
                problems.append(f"its end could not be written ({exc})")
            if isinstance(failure, store.DiskFullError):  # said as the full disk it is
                raise failure from exc
        if self._disk_full is not None and problems:
            raise self._disk_full
        if problems:
            raise RecordingError(
                f"MLflow run {self.run_id} in {self._uri_text} is incomplete: "
                + "; ".join(problems)
                + "."
            )

    def _end_here(self, status: str, reason: str | None) -> bool:
        """End the run from this process (the writer failed or is gone); whether it could."""
        assert self.run_id is not None
        try:
            client = store.open_client(self.tracking_uri)
            if reason:
                client.set_tag(self.run_id, store.END_REASON_TAG, reason[:5000])
            client.set_terminated(self.run_id, status)
        except Exception:  # a full disk: written in place, if at all
            return store.end_in_place(self.tracking_uri, self.run_id, status, reason) == "ended"
        return True

    def set_tag(self, key: str, value: str) -> None:
        assert self.run_id is not None
        try:
            self._writer.set_tag(self.tracking_uri, self.run_id, key, value)
        except writer.WriterError as exc:
            raise self._failure(exc) from exc

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

    def trained(self, runner: Runner) -> None:
        """Hand the learning curve and the final model to the writer now: they are drawn and
        logged (on two cores) during the final evaluation and video, not after them; the curve
        is drawn again at the end only if the final evaluation added to it. A failure here
        fails the run when it finishes."""
        try:
            if self.curve:
                self._log_curve(runner)
            if self.log_model:
                self._log_agent(runner)
        except RecordingError as exc:
            self._problems.append(getattr(exc, "end_reason", str(exc)))

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
            raise self._failure(exc) from exc
        self._last_flush = time.monotonic()

    def flush(self) -> None:
        """Write the buffered metrics and wait until all handed over is in the store."""
        self._hand_over(wait=True)

    def _upload(self, path: Path, artifact_dir: str, tag: tuple[str, str] | None = None) -> None:
        """Hand a copy of ``path`` to the writer for upload (then ``tag``); the caller may
        delete ``path`` at once."""
        assert self.run_id is not None
        staged_dir = Path(tempfile.mkdtemp(prefix="twrl-upload-"))
        staged = staged_dir / path.name
        try:
            shutil.copyfile(path, staged)
        except OSError as exc:
            shutil.rmtree(staged_dir, ignore_errors=True)
            raise _temporary_failure(exc) from exc
        try:
            self._writer.upload(
                self.tracking_uri, self.run_id, staged, artifact_dir, tag=tag, remove=staged_dir
            )
        except writer.WriterError as exc:
            shutil.rmtree(staged_dir, ignore_errors=True)
            raise self._failure(exc) from exc

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
                runner.history.as_dict(),  # pickled at once: no copies needed
                title=self.run_name,
                threshold=runner.reward_threshold,
                window=runner.solve_window,
                eval_label=runner.eval_label,
            )
        except writer.WriterError as exc:
            raise self._failure(exc) from exc
        self.logged["curve"] = "learning_curve.png"
        self._curve_drawn = _curve_points(runner)

    def log_checkpoint(self, path: Path, env_steps: int) -> None:
        """Upload to the slot not named by ``twrl.checkpoint``, then point the tag at it: a
        process killed mid-upload leaves the previous checkpoint intact and named."""
        assert self.run_id is not None
        name = f"checkpoint-{self._slot}.pt"
        self._slot = 1 - self._slot
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / name
            try:
                shutil.copyfile(path, staged)
            except OSError as exc:
                raise _temporary_failure(exc) from exc
            digest = serialization.sha256(staged)
            record = {"path": f"checkpoints/{name}", "sha256": digest, "env_steps": env_steps}
            # The writer uploads it, then points the tag at it.
            self._upload(staged, "checkpoints", (store.CHECKPOINT_TAG, json.dumps(record)))

    def _log_agent(self, runner: Runner) -> None:
        """Hand the weights and config to the writer, which uploads them as ``model/`` and logs
        the pyfunc model ``agent`` (its URI comes back after the next sync)."""
        assert self.run_id is not None
        folder = Path(tempfile.mkdtemp(prefix="twrl-model-")) / "model"
        agent_state = runner.agent.state_dict()
        try:
            folder.mkdir()
            saved = {"model": agent_state["model"], "policy": agent_state["policy"]}
            if "normalizer" in agent_state:  # its statistics: the agent acts through them
                saved["normalizer"] = agent_state["normalizer"]
            serialization.save(saved, folder / "agent.pt")
            (folder / "config.yaml").write_text(self.config_yaml)
            dtype = np.dtype(runner.env.single_observation_space.dtype or np.float32)
            if dtype in (np.dtype(np.uint8), np.dtype(np.bool_)):  # frames: the model takes them
                (folder / OBSERVATION_DTYPE).write_text(dtype.name)
            (folder / "README.md").write_text(
                "Trained agent: `twrl_exp.artifacts.load_agent(run_id)` rebuilds it from "
                "config.yaml and agent.pt (model and policy weights; tensors only).\n"
            )
        except (OSError, RuntimeError) as exc:  # torch.save says a full disk its own way
            shutil.rmtree(folder.parent, ignore_errors=True)
            raise _temporary_failure(exc) from exc
        space = runner.env.single_observation_space
        try:
            self._writer.model(
                self.tracking_uri,
                self.run_id,
                self.experiment_id,
                folder,
                tuple(space.shape or ()),
            )
        except writer.WriterError as exc:
            shutil.rmtree(folder.parent, ignore_errors=True)
            raise self._failure(exc) from exc
        self.logged["model"] = "model"


def _temporary_failure(exc: BaseException) -> RecordingError:
    """A file staged for the writer in the temporary folder could not be written."""
    folder = Path(tempfile.gettempdir())
    if store.is_disk_full(exc) or store.free_bytes(folder) < 1 << 20:
        return store.DiskFullError("the temporary folder", folder)
    return RecordingError(f"a file for MLflow could not be staged in {folder} ({exc})")


def _record_digest(runner: Runner, config_yaml: str) -> str:
    h = runner.history
    return record_digest(
        config_yaml,
        list(zip(h.end_steps, h.returns, strict=True)),
        list(zip(h.end_steps, h.lengths, strict=True)),
    )


def _curve_points(runner: Runner) -> tuple[int, int]:
    return runner.history.episodes, len(runner.history.eval_steps)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _param_text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."
