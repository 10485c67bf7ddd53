"""``hydra/launcher=ray``: what Hydra's plugin scan imports, and nothing heavy.

Ray itself is imported from ``_core`` (skipped by the scan: its name starts with ``_``) when a
sweep sets the launcher up. Why a launcher of our own rather than Hydra's ``hydra-ray-launcher``
is said in ``_core``'s docstring.

No ``from __future__ import annotations`` here: Hydra loads plugin modules outside
``sys.modules`` while scanning, where dataclasses cannot resolve string annotations.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class RayLauncherConf:
    _target_: str = "hydra_plugins.twrl_ray_launcher.ray_launcher.RayLauncher"
    # The cluster: host:port of its head's GCS (or ray://host:10001; "auto": the one `ray start`
    # last started on this machine). null: $RAY_ADDRESS, else a new Ray on this machine,
    # started for this sweep and stopped with it.
    address: str | None = None
    # "token": the cluster uses Ray's token authentication (the token from $RAY_AUTH_TOKEN or
    # ~/.ray/auth_token, as on the head node); null: $RAY_AUTH_MODE decides, as in Ray.
    auth: str | None = None
    cpus_per_job: float = 1  # CPUs Ray reserves for each job (and the torch threads it gets)
    n_jobs: int | None = None  # at most this many jobs at once (null: as many as fit the cluster)
    gpus_per_job: float = 0
    # Ray's retries of a job whose worker or node died. 0: the job fails as lost, and an Optuna
    # sweep runs another trial in its place (a grid sweep reports it failed).
    max_retries: int = 0
    # Jobs of a sweep reuse Ray's worker processes (imports paid once per worker); false: a
    # fresh process per job.
    reuse_workers: bool = True
    # Jobs of one structure (as hydra/launcher=population groups them) go to one Ray task and
    # train as one population of at most this many jobs, each still its own run; 0 or 1: one
    # job per task. The task gets cpus_per_job CPUs, and its population that many threads.
    population: int = 0
    num_cpus: int | None = None  # a new local Ray only: the CPUs it may use (null: all)
    init: dict[str, Any] = field(default_factory=dict)  # more ray.init() arguments (runtime_env)
    remote: dict[str, Any] = field(default_factory=dict)  # more task options (resources, memory)


ConfigStore.instance().store(
    group="hydra/launcher", name="ray", node=RayLauncherConf, provider="twrl-exp"
)


class RayLauncher(Launcher):
    def __init__(self, **settings: Any) -> None:
        from omegaconf import OmegaConf

        self.settings = OmegaConf.create(settings)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    @staticmethod
    def preflight(settings: DictConfig) -> None:
        """Connect to the cluster (or start the local one) and check that a job fits on one of
        its nodes: called before a sweep writes anything, so a bad address is one sentence."""
        import os

        if settings.get("auth") is not None:  # Ray reads it once, when it is first imported
            os.environ.setdefault("RAY_AUTH_MODE", str(settings.auth))
        from hydra_plugins.twrl_ray_launcher import _core

        _core.connect(settings)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        self.preflight(self.settings)

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from hydra_plugins.twrl_ray_launcher import _core

        return _core.launch(self, job_overrides, initial_job_idx)
