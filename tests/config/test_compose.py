"""Every option of every group composes and instantiates; bad values and mixes are refused."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from twrl_exp.build import build, make_runner, project_root
from twrl_exp.errors import ConfigError
from twrl_exp.paths import config_dir

CONF = config_dir()


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_defaults_compose_a_cartpole_reinforce_run(make_cfg) -> None:
    cfg = make_cfg()
    assert cfg.env.id == "CartPole-v1"
    assert (cfg.model.name, cfg.policy.name, cfg["update"].name) == (
        "mlp",
        "categorical",
        "reinforce",
    )
    built = build(cfg)
    assert built.reward_threshold == 475.0
    built.env.close()


@pytest.mark.parametrize("env", options("env"))
def test_random_agent_builds_on_every_env_preset(make_cfg, env: str) -> None:
    cfg = make_cfg(f"env={env}", "model=none", "policy=random", "update=none", "monitor=none")
    built = build(cfg)
    obs, _ = built.env.reset(seed=0)
    actions = built.agent.start(obs)
    built.env.step(actions)
    built.env.close()
    built.eval_env.close()


@pytest.mark.parametrize("monitor", options("monitor"))
def test_every_monitor_option_composes(make_cfg, monitor: str) -> None:
    cfg = make_cfg(f"monitor={monitor}")
    assert isinstance(cfg.monitor.console, bool)


# Which (model, policy, update) compositions are mathematically meaningful, per kind of env.
VALID = {
    "cartpole": {  # Box observations, Discrete actions
        ("mlp", "categorical", "reinforce"),
        ("mlp", "categorical", "a2c"),
        ("mlp", "categorical", "ppo"),
        *{("mlp", p, "dqn") for p in ("egreedy", "greedy", "categorical", "random")},
        ("tilecoding", "egreedy", "td_lambda"),
        ("tilecoding", "greedy", "td_lambda"),
        ("tilecoding", "categorical", "td_lambda"),
        ("tilecoding", "random", "td_lambda"),
        ("none", "random", "none"),
        ("mlp", "random", "none"),
        ("tilecoding", "random", "none"),
        *{
            (m, p, "none")
            for m in ("mlp", "tilecoding")
            for p in ("categorical", "egreedy", "greedy")
        },
    },
    "pendulum": {  # Box observations, Box actions
        ("mlp", "normal", "reinforce"),
        ("mlp", "normal", "a2c"),
        ("mlp", "normal", "ppo"),
        ("mlp", "tanh_normal", "sac"),
        ("mlp", "deterministic", "td3"),
        ("none", "random", "none"),
        *{
            (m, p, "none")
            for m in ("mlp", "tilecoding")
            for p in ("normal", "random", "tanh_normal", "deterministic")
        },
    },
    "frozenlake": {  # Discrete observations, Discrete actions
        ("mlp", "categorical", "reinforce"),
        ("mlp", "categorical", "a2c"),
        ("mlp", "categorical", "ppo"),
        *{("mlp", p, "dqn") for p in ("egreedy", "greedy", "categorical", "random")},
        ("table", "egreedy", "td_lambda"),
        ("table", "greedy", "td_lambda"),
        ("table", "categorical", "td_lambda"),
        ("table", "random", "td_lambda"),
        ("none", "random", "none"),
        *{
            (m, p, "none")
            for m in ("mlp", "table")
            for p in ("categorical", "egreedy", "greedy", "random")
        },
    },
}


TUNED = {p.stem for p in (CONF / "tuned").glob("*.yaml")}
NEUTRAL = {"model": "none", "policy": "random", "update": "none"}  # no tuned preset names these
SHARED_ENV = "cartpole"  # the env beside which each option's node is composed


@functools.cache
def composed(*overrides: str) -> DictConfig:
    """Hydra's composition of ``overrides`` (read-only: shared by every test of this module)."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", [*overrides, "monitor=none"])
    OmegaConf.set_readonly(cfg, True)
    return cfg


def group_extra(env: str, model: str) -> list[str]:
    return (
        ["model.ranges=[[-2.4,2.4],[-3,3],[-0.21,0.21],[-3,3]]"]
        if (env == "cartpole" and model == "tilecoding")
        else []
    )


def with_options(env: str, extra_for: str | None = None, **chosen: str) -> tuple[str, ...]:
    options_ = {**NEUTRAL, **chosen}
    return (
        f"env={env}",
        *(f"{group}={option}" for group, option in options_.items()),
        *group_extra(extra_for or env, options_["model"]),
    )


def assembled(env: str, model: str, policy: str, update: str) -> DictConfig:
    """The composition of env, model, policy and update, from one composition per option.

    Composing each of the 224 mixes per env costs Hydra a quarter of a second; its groups are
    independent (an env or update only brings a default policy or model, which the command line
    overrides, and sets nothing in another group), so each group's node is that option composed
    once beside the neutral others and one env, for every env. A mix with a tuned preset (which
    sets values across groups) is composed whole.
    test_a_mix_assembled_from_its_options_is_the_mix_hydra_composes keeps this honest.
    """
    if f"{env}-{model}-{policy}-{update}" in TUNED:
        return composed(*with_options(env, model=model, policy=policy, update=update))
    base = composed(*with_options(env))
    cfg = OmegaConf.masked_copy(base, list(base))
    OmegaConf.set_readonly(cfg, False)
    cfg.model = composed(*with_options(SHARED_ENV, extra_for=env, model=model)).model
    cfg.policy = composed(*with_options(SHARED_ENV, policy=policy)).policy
    cfg["update"] = composed(*with_options(SHARED_ENV, update=update))["update"]
    return cfg


@pytest.mark.parametrize("env", sorted(VALID))
def test_every_composition_builds_or_is_refused_in_one_sentence(env: str) -> None:
    built_ok = set()
    for model, policy, update in itertools.product(
        options("model"), options("policy"), options("update")
    ):
        try:
            built = build(assembled(env, model, policy, update), evaluation=False)
        except ConfigError as exc:
            message = str(exc)
            assert message.count(". ") == 0, message  # one sentence
            assert message.endswith("."), message
            continue
        built.env.close()
        built_ok.add((model, policy, update))
    assert built_ok == VALID[env]


@pytest.mark.parametrize(
    ("env", "model", "policy", "update"),
    [
        ("cartpole", "tilecoding", "egreedy", "td_lambda"),
        ("cartpole", "mlp", "random", "dqn"),
        ("pendulum", "mlp", "normal", "ppo"),
        ("pendulum", "mlp", "deterministic", "none"),
        ("frozenlake", "table", "categorical", "td_lambda"),
        ("frozenlake", "mlp", "categorical", "a2c"),
    ],
)
def test_a_mix_assembled_from_its_options_is_the_mix_hydra_composes(
    env: str, model: str, policy: str, update: str
) -> None:
    """Mixes whose update or env brings another default model or policy, on each kind of env."""
    whole = composed(*with_options(env, model=model, policy=policy, update=update))
    parts = assembled(env, model, policy, update)
    assert OmegaConf.to_yaml(parts) == OmegaConf.to_yaml(whole)
    for group in ("model", "policy", "update"):
        assert OmegaConf.get_type(parts, group) is OmegaConf.get_type(whole, group)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["update.lr=-0.001"], "update.lr=-0.001 is invalid"),
        (
            [
                "model=tilecoding",
                "policy=egreedy",
                "update=td_lambda",
                "env=mountaincar",
                "update.lam=1.5",
            ],
            "update.lam=1.5 is invalid: it must be in [0, 1]",
        ),
        (["env.id=CartPol-v1"], "did you mean CartPole-v1"),
        (
            ["env=pendulum", "policy=categorical"],
            "policy=categorical needs a Discrete action space",
        ),
        (["model=table"], "model=table needs a Discrete observation space"),
        (["model=tilecoding", "policy=egreedy", "update=td_lambda"], "model.ranges"),
        (
            ["policy=normal", "update=td_lambda", "env=pendulum", "model=tilecoding"],
            "policy=egreedy",
        ),
        (["env.num_envs=0"], "env.num_envs=0"),
        (["seed=-1"], "seed=-1"),
        (["train.max_env_steps=null"], "no budget"),
        (
            ["update.lr_schedule=linear", "train.max_env_steps=null", "train.max_episodes=5"],
            "train.max_env_steps",
        ),
    ],
)
def test_bad_values_and_mixes_are_refused_before_the_first_step(
    make_cfg, overrides, fragment
) -> None:
    cfg = make_cfg(*overrides, "monitor=none")
    with pytest.raises(ConfigError) as info:
        make_runner(cfg, build(cfg))
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ("update.lrr=0.1", ConfigCompositionException),
        ("update.lr=fast", ConfigCompositionException),
        ("update.baseline=median", ConfigCompositionException),
        ("policy=softmax", MissingConfigException),
        ("model.hidden_sizes=[a,b]", ConfigCompositionException),
    ],
)
def test_schema_rejects_misspelt_keys_wrong_types_and_unknown_options(
    make_cfg, override, error
) -> None:
    with pytest.raises((error, ValidationError)):
        make_cfg(override)


def test_every_group_yaml_is_backed_by_a_schema() -> None:
    for group in ("model", "policy", "update"):
        for path in (CONF / group).glob("*.yaml"):
            assert f"/schema/{group}/{path.stem}@_here_" in Path(path).read_text(), path


SWEEPS = sorted(p.stem for p in (project_root() / "sweeps").glob("*.yaml"))


def test_the_shipped_sweeps_are_found() -> None:
    assert {"cartpole_reinforce", "cartpole_ppo", "cartpole_dqn"} <= set(SWEEPS)


@pytest.mark.parametrize("sweep", SWEEPS)
def test_every_shipped_sweep_composes_and_builds(make_cfg, sweep: str) -> None:
    cfg = make_cfg(f"+sweep={sweep}", "monitor=none")
    built = build(cfg, evaluation=False)
    built.close()
