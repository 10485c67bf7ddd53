"""One home for every default: the schemas in twrl_exp.config.

An option's YAML adds no values, its constructors take every option without a default, and the
Python API (``config.make``) builds what the command line builds. Old spellings are refused in
one sentence naming the new key, and translated in the logged configs of older runs.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import get_object
from omegaconf import OmegaConf

from twrl_exp import config
from twrl_exp.build import build
from twrl_exp.choices import Schedule
from twrl_exp.cli_errors import describe
from twrl_exp.errors import ConfigError
from twrl_exp.logged import trusted_config
from twrl_exp.paths import config_dir

CONF = config_dir()
OPTIONS = [(g, o) for g, options in config.GROUP_SCHEMAS.items() for o in options]
# The packages whose constructors receive each group's values (storage: the update's).
PACKAGES = {
    "env": ("twrl_exp.env",),
    "model": ("twrl_exp.model",),
    "policy": ("twrl_exp.policy",),
    "update": ("twrl_exp.update", "twrl_exp.storage"),
}
# Defaults that share a name with an option but are no option's default, and why.
NOT_OPTION_DEFAULTS = {
    # None means "the registered threshold": an override in a look-up, not a constructor.
    "twrl_exp.env.resolve_spec": {"reward_threshold"},
    # A Gymnasium vector env, with Gymnasium's signature; make_vector_env passes both.
    "twrl_exp.env.classic.MountainCarVectorEnv.__init__": {"num_envs", "max_episode_steps"},
}


def option_names(group: str) -> set[str]:
    schemas = [config.EnvConfig] if group == "env" else config.GROUP_SCHEMAS[group].values()
    names = {f.name for schema in schemas for f in dataclasses.fields(schema)}
    return names - {"_target_", "_partial_", "name"}


def callables(module: types.ModuleType) -> list[tuple[str, Any]]:
    """``(qualified name, function)`` of the functions and methods defined in ``module``."""
    found = []
    for name, obj in vars(module).items():
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            found.append((f"{module.__name__}.{name}", obj))
        elif inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if inspect.isfunction(member):
                    found.append((f"{module.__name__}.{name}.{attr}", member))
    return found


def option_defaults(module: types.ModuleType, names: set[str]) -> list[str]:
    """``where: key=value`` for every default an option of ``names`` gets in ``module``: a
    parameter's default, or ``settings.get/pop("key", value)``."""
    found = []
    for where, function in callables(module):
        allowed = NOT_OPTION_DEFAULTS.get(where, set())
        for param in inspect.signature(function).parameters.values():
            if param.name in names - allowed and param.default is not param.empty:
                found.append(f"{where}: {param.name}={param.default!r}")
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):  # no source (a compiled or synthetic module)
        return found
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("get", "pop")
            and len(node.args) == 2
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in names
        ):
            found.append(f"{module.__name__} line {node.lineno}: {ast.unparse(node)}")
    return found


def modules(package: str) -> list[types.ModuleType]:
    root = importlib.import_module(package)
    found = [root]
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        try:
            found.append(importlib.import_module(info.name))
        except ImportError:  # an optional backend (numba) that is not installed
            continue
    return found


# ---------------------------------------------------------------------------- one home


@pytest.mark.parametrize("group", sorted(PACKAGES))
def test_no_constructor_gives_an_option_a_default_of_its_own(group: str) -> None:
    names = option_names(group)
    found = [
        d
        for package in PACKAGES[group]
        for m in modules(package)
        for d in option_defaults(m, names)
    ]
    assert not found, f"defaults outside twrl_exp.config: {found}"


def test_the_check_finds_a_reintroduced_constructor_default() -> None:
    module = types.ModuleType("planted")
    source = textwrap.dedent(
        """
        class PPO:
            def __init__(self, *, model, lr=3e-4, ent_coef):
                self.lr = lr
        """
    )
    exec(compile(source, "planted", "exec"), vars(module))
    assert option_defaults(module, option_names("update")) == ["planted.PPO.__init__: lr=0.0003"]


def test_the_check_finds_a_hidden_settings_default(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "planted_rule.py"
    path.write_text('def factory(**settings):\n    return settings.pop("n_step", 1)\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("planted_rule")
    assert option_defaults(module, option_names("update")) == [
        "planted_rule line 2: settings.pop('n_step', 1)"
    ]


@pytest.mark.parametrize(("group", "option"), OPTIONS)
def test_an_option_yaml_adds_no_values_to_its_schema(group: str, option: str) -> None:
    loaded = OmegaConf.to_container(OmegaConf.load(CONF / group / f"{option}.yaml"))
    assert isinstance(loaded, dict)
    assert list(loaded) == ["defaults"], f"{group}/{option}.yaml sets {list(loaded)}"
    assert loaded["defaults"][0] == f"/schema/{group}/{option}@_here_"


def test_every_option_has_a_schema_and_a_yaml() -> None:
    for group, options in config.GROUP_SCHEMAS.items():
        assert {p.stem for p in (CONF / group).glob("*.yaml")} == set(options), group


@pytest.mark.parametrize(("group", "option"), OPTIONS)
def test_the_composed_option_is_its_schema(make_cfg, group: str, option: str) -> None:
    # env=custom: no tuned preset (conf/tuned/) is composed on top
    cfg = make_cfg("env=custom", "env.id=CartPole-v1", f"{group}={option}")
    node = OmegaConf.to_container(cfg[group])
    assert isinstance(node, dict)
    assert node.pop("_target_") == config.schema(group, option)._target_
    assert (node.pop("_partial_"), node.pop("name")) == (True, option)
    assert node == config.defaults(group, option)


@pytest.mark.parametrize(
    ("group", "schema"), [("monitor", "MonitorConfig"), ("paths", "PathsConfig")]
)
def test_groups_with_values_in_yaml_agree_with_their_schema(
    make_cfg, group: str, schema: str
) -> None:
    """conf/monitor/default.yaml and conf/paths/default.yaml repeat their schemas' values."""
    composed = OmegaConf.to_container(make_cfg()[group])
    assert composed == OmegaConf.to_container(OmegaConf.structured(getattr(config, schema)))


@pytest.mark.parametrize(("group", "option"), OPTIONS)
def test_every_schema_field_reaches_its_constructor(group: str, option: str) -> None:
    target = get_object(config.schema(group, option)._target_)
    params = inspect.signature(target).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for name in config.defaults(group, option):
        assert takes_any or name in params, f"{group}.{name} is not taken by {target}"
        if name in params:
            assert params[name].default is params[name].empty, f"{target}: {name}"


# ---------------------------------------------------------------------------- the Python API


SETUPS = {  # a composition each option builds in, with no tuned preset
    "cartpole": ["env=custom", "env.id=CartPole-v1", "model=mlp", "policy=categorical"],
    "pendulum": ["env=custom", "env.id=Pendulum-v1", "model=mlp"],
    "cliffwalking": ["env=custom", "env.id=CliffWalking-v1", "model=table", "policy=egreedy"],
}
RULES = [
    ("reinforce", "cartpole", []),
    ("a2c", "cartpole", []),
    ("ppo", "cartpole", []),
    ("dqn", "cartpole", ["policy=egreedy"]),
    ("sac", "pendulum", []),
    ("td3", "pendulum", []),
    ("td_lambda", "cliffwalking", []),
    ("none", "cartpole", []),
]


def settings(obj: Any) -> dict[str, Any]:
    """An object's plain settings, and its optimisers' hyperparameters (not which compiled
    kernels TD(lambda) lent it: the update sets those)."""
    out: dict[str, Any] = {}
    for key, value in vars(obj).items():
        if key == "kernels":
            continue
        if isinstance(value, bool | int | float | str | type(None)):
            out[key] = value
        elif isinstance(value, torch.optim.Optimizer):
            out[key] = [{k: v for k, v in g.items() if k != "params"} for g in value.param_groups]
    return out


@pytest.mark.parametrize(("option", "setup", "extra"), RULES)
def test_the_python_api_builds_the_agent_the_command_line_builds(
    make_cfg, option: str, setup: str, extra: list[str]
) -> None:
    cfg = make_cfg(*SETUPS[setup], *extra, f"update={option}", "monitor=none")
    built = build(cfg, evaluation=False)
    agent = built.agent
    env = built.env
    policy = config.make(
        "policy",
        cfg.policy.name,
        action_space=env.single_action_space,
        total_env_steps=cfg.train.max_env_steps,
    )
    assert settings(policy) == settings(agent.policy)
    model = config.make(
        "model",
        cfg.model.name,
        observation_space=env.single_observation_space,
        num_outputs=policy.num_outputs,
    )
    assert settings(model) == settings(agent.model)
    update = config.make(
        "update",
        option,
        model=agent.model,
        make_model=lambda **kw: config.make("model", cfg.model.name, **kw),
        policy=agent.policy,
        num_envs=env.num_envs,
        total_env_steps=cfg.train.max_env_steps,
        seed=cfg.seed,
    )
    assert settings(update.learner) == settings(agent.update.learner)
    assert settings(update.storage) == settings(agent.update.storage)
    built.close()


def test_make_takes_values_on_top_of_the_defaults() -> None:
    from gymnasium import spaces

    policy = config.make("policy", "egreedy", action_space=spaces.Discrete(2), decay=0.5)
    assert (policy.initial_epsilon, policy.decay) == (config.EGreedyConfig.epsilon, 0.5)
    with pytest.raises(ConfigError, match="update=nope is not an option: choose one of"):
        config.make("update", "nope")


# ---------------------------------------------------------------------------- one vocabulary


def test_no_schema_keeps_an_old_spelling_and_schedules_share_their_keys() -> None:
    for old, (new, _) in config.RENAMED.items():
        group, key = old.split(".")
        new_key = new.split(".")[1]
        fields = [config.defaults(group, option) for option in config.GROUP_SCHEMAS[group]]
        assert all(key not in f for f in fields), old
        assert any(new_key in f for f in fields), new
    for option in config.GROUP_SCHEMAS["update"]:
        fields = config.defaults("update", option)
        assert ("lr_schedule" in fields) == ("lr_final_fraction" in fields), option
        assert all(isinstance(v, Schedule) for k, v in fields.items() if k.endswith("_schedule"))


OLD_KEYS = [
    (
        "update.entropy_coef=0.01",
        "update.entropy_coef was renamed update.ent_coef: write update.ent_coef=0.01.",
    ),
    (
        "update.lr_decay=linear",
        "update.lr_decay was renamed update.lr_schedule: write update.lr_schedule=linear.",
    ),
    (
        "update.lr_decay=none",
        "update.lr_decay was renamed update.lr_schedule: write update.lr_schedule=constant.",
    ),
    (
        "update.final_lr_fraction=0.1",
        "update.final_lr_fraction was renamed "
        "update.lr_final_fraction: write update.lr_final_fraction=0.1.",
    ),
]


@pytest.mark.parametrize(("override", "sentence"), OLD_KEYS)
def test_an_old_key_is_refused_in_one_sentence_naming_the_new_key(
    make_cfg, override: str, sentence: str
) -> None:
    with pytest.raises(Exception) as info:  # noqa: PT011 - Hydra's exception, described below
        make_cfg("update=reinforce", override)
    assert describe(info.value) == sentence


def test_the_python_api_refuses_an_old_key_in_the_same_sentence() -> None:
    with pytest.raises(ConfigError) as info:
        config.make("update", "reinforce", lr_decay="none")
    assert str(info.value) == OLD_KEYS[2][1]


# ---------------------------------------------------------------------------- presets, old runs


TUNED = sorted(p.stem for p in (CONF / "tuned").glob("*.yaml"))


@pytest.mark.parametrize("preset", TUNED)
def test_every_tuned_preset_composes_and_builds(make_cfg, preset: str) -> None:
    env, model, policy, update = preset.split("-")
    cfg = make_cfg(f"env={env}", f"model={model}", f"policy={policy}", f"update={update}")
    build(cfg, evaluation=False).close()


def old_logged(make_cfg, *overrides: str) -> dict[str, Any]:
    """A run's logged config as an older version wrote it: its old spellings and values."""
    values = OmegaConf.to_container(make_cfg(*overrides), resolve=True, enum_to_str=True)
    assert isinstance(values, dict)
    update = values["update"]
    for old, (new, spellings) in config.RENAMED.items():
        new_key = new.split(".")[1]
        if new_key in update and update["name"] == "reinforce":
            value = update.pop(new_key)
            back = {v: k for k, v in spellings.items()}
            update[old.split(".")[1]] = back.get(value, value)
    return values


def test_an_older_runs_logged_config_is_translated_with_the_same_meaning(make_cfg) -> None:
    values = old_logged(make_cfg, "env=pendulum", "policy=normal", "update=reinforce")
    values["update"]["entropy_coef"] = 0.003
    assert values["update"]["lr_decay"] == "linear"  # the tuned Pendulum preset's
    assert values["update"]["final_lr_fraction"] == 0.0
    values["update"]["final_lr_fraction"] = 0.2
    cfg = trusted_config(OmegaConf.create(values), [], source="rerun=old")
    update = cfg["update"]
    assert (update.ent_coef, update.lr_schedule, update.lr_final_fraction) == (0.003, "linear", 0.2)
    assert not {"entropy_coef", "lr_decay", "final_lr_fraction"} & set(update)
    built = build(cfg, evaluation=False)
    learner = built.agent.update.learner
    built.close()
    assert (learner.ent_coef, learner.lr_schedule, learner.lr_final_fraction) == (
        0.003,
        Schedule.linear,
        0.2,
    )


def test_an_old_constant_schedule_stays_constant(make_cfg) -> None:
    values = old_logged(make_cfg, "update=reinforce")
    assert values["update"]["lr_decay"] == "none"
    cfg = trusted_config(OmegaConf.create(values), [], source="resume=old")
    assert cfg["update"].lr_schedule == Schedule.constant


def test_an_older_ppo_run_keeps_its_adam_eps_and_its_schedule(make_cfg) -> None:
    """Older PPO runs logged optimizer_kwargs {} (the constructor added eps 1e-5) and no
    lr_final_fraction (linear annealing went to 0): both mean the same today."""
    values = old_logged(make_cfg, "update=ppo")
    values["update"]["optimizer_kwargs"] = {}
    del values["update"]["lr_final_fraction"]
    cfg = trusted_config(OmegaConf.create(values), [], source="rerun=old")
    assert cfg["update"].optimizer_kwargs == {"eps": 1e-5}
    assert cfg["update"].lr_final_fraction == 0.0
    assert cfg["update"].ent_coef == values["update"]["ent_coef"]


def test_keys_added_to_free_form_mappings_come_back_from_the_record(make_cfg) -> None:
    """Keys a command line or preset added to ``update.optimizer_kwargs`` or ``env.kwargs``
    (free-form: torch's and Gymnasium's to check) are in the logged config but not in the local
    composition of the run's groups; resume=, rerun= and evaluation keep them, and an unknown
    key elsewhere is still refused."""
    values = OmegaConf.to_container(
        make_cfg(
            "update=dqn",
            "update.optimizer=rmsprop",
            "+update.optimizer_kwargs.alpha=0.95",
            "+update.optimizer_kwargs.centered=true",
            "env=mountaincar",
            "+env.kwargs.goal_velocity=0.01",
        ),
        resolve=True,
        enum_to_str=True,
    )
    assert isinstance(values, dict)
    cfg = trusted_config(OmegaConf.create(values), [], source="resume=old")
    assert cfg["update"].optimizer_kwargs == {"alpha": 0.95, "centered": True}
    assert cfg.env.kwargs == {"goal_velocity": 0.01}
    built = build(cfg, evaluation=False)
    optimizer = built.agent.update.learner.optimizer
    built.close()
    assert optimizer.defaults["alpha"] == 0.95
    assert optimizer.defaults["centered"] is True
    values["update"]["learning_rate"] = 0.1  # not a key of update=dqn: still refused
    with pytest.raises(ConfigError, match="does not fit this version"):
        trusted_config(OmegaConf.create(values), [], source="resume=old")


@pytest.mark.parametrize(
    ("overrides", "added"),
    [
        (["env=pendulum", "update=ppo"],
         ["policy.use_sde", "policy.sde_sample_freq", "model.ortho_init"]),
        (["env=mountaincar_continuous", "update=sac"], ["policy.use_sde", "model.ortho_init"]),
        (["env=hopper", "update=ppo"], ["model.ortho_init"]),
    ],
)  # fmt: skip
def test_keys_added_since_a_run_was_logged_keep_what_the_run_did(make_cfg, overrides, added):
    """A run logged before gSDE and ``model.ortho_init`` existed used neither and initialised
    orthogonally; today's presets for these envs turn them on. resume=, rerun= and evaluation
    must rebuild the run as it was (else its saved weights do not fit, or a rerun trains
    something else)."""
    values = old_logged(make_cfg, *overrides)
    # The run's group options, as its tags record them (the env's selects today's preset).
    choices = {
        "env": overrides[0].split("=")[1],
        "update": overrides[1].split("=")[1],
        "policy": values["policy"]["name"],
        "model": "mlp",
    }
    today = trusted_config(OmegaConf.create(values), [], source="rerun=new", choices=choices)
    assert any(  # the preset differs from the old meaning (else this test proves nothing)
        OmegaConf.select(today, key)
        != {"policy.use_sde": False, "model.ortho_init": True}.get(key, -1)
        for key in added
    )
    for key in added:
        group, name = key.split(".")
        del values[group][name]
    cfg = trusted_config(OmegaConf.create(values), [], source="rerun=old", choices=choices)
    assert OmegaConf.select(cfg, "policy.use_sde") in (False, None)
    assert cfg.model.ortho_init is True
    if "policy.sde_sample_freq" in added:
        assert cfg.policy.sde_sample_freq == -1
