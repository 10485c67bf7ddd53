"""Which monitors observe a run, built from ``cfg.monitor``: console, checkpoints, videos,
the observers of ``monitor.observers`` (:mod:`twrl_exp.monitor.observers`), MLflow (run record,
learning curve, model)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from twrl_exp import store
from twrl_exp.cli_errors import say
from twrl_exp.env import make_render_env
from twrl_exp.identity import AGENT_TAG, VERSIONS_TAG, agent_tag, versions
from twrl_exp.monitor.checkpoint import CheckpointMonitor
from twrl_exp.monitor.console import ConsoleMonitor
from twrl_exp.monitor.observers import (
    RunContext,
    build_observers,
    plain,
    recorded_config,
    video_hook,
)
from twrl_exp.monitor.video import VideoMonitor
from twrl_exp.paths import project_dir, tracking_uri_of
from twrl_exp.runner import Monitor, MonitorBase, Runner

if TYPE_CHECKING:  # mlflow is imported only when the MLflow monitor is on
    from twrl_exp.monitor.tracking import MlflowMonitor


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"update": {"lr": 0.01}}`` -> ``{"update.lr": 0.01}``, minus ``_target_``/``_partial_``."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("_target_", "_partial_"):
            continue
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


@functools.cache
def git_commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project_dir(),
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=project_dir(),
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return result.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_name(cfg: DictConfig, env_id: str, lead: str = "") -> str:
    """What tells runs apart first, then what they share: ``s0 reinforce/categorical/mlp
    CartPole-v1``; a sweep job leads with its swept values (``lr=0.01 s1 ...``), a trial with its
    number (``t3 s0 ...``), so the MLflow table's narrow name column still tells them apart."""
    if cfg.monitor.mlflow.run_name:
        return str(cfg.monitor.mlflow.run_name)
    parts = lead.split()
    if f"s{cfg.seed}" not in parts:
        parts.append(f"s{cfg.seed}")
    agent = f"{cfg['update'].name}/{cfg.policy.name}/{cfg.model.name}"
    return " ".join([*parts, agent, env_id])


def short_override(override: str, keys: list[str]) -> str:
    """``update.lr=0.01`` -> ``lr=0.01`` (the full key if another swept key ends the same way);
    ``seed=1`` -> ``s1``."""
    key, _, value = override.partition("=")
    key = key.lstrip("+~")
    if key == "seed":
        return f"s{value}"
    leaf = key.rpartition(".")[2]
    clash = sum(k.rpartition(".")[2] == leaf for k in keys) > 1
    return f"{key if clash else leaf}={value}"


def logged_params(cfg: DictConfig) -> dict[str, Any]:
    """The run's flat params as MLflow records them: where data goes (paths.*) is not a
    parameter of the experiment, and a password in a storage URL (trial.storage) is never
    recorded."""
    return {
        k: store.redact(v) if isinstance(v, str) else v
        for k, v in flatten(OmegaConf.to_container(cfg, resolve=True)).items()
        if not k.startswith("paths.")
    }


def _tracker(cfg: DictConfig, env_id: str, suffix: str, context: dict[str, str]) -> MlflowMonitor:
    from twrl_exp.monitor.tracking import MlflowMonitor

    uri = context.get("tracking_uri") or tracking_uri_of(cfg)
    commit = git_commit()
    params = logged_params(cfg)
    return MlflowMonitor(
        tracking_uri=uri,
        experiment=context.get("experiment") or cfg.monitor.mlflow.experiment or env_id,
        run_name=run_name(cfg, env_id, suffix),
        params=params,
        tags={
            "git_commit": commit,
            "mlflow.source.git.commit": commit.removesuffix("-dirty"),
            "env": env_id,
            "policy": cfg.policy.name,
            "model": cfg.model.name,
            "update": cfg["update"].name,
            "seed": str(cfg.seed),
            AGENT_TAG: agent_tag(params),  # the UI's Group by: one group per agent, over seeds
            VERSIONS_TAG: json.dumps(versions(), sort_keys=True),
            **{k: v for k, v in context.items() if k not in _CONTEXT_ONLY},
            **cfg.monitor.mlflow.tags,
        },
        config_yaml=store.redact(OmegaConf.to_yaml(recorded_config(cfg), resolve=True)),
        log_model=cfg.monitor.mlflow.log_model,
        curve=cfg.monitor.curve,
        flush_every_s=cfg.monitor.mlflow.flush_every_s,
        resumed_from=context.get("resumed_from"),
        system_metrics=cfg.monitor.mlflow.system_metrics,
    )


_CONTEXT_ONLY = ("experiment", "tracking_uri", "resumed_from")


def _video(
    cfg: DictConfig, run_dir: Path, tracker: MlflowMonitor | None, observers: list[Monitor]
) -> VideoMonitor:
    v = cfg.monitor.video

    def keep_locally(path: Path, name: str) -> None:
        (run_dir / "videos").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, run_dir / "videos" / name)

    container = OmegaConf.to_container(cfg.env.kwargs, resolve=True)
    assert isinstance(container, dict)
    kwargs = {str(key): value for key, value in container.items()}

    def unavailable(reason: str) -> None:
        say(
            f"no video: {cfg.env.id} cannot render frames ({reason}); the run goes on without "
            "one (monitor.video.enabled=false stops trying).",
            style="bold yellow",
            label="note",
        )
        if tracker is not None:
            tracker.set_tag("twrl.video", f"none: {reason}"[:5000])

    return VideoMonitor(
        make_env=partial(
            make_render_env,
            id=cfg.env.id,
            kwargs=kwargs,
            max_episode_steps=cfg.env.max_episode_steps,
            preprocess=cfg.env.preprocess,
        ),
        upload=tracker.log_video if tracker is not None else keep_locally,
        seed=cfg.seed,
        every_evals=v.every_evals,
        final=v.final,
        fps=v.fps,
        max_frames=v.max_frames,
        unavailable=unavailable,
        recorded=video_hook(observers),
    )


class FirstStepMarker(MonitorBase):
    """Writes the wall-clock time at which training starts stepping to ``path`` (benchmarks
    measure start-up with it: set ``TWRL_FIRST_STEP_FILE``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def start(self, runner: Runner) -> None:
        Path(self.path).write_text(repr(time.time()))


def _observers(
    cfg: DictConfig, run_dir: Path, env_id: str, suffix: str, context: dict[str, str]
) -> list[Monitor]:
    return build_observers(
        cfg.monitor.observers,
        RunContext(
            folder=run_dir,
            name=run_name(cfg, env_id, suffix),
            env_id=env_id,
            seed=cfg.seed,
            config=plain(cfg),
            params=logged_params(cfg),
            resumed_from=context.get("resumed_from"),
        ),
    )


def make_monitors(
    cfg: DictConfig,
    run_dir: Path,
    env_id: str,
    suffix: str,
    context: dict[str, str],
    *,
    brief: bool = False,
) -> tuple[list[Monitor], MlflowMonitor | None]:
    """The run's monitors, MLflow last (it closes the run after the others have written).

    ``context`` holds a sweep's ``experiment``, ``tracking_uri`` and ``mlflow.parentRunId``
    (the job's run is nested there) and any extra tags; ``brief``: a sweep's job (its console
    shows progress but no summary). The observers of ``monitor.observers`` are built first (an
    observer that cannot be built refuses the run before anything starts) and come after the
    video, so they see it and finish after it.
    """
    wanted = cfg.monitor.get("observers")
    observers = _observers(cfg, run_dir, env_id, suffix, context) if wanted else []
    monitors: list[Monitor] = []
    tracker = _tracker(cfg, env_id, suffix, context) if cfg.monitor.mlflow.enabled else None
    if cfg.monitor.console:
        monitors.append(
            ConsoleMonitor(
                title=run_name(cfg, env_id, suffix),
                interval_s=cfg.monitor.progress_every_s,
                brief=brief,
            )
        )
    if cfg.monitor.checkpoint.enabled:
        monitors.append(
            CheckpointMonitor(
                directory=run_dir / "checkpoints",
                every_steps=cfg.monitor.checkpoint.every_steps,
                every_s=cfg.monitor.checkpoint.every_s,
                on_saved=tracker.log_checkpoint if tracker is not None else None,
            )
        )
    if cfg.monitor.video.enabled:
        monitors.append(_video(cfg, run_dir, tracker, observers))
    monitors += observers
    if tracker is not None:
        monitors.append(tracker)
    if os.environ.get("TWRL_FIRST_STEP_FILE"):
        monitors.append(FirstStepMarker(os.environ["TWRL_FIRST_STEP_FILE"]))
    return monitors, tracker
