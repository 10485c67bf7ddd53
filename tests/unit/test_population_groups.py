"""Which runs may train together: a population's members share their structure and differ only
in their seed, their policy's values and their rule's vectorisable values."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from hydra_plugins.twrl_population_launcher.population_launcher import PopulationLauncher
from twrl_exp.errors import ConfigError
from twrl_exp.population import alone_because, structure_key

ENVS = {
    "update=sac": ["env=pendulum"],
    "update=td3": ["env=pendulum"],
    "update=td_lambda": ["env=mountaincar", "model=tilecoding", "policy=egreedy"],
}


def key(make_cfg, *overrides: str) -> str | None:
    cfg = make_cfg(*overrides)
    return structure_key(OmegaConf.to_container(cfg, resolve=True))


@pytest.mark.parametrize(
    ("rule", "varied"),
    [
        ("update=ppo", ["seed=3", "update.lr=0.01", "update.gamma=0.9", "update.ent_coef=0"]),
        ("update=reinforce", ["seed=1", "update.lr=0.01", "update.baseline_decay=0.5"]),
        ("update=ppo", ["update.clip_coef=0.3", "update.gae_lambda=0.8", "update.target_kl=0.02"]),
        ("update=a2c", ["seed=2", "update.lr=0.01", "update.gae_lambda=0.9", "update.vf_coef=1"]),
        ("update=sac", ["seed=1", "update.lr=0.01", "update.q_lr=0.002", "update.tau=0.01"]),
        ("update=sac", ["update.gamma=0.9", "update.target_entropy=-2", "update.max_grad_norm=1"]),
        ("update=td3", ["seed=1", "update.lr=0.01", "update.target_policy_noise=0.3"]),
        ("update=dqn", ["seed=1", "update.lr=0.01", "update.tau=0.5", "policy.epsilon=0.3"]),
        (
            "update=dqn",
            ["update.target_update_interval=50", "update.gamma=0.9", "update.priority_beta=0.6"],
        ),
        (
            "update=td3",
            ["update.target_noise_clip=0.3", "update.tau=0.01", "policy.exploration_noise=0.2"],
        ),
        ("update=td_lambda", ["seed=1", "update.alpha=0.1", "update.lam=0.5", "update.gamma=0.9"]),
        ("update=td_lambda", ["policy.epsilon=0.2", "policy.decay=0.9"]),
    ],
)
def test_vectorisable_values_share_a_structure(make_cfg, rule: str, varied: list[str]) -> None:
    env = ENVS.get(rule, [])
    base = key(make_cfg, *env, rule)
    assert base is not None
    assert key(make_cfg, *env, rule, *varied) == base


@pytest.mark.parametrize(
    ("rule", "structural"),
    [
        ("update=ppo", "update.n_steps=64"),
        ("update=reinforce", "update.steps_per_batch=500"),
        ("update=reinforce", "update.baseline=none"),
        ("update=ppo", "update.update_epochs=2"),
        ("update=ppo", "env.num_envs=4"),
        ("update=ppo", "model.hidden_sizes=[32]"),
        ("update=ppo", "train.max_env_steps=1000"),
        ("update=ppo", "policy=normal"),
        ("update=a2c", "update.n_steps=16"),
        ("update=a2c", "update.optimizer=adam"),
        ("update=sac", "update.ent_coef=0.1"),
        ("update=sac", "update.batch_size=64"),
        ("update=sac", "update.policy_delay=2"),
        ("update=td3", "update.policy_delay=1"),
        ("update=td3", "update.learning_starts=50"),
        ("update=dqn", "update.train_freq=4"),
        ("update=dqn", "update.gradient_steps=2"),
        ("update=dqn", "update.prioritized=true"),
        ("update=dqn", "update.double_q=true"),
        ("update=dqn", "policy=categorical"),
        ("update=td_lambda", "model.num_tilings=4"),
        ("update=td_lambda", "update.target=q_learning"),
        ("update=td_lambda", "update.traces=accumulating"),
    ],
)
def test_structural_values_make_another_structure(make_cfg, rule: str, structural: str) -> None:
    env = ENVS.get(rule, [])
    assert key(make_cfg, *env, rule, structural) != key(make_cfg, *env, rule)


@pytest.mark.parametrize(
    "overrides",
    [
        ["update=reinforce", "update.baseline=value"],  # a value network: not stacked
        ["update=reinforce", "policy=normal", "env=pendulum"],
        ["env=pendulum", "update=sac", "model=none"],  # no stacked networks: alone
        ["env=mountaincar", "model=tilecoding", "policy=greedy", "update=td_lambda"],
        ["update=ppo", "model=table", "env=cliffwalking"],
    ],
)
def test_rules_without_a_population_form_run_alone(make_cfg, overrides: list[str]) -> None:
    assert key(make_cfg, *overrides) is None


def test_a_population_of_no_jobs_is_refused_in_one_sentence() -> None:
    with pytest.raises(ConfigError, match=r"hydra.launcher.size=0: a population holds at least 1"):
        PopulationLauncher(size=0)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["env=pendulum", "update=sac", "policy.use_sde=true"], "policy.use_sde=true keeps"),
        (["env=pendulum", "update=ppo"], "update=ppo with model=mlp and policy=normal has no"),
        (["update=reinforce", "update.baseline=value"], "update.baseline=value trains"),
        (["update=td_lambda", "model=tilecoding", "env=mountaincar", "policy=egreedy",
          "update.target=sarsa", "model=mlp"], "update=td_lambda with model=mlp"),
    ],
)  # fmt: skip
def test_a_run_that_cannot_join_a_population_says_why(make_cfg, overrides, reason) -> None:
    """``trial.seeds=N`` then trains its seeds one after another and prints this reason."""
    config = OmegaConf.to_container(make_cfg(*overrides), resolve=True)
    assert structure_key(config) is None
    assert reason in (alone_because(config) or "")
    assert alone_because(OmegaConf.to_container(make_cfg("update=ppo"), resolve=True)) is None


def test_seeds_that_cannot_train_together_are_told_so_once(make_cfg, capsys) -> None:
    from twrl_exp.train import _as_population

    cfg = make_cfg("env=pendulum", "update=sac", "policy.use_sde=true", "trial.seeds=3")
    assert _as_population(cfg) is False
    out = capsys.readouterr().out
    assert out.count("trial.seeds=3: the seeds train one after another") == 1
    assert "(policy.use_sde=true keeps noise matrices per run and env)" in out
    assert _as_population(make_cfg("update=ppo", "trial.seeds=3")) is True
    assert "one after another" not in capsys.readouterr().out
