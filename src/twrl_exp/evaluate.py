"""Evaluate a trained agent from its MLflow run, greedily, on fresh episodes.

    python -m twrl_exp.evaluate run_id=<id> episodes=100 video=true log=true

Rebuilds the agent from the run's logged config and ``model/agent.pt``, reports mean ± std
return over ``episodes`` episodes, optionally records a video of one episode, and with
``log=true`` writes the result back to that run (metrics ``evaluate/*``, ``videos/evaluate.mp4``).
Without ``log=true`` it only reads the store: a read-only one will do.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from twrl_exp import seeding, store
from twrl_exp.artifacts import env_settings, load_agent
from twrl_exp.cli_errors import say
from twrl_exp.env import make_render_env, make_vector_env
from twrl_exp.errors import ConfigError, RecordingError
from twrl_exp.monitor.video import record_mp4
from twrl_exp.paths import default_tracking_uri
from twrl_exp.runner import Runner


@dataclass
class EvaluateConfig:
    run_id: str = ""
    episodes: int = 100
    num_envs: int = 10
    seed: int | None = None  # null: the run's own seed (its evaluations' episodes)
    video: bool = False
    video_path: str | None = None  # null: ./evaluate-<run_id>.mp4
    log: bool = False
    tracking_uri: str | None = None


@dataclass
class EvaluateResult:
    returns: np.ndarray
    video: Path | None

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def std(self) -> float:
        return float(self.returns.std())


def evaluate(cfg: EvaluateConfig) -> EvaluateResult:
    """Greedy returns of ``cfg.episodes`` episodes of the agent of run ``cfg.run_id``."""
    if not cfg.run_id:
        raise ConfigError("run_id is missing: give run_id=<an MLflow run id>.")
    if cfg.episodes < 1 or cfg.num_envs < 1:
        raise ConfigError(f"episodes={cfg.episodes} and num_envs={cfg.num_envs} must be >= 1.")
    uri = cfg.tracking_uri or default_tracking_uri()
    if cfg.log:  # it writes to the run: refuse an unwritable store before evaluating
        store.open_client(uri)
    agent, logged = load_agent(cfg.run_id, uri)  # only reads: a read-only store will do
    env = make_vector_env(**env_settings(logged, min(cfg.num_envs, cfg.episodes)), training=False)
    seed = logged.seed if cfg.seed is None else cfg.seed
    try:
        runner = Runner(
            env=env,
            agent=agent,
            eval_env=env,
            seed=seed,
            max_episodes=1,
            eval_episodes=cfg.episodes,
        )
        returns = runner.evaluate()
    finally:
        env.close()
    video = None
    if cfg.video:
        video, _ = record_mp4(
            lambda: make_render_env(
                id=logged.env.id,
                kwargs=dict(logged.env.kwargs),
                max_episode_steps=logged.env.max_episode_steps,
                preprocess=logged.env.preprocess,
            ),
            agent,
            Path(cfg.video_path or f"evaluate-{cfg.run_id}.mp4"),
            seed=seeding.integer(seed, seeding.Stream.VIDEO),
        )
    if cfg.log:
        _log(uri, cfg, returns, video)
    return EvaluateResult(returns=returns, video=video)


def _log(uri: str, cfg: EvaluateConfig, returns: np.ndarray, video: Path | None) -> None:
    client = MlflowClient(tracking_uri=uri)
    try:
        for key, value in (
            ("mean_return", returns.mean()),
            ("std_return", returns.std()),
            ("episodes", len(returns)),
        ):
            client.log_metric(cfg.run_id, f"evaluate/{key}", float(value))
        if video is not None:
            with tempfile.TemporaryDirectory() as tmp:
                target = Path(tmp) / "evaluate.mp4"
                target.write_bytes(video.read_bytes())
                client.log_artifact(cfg.run_id, str(target), "videos")
    except Exception as exc:
        db = store.sqlite_path(uri)
        if store.is_disk_full(exc) and db is not None:
            raise store.DiskFullError("the MLflow store", db) from exc
        raise RecordingError(
            f"the evaluation of run {cfg.run_id} could not be written to {store.redact(uri)} "
            f"({store.root_cause(exc)})"
        ) from exc


USAGE = """usage: python -m twrl_exp.evaluate run_id=<id> [KEY=VALUE ...]   (or twrl-evaluate ...)

Evaluate the trained agent of an MLflow run on fresh episodes (greedy actions).

  run_id=<id>         the run (from the end of its training, `mlflow ui` or the leaderboard)
  episodes=100        how many episodes
  num_envs=10         episodes run this many at a time
  seed=<int>          the evaluation's seed (default: the run's own)
  video=false         also record one episode as an mp4
  video_path=<file>   where the mp4 goes (default: ./evaluate-<run_id>.mp4)
  log=false           write evaluate/* metrics (and the video) back to the run
  tracking_uri=<uri>  the MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)
"""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # MLflow draws a progress bar per artifact download; one line of result is the output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if any(a in ("-h", "--help", "help") for a in args):
        print(USAGE, end="")
        return 0
    try:
        overrides = OmegaConf.from_dotlist(args)
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EvaluateConfig), overrides))
        assert isinstance(cfg, EvaluateConfig)
        result = evaluate(cfg)
    except ConfigError as exc:
        say(str(exc))
        return 2
    except RecordingError as exc:  # log=true on a full disk
        say(str(exc))
        return 1
    except OmegaConfBaseException as exc:
        first = str(exc).splitlines()[0]
        say(
            f"{first} (valid keys: run_id, episodes, num_envs, seed, video, video_path, log, "
            "tracking_uri)."
        )
        return 2
    r = result.returns
    print(
        f"run {cfg.run_id}: mean return {r.mean():.2f} ± {r.std():.2f} over {len(r)} episodes "
        f"(min {r.min():.2f}, max {r.max():.2f})"
    )
    if result.video is not None:
        print(f"video: {result.video.resolve()}")
    return 0


def cli() -> None:
    """``twrl-evaluate``: the same as ``python -m twrl_exp.evaluate``, with the project's own
    modules importable (an agent built from ``update=my_rule``)."""
    from twrl_exp.paths import make_importable

    make_importable()
    raise SystemExit(main())


if __name__ == "__main__":
    raise SystemExit(main())
