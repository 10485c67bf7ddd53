"""A trial of several seeds scores by ``trial.aggregate``: their mean, IQM, or the lower end of
the bootstrap interval of their IQM; in a population and one seed after another alike."""

from __future__ import annotations

import math

import pytest

from twrl_exp import stats
from twrl_exp.errors import ConfigError
from twrl_exp.objectives import aggregate


def test_the_aggregates_of_fixed_values() -> None:
    values = [10.0, 20.0, 30.0, 400.0]  # one lucky seed
    assert aggregate("mean", values) == 115.0
    assert aggregate("iqm", values) == 25.0  # the middle half: 20 and 30
    low = aggregate("ci_low", values)
    assert low == stats.bootstrap_ci(values, stats.iqm, seed=0)[0]
    assert low < aggregate("iqm", values)
    assert aggregate("ci_low", values) == low  # the same values, the same number
    assert aggregate("iqm", [3.0]) == aggregate("ci_low", [3.0]) == 3.0
    assert math.isnan(aggregate("iqm", [1.0, math.nan]))


def test_ci_low_prefers_the_config_that_does_well_on_every_seed() -> None:
    steady = [300.0, 310.0, 305.0, 295.0]
    lucky = [100.0, 520.0, 500.0, 120.0]  # the higher mean
    assert aggregate("mean", lucky) > aggregate("mean", steady)
    assert aggregate("ci_low", steady) > aggregate("ci_low", lucky)


def test_an_unknown_aggregate_is_refused_in_one_sentence() -> None:
    with pytest.raises(ConfigError, match=r"trial.aggregate=median"):
        aggregate("median", [1.0, 2.0])


@pytest.mark.parametrize("population", [True, False])
@pytest.mark.parametrize("how", ["iqm", "ci_low"])
def test_a_run_of_several_seeds_returns_their_aggregate(make_cfg, population: bool, how: str):
    from twrl_exp.train import run

    base = ["env=cartpole", "update=reinforce", "monitor=none", "train.max_env_steps=3000",
            "eval.every_steps=null", "eval.final=false"]  # fmt: skip
    alone = [run(make_cfg(*base, f"seed={seed}")) for seed in range(4)]
    assert len(set(alone)) > 1
    together = run(
        make_cfg(*base, "seed=0", "trial.seeds=4", f"trial.aggregate={how}",
                 f"trial.population={str(population).lower()}")
    )  # fmt: skip
    assert together == pytest.approx(aggregate(how, alone), rel=1e-6)
    assert together != pytest.approx(aggregate("mean", alone), rel=1e-6)
