"""``hydra/sweeper=twrl_optuna``: what Hydra's plugin scan imports, and nothing heavy.

Hydra imports every public module under ``hydra_plugins`` when any Hydra app starts, so this
module holds only the plugin class; Optuna, MLflow and twrl-exp's training code are imported
from ``_sweeper`` (skipped by the scan: its name starts with ``_``) when a sweep is set up, the
way Hydra's own Optuna sweeper keeps its implementation in ``_impl``.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class TwrlOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        from hydra_plugins.twrl_optuna_sweeper._sweeper import OptunaSweeperImpl

        self.sweeper = OptunaSweeperImpl(**settings)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)
