"""Samplers and pruners by name, from the sweeper's config (a DictConfig or a plain dict)."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from hydra_plugins.twrl_optuna_sweeper import _search_space as search_space
from twrl_exp import seeding
from twrl_exp.errors import ConfigError


def make_sampler(
    cfg: Any, space: dict[str, BaseDistribution], offset: int = 0
) -> optuna.samplers.BaseSampler:
    """The sampler ``cfg.name``, seeded from ``cfg.seed``'s ``SAMPLER`` stream keyed by
    ``offset`` (a resumed study passes the number of trials it holds, so its sampler does not
    propose the first attempt's parameters again)."""
    name = cfg.name
    seed = None if cfg.seed is None else seeding.integer(cfg.seed, seeding.Stream.SAMPLER, offset)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.n_startup_trials)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=cfg.n_startup_trials)
    if name == "grid":
        return optuna.samplers.GridSampler(search_space.grid(space), seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=cfg.n_startup_trials)
    raise ConfigError(
        f"hydra.sweeper.sampler.name={name} is unknown: use tpe, random, cmaes, grid or gp."
    )


def make_pruner(cfg: Any) -> optuna.pruners.BasePruner:
    name = cfg.name
    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=cfg.n_startup_trials,
            n_warmup_steps=cfg.n_warmup_steps,
            interval_steps=cfg.interval_steps,
        )
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=cfg.min_resource or "auto", reduction_factor=cfg.reduction_factor
        )
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=cfg.min_resource or 1,
            max_resource=cfg.max_resource or "auto",
            reduction_factor=cfg.reduction_factor,
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(
        f"hydra.sweeper.pruner.name={name} is unknown: use median, successive_halving, "
        "hyperband or none."
    )
