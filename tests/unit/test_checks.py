"""What an update accepts (update/checks.py and the capability checks of build): incompatible
choices are refused in one sentence; an update brings its usual policy and model."""

from __future__ import annotations

import pytest

from twrl_exp.build import build
from twrl_exp.errors import ConfigError


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["env=pendulum", "policy=normal", "update=dqn"], "update=dqn needs Discrete actions"),
        (["env=cartpole", "update=sac"], "policy=tanh_normal needs a bounded, flat Box"),
        (["env=pendulum", "policy=normal", "update=sac"], "policy=tanh_normal (its default)"),
        (["env=pendulum", "policy=normal", "update=td3"], "policy=deterministic (its default)"),
        (
            ["env=mountaincar", "model=tilecoding", "policy=categorical", "update=ppo"],
            "update=ppo needs a differentiable",
        ),
        (["env=cartpole", "policy=egreedy", "update=a2c"], "policy=categorical (Discrete"),
        (["env=mountaincar", "model=mlp", "update=td_lambda"], "model=tilecoding or model=table"),
        # A dueling head reshapes outputs as V + A - mean(A): a policy's would silently change.
        (["env=cartpole", "update=ppo", "model.dueling=true"], "update=ppo reads the model's"),
        (["env=pendulum", "update=sac", "model.dueling=true"], "update=sac reads the model's"),
        (["env=cartpole", "update=reinforce", "model.dueling=true"], "model.dueling=false"),
    ],
)
def test_incompatible_choices_are_refused_in_one_sentence(make_cfg, overrides, fragment) -> None:
    cfg = make_cfg(*overrides, "monitor=none")
    with pytest.raises(ConfigError) as caught:
        build(cfg, evaluation=False)
    assert fragment in str(caught.value)
    assert str(caught.value).count(". ") == 0


@pytest.mark.parametrize(
    ("overrides", "policy", "model"),
    [
        (["env=pendulum", "update=sac"], "tanh_normal", "mlp"),
        (["env=pendulum", "update=td3"], "deterministic", "mlp"),
        (["env=cartpole", "update=dqn"], "egreedy", "mlp"),
        (["env=cartpole", "update=ppo"], "categorical", "mlp"),
        (["env=pendulum", "update=ppo"], "normal", "mlp"),
        (["env=mountaincar", "update=td_lambda"], "egreedy", "tilecoding"),
    ],
)
def test_an_update_brings_its_usual_policy_and_model(make_cfg, overrides, policy, model) -> None:
    cfg = make_cfg(*overrides)
    assert (cfg.policy.name, cfg.model.name) == (policy, model)
