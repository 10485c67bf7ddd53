"""Observers built from ``monitor.observers``: each from its ``_target_`` with ``run=``, one
sentence for one that cannot be built, and a record that names no code."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from twrl_exp.errors import ConfigError
from twrl_exp.monitor.observers import RunContext, build_observers, recorded_config
from twrl_exp.monitor.tensorboard import TensorBoardObserver
from twrl_exp.runner import MonitorBase


class Counter(MonitorBase):
    def __init__(self, *, run: RunContext, label: str, every: list[int]) -> None:
        self.run, self.label, self.every = run, label, every


RUN = RunContext(
    folder=Path("/tmp/run"), name="run", env_id="CartPole-v1", seed=0, config={}, params={}
)


def nodes(**observers: dict) -> object:
    return OmegaConf.create(observers)


def test_each_observer_is_its_target_called_with_its_options_and_run() -> None:
    (built,) = build_observers(
        nodes(mine={"_target_": f"{__name__}.Counter", "label": "x", "every": [1, 2]}), RUN
    )
    assert isinstance(built, Counter)
    assert (built.run, built.label, built.every) == (RUN, "x", [1, 2])
    assert type(built.every) is list  # plain values, not OmegaConf nodes


@pytest.mark.parametrize(
    ("node", "sentence"),
    [
        (
            {"_target_": "no_such_module.Observer"},
            "monitor.observers.bad: its _target_ no_such_module.Observer cannot be imported "
            "(No module named 'no_such_module');",
        ),
        (
            {"_target_": f"{__name__}.Missing"},
            f"monitor.observers.bad: its _target_ {__name__}.Missing cannot be imported",
        ),
        (
            {"_target_": f"{__name__}.Counter", "label": "x", "every": [], "colour": 1},
            f"monitor.observers.bad: {__name__}.Counter refused its options (",
        ),
        (
            {"_target_": "builtins.dict"},
            "monitor.observers.bad: builtins.dict made a dict, which has no start() hook;",
        ),
    ],
)
def test_an_observer_that_cannot_be_built_is_one_sentence(node: dict, sentence: str) -> None:
    with pytest.raises(ConfigError) as refused:
        build_observers(nodes(bad=node), RUN)
    assert str(refused.value).startswith(sentence)
    assert "\n" not in str(refused.value)


def test_a_record_names_no_code_and_this_checkouts_option_gives_it(make_cfg) -> None:
    cfg = make_cfg("+monitor/observers=tensorboard", "monitor.observers.tensorboard.folder=tb")
    assert cfg.monitor.observers.tensorboard._target_.endswith("TensorBoardObserver")
    record = recorded_config(cfg)
    assert "_target_" not in record.monitor.observers.tensorboard
    assert record.monitor.observers.tensorboard.folder == "tb"
    assert "_target_" in cfg.monitor.observers.tensorboard  # the run's own config is untouched
    (built,) = build_observers(record.monitor.observers, RUN)
    assert isinstance(built, TensorBoardObserver)
    assert built.folder == Path("/tmp/run/tb")


def test_a_record_of_an_option_this_checkout_lacks_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"no option \+monitor/observers=gone here names one"):
        build_observers(nodes(gone={"folder": "x"}), RUN)
