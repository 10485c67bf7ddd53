"""A logged run as the source of something new: ``rerun=``, ``resume=`` and ``load_agent``.

Stores are shared between people, so nothing read from one may name code. A logged config is
therefore never instantiated as it is: the run's group options (``model=mlp``, ...) are composed
from this machine's config files, which alone decide every ``_target_``, and the logged values are
merged on top, type-checked by the schemas. A ``_target_`` in the logged config that differs from
the local one, or any other instantiation key, refuses the run in one sentence. Checkpoints are
read as tensors and plain data only, after their SHA-256 is checked against the run's record.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from twrl_exp import processes, serialization, store
from twrl_exp.errors import ConfigError

GROUPS = ("env", "model", "policy", "update")
CHOICE_TAG = "twrl.choice."
_CODE_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")
_OPTION = re.compile(r"^[A-Za-z0-9_\-]+$")
# A run started from a logged one is a plain run: no sweep trial, no further resume/rerun.
_RESET = {"resume": None, "rerun": None}
OBSERVERS = "monitor/observers"  # +monitor/observers=<name>: options keyed by name, code-free logs
_OBSERVING_GROUPS = ("monitor", OBSERVERS)
_TRIAL_RESET = {"study_name": None, "storage": None, "number": None, "heartbeat_interval": None}


@dataclass
class ResumeSource:
    config: DictConfig
    run_id: str
    checkpoint: dict[str, Any] | None  # the run's state at its last checkpoint
    env_steps: int
    status: str = "FAILED"  # how the resumed run ended
    choices: dict[str, str] | None = None  # its group options


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def find_run(client: Any, uri: str, key: str, run_id: str) -> Any:
    """The run ``run_id`` or a sentence saying why it cannot serve as ``key=``."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":  # the store failed, e.g. it is damaged
            raise store.store_error(uri, exc) from exc
        raise ConfigError(
            f"{key}={run_id} names no run in {uri}; give an MLflow run id from `mlflow ui` or "
            "the leaderboard."
        ) from exc
    if run.info.lifecycle_stage == "deleted":
        successor = run.data.tags.get("twrl.superseded_by")
        if successor:
            raise ConfigError(
                f"{key}={run_id}: that run was resumed as run {successor}; use {key}={successor}."
            )
        raise ConfigError(
            f"{key}={run_id} is a deleted run; restore it first "
            f"(mlflow runs restore --run-id {run_id})."
        )
    return run


def quiet_downloads() -> None:
    """No download progress bars from MLflow: a run's terminal shows its own progress only."""
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def download_config(client: Any, run_id: str, path: str, source: str) -> DictConfig:
    """A logged YAML config, parsed safely (no YAML tags, no objects)."""
    from mlflow.exceptions import MlflowException

    quiet_downloads()
    with tempfile.TemporaryDirectory(prefix="twrl-logged-") as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except (MlflowException, OSError) as exc:
            raise ConfigError(f"{source}: the run has no logged {path}.") from exc
        try:
            loaded = OmegaConf.load(local)
        except Exception as exc:
            raise ConfigError(f"{source}: its {path} is not a valid config ({exc}).") from exc
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{source}: its {path} is not a mapping.")
    return loaded


def _code_keys(node: Any, prefix: str = "") -> list[str]:
    """Paths of instantiation keys (``_target_``, ...) anywhere in a plain container."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key in _CODE_KEYS:
                found.append(path)
            found += _code_keys(value, path)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _code_keys(value, f"{prefix}[{index}]")
    return found


def _interpolations(node: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``(path, value)`` of every string holding an interpolation (``${...}``)."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _interpolations(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _interpolations(value, f"{prefix}[{index}]")
    elif isinstance(node, str) and "${" in node:
        found.append((prefix, node))
    return found


def group_options(
    values: dict[Any, Any], choices: dict[str, str] | None, source: str
) -> dict[str, str]:
    """The logged run's group options: those recorded with it (tags), else each group's
    logged ``name``."""
    picked = dict(choices or {})
    for group in GROUPS:
        node = values.get(group)
        if group not in picked and isinstance(node, dict) and isinstance(node.get("name"), str):
            picked[group] = node["name"]
    bad = [f"{g}={c}" for g, c in picked.items() if not _OPTION.match(c)]
    if bad:
        raise ConfigError(f"{source}: its logged group option {bad[0]} is not an option name.")
    return picked


def compose_config(overrides: list[str]) -> DictConfig:
    """``config`` composed from the config search path (the app's, inside a Hydra app)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from twrl_exp.config import register_configs
    from twrl_exp.paths import config_dir, user_config_dir

    register_configs()
    if GlobalHydra.instance().is_initialized():
        return compose("config", overrides)
    user = user_config_dir()
    if user is not None:  # the project's own groups (update=my_rule), as `-cd conf` gave them
        overrides = [*overrides, f"hydra.searchpath=[file://{user}]"]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("config", overrides)


def _open_free_form(cfg: DictConfig) -> None:
    """Let the schema's free-form mappings (``dict[str, Any]`` fields: ``env.kwargs``,
    ``update.optimizer_kwargs``) take the logged run's keys: a key a preset or the command
    line added there (``+update.optimizer_kwargs.weight_decay=...``) is in the logged config
    but not in the local composition, and only Gymnasium or torch can check it."""
    for key in list(cfg.keys()):
        node = cfg._get_node(key)
        if not isinstance(node, DictConfig):
            continue
        meta = node._metadata
        if meta.object_type is dict and getattr(meta.ref_type, "__origin__", None) is dict:
            OmegaConf.set_struct(node, False)
        else:
            _open_free_form(node)


def trusted_config(
    logged: DictConfig,
    overrides: list[str],
    *,
    source: str,
    choices: dict[str, str] | None = None,
) -> DictConfig:
    """``logged``'s values on the local composition of its group options, then ``overrides``.

    ``choices`` are group options recorded with the run (tags); otherwise each group's logged
    ``name`` is its option.
    """
    from hydra.errors import HydraException

    from twrl_exp.config import upgrade_logged

    values = OmegaConf.to_container(logged, resolve=False)
    assert isinstance(values, dict)
    upgrade_logged(values)  # an older run's spellings (update.entropy_coef, ...) as today's
    roots = {f"{group}.{key}" for group in GROUPS for key in _CODE_KEYS}
    planted = [path for path in _code_keys(values) if path not in roots]
    if planted:
        raise ConfigError(
            f"{source}: its logged config has the instantiation key {planted[0]}, which a store "
            "may not set; refusing it (nothing was run)."
        )
    # A run's config is logged resolved, so an interpolation in it was put there by hand. Read
    # back, ${oc.env:...} would copy this machine's environment into a shared store, and
    # ${oc.decode:...} or any other resolver would run: none is evaluated.
    values.pop("paths", None)  # where data goes is this machine's business, not the record's
    planted_values = _interpolations(values)
    if planted_values:
        path, text = planted_values[0]
        raise ConfigError(
            f"{source}: its logged config has the interpolation {text[:80]!r} at {path}; a "
            "logged config holds plain values only, so it is refused (nothing was run)."
        )
    picked = group_options(values, choices, source)
    changed = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in GROUPS]
    if changed:
        raise ConfigError(
            f"{source} keeps the logged run's groups, so {changed[0]} cannot be given with it; "
            "start a new run for another composition."
        )
    # monitor=quiet and the like choose anew how the run is observed: that group's logged
    # values give way to the chosen option's.
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ("resume", "rerun")]
    chosen = [o for o in kept if o.split("=", 1)[0].lstrip("+~") in _OBSERVING_GROUPS]
    kept = [o for o in kept if o not in chosen]
    for override in chosen:
        values.pop(override.split("=", 1)[0].lstrip("+~"), None)
    chosen = _with_logged_observers(chosen, values, source)
    try:
        composed = compose_config([*(f"{g}={c}" for g, c in picked.items()), *chosen])
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(
            f"{source}: its groups {', '.join(f'{g}={c}' for g, c in picked.items())} do not "
            f"compose here ({_first_line(exc)})."
        ) from exc
    for group in GROUPS:
        node = values.get(group)
        if not isinstance(node, dict):
            continue
        local = composed[group].get("_target_") if group in composed else None
        if "_target_" in node and node["_target_"] != local:
            raise ConfigError(
                f"{source}: its logged config names {node['_target_']} for {group}, but "
                f"{group}={picked.get(group, '?')} builds {local} here; refusing to run code "
                "named by a store (nothing was run)."
            )
        for key in _CODE_KEYS:
            node.pop(key, None)
    values.update(_RESET)
    if isinstance(values.get("trial"), dict):
        values["trial"].update(_TRIAL_RESET)
    _open_free_form(composed)
    try:
        merged = OmegaConf.merge(composed, values)
    except OmegaConfBaseException as exc:
        where = getattr(exc, "full_key", None)
        raise ConfigError(
            f"{source}: the logged config does not fit this version of twrl-exp "
            f"({_first_line(exc)}{f', at {where}' if where else ''})."
        ) from exc
    for override in kept:  # the command line's values, each checked against the run's groups
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([override]))
        except OmegaConfBaseException as exc:
            raise ConfigError(
                f"{override} does not apply to {source} (its groups are "
                f"{', '.join(f'{g}={c}' for g, c in picked.items())}): {_first_line(exc)}."
            ) from exc
    assert isinstance(merged, DictConfig)
    return merged


def _with_logged_observers(chosen: list[str], values: dict[Any, Any], source: str) -> list[str]:
    """``chosen`` with one ``+monitor/observers=[...]``: the logged run's observers (its
    ``monitor.observers`` keys, each an option's name) and the command line's. This checkout's
    options name the code (a record names none), the logged values their settings;
    ``~monitor/observers`` drops the logged ones."""
    asked = [o for o in chosen if o.split("=", 1)[0].lstrip("+~") == OBSERVERS]
    monitor = values.get("monitor")
    logged = monitor.get("observers") if isinstance(monitor, dict) else None
    names = list(logged) if isinstance(logged, dict) else []
    for override in asked:
        if override.startswith("~"):
            names = []
            if isinstance(logged, dict):
                logged.clear()
            continue
        listed = override.partition("=")[2].strip().strip("[]")
        names += [name.strip() for name in listed.split(",") if name.strip()]
    names = list(dict.fromkeys(str(name) for name in names))
    bad = [name for name in names if not _OPTION.match(name)]
    if bad:
        raise ConfigError(f"{source}: its logged observer {bad[0]!r} is not an option name.")
    rest = [o for o in chosen if o not in asked]
    return [*rest, f"+{OBSERVERS}=[{','.join(names)}]"] if names else rest


def logged_choices(run: Any) -> dict[str, str]:
    tags = run.data.tags
    return {k.removeprefix(CHOICE_TAG): v for k, v in tags.items() if k.startswith(CHOICE_TAG)}


def rerun_config(uri: str, run_id: str, overrides: list[str]) -> tuple[DictConfig, dict[str, str]]:
    """The logged run's config for a new run, and its group options (to record with it)."""
    return _logged_config(uri, "rerun", run_id, overrides)


def _logged_config(
    uri: str, key: str, run_id: str, overrides: list[str]
) -> tuple[DictConfig, dict[str, str]]:
    client = store.open_client(uri)
    run = find_run(client, uri, key, run_id)
    source = f"{key}={run_id}"
    logged = download_config(client, run_id, "config.yaml", source)
    config = trusted_config(logged, overrides, source=source, choices=logged_choices(run))
    return config, _recorded_options(logged, run, source)


def continued_config(uri: str, key: str, run_id: str, overrides: list[str]) -> DictConfig:
    """The config ``resume=run_id`` or ``rerun=run_id`` (``key``) with ``overrides`` trains:
    the logged run's, with the overrides on top (what a launcher groups such a job by)."""
    return _logged_config(uri, key, run_id, overrides)[0]


def _recorded_options(logged: DictConfig, run: Any, source: str) -> dict[str, str]:
    values = OmegaConf.to_container(logged, resolve=False)
    assert isinstance(values, dict)
    return group_options(values, logged_choices(run), source)


def download_checkpoint(client: Any, run: Any, source: str) -> dict[str, Any] | None:
    """The run's last checkpoint, verified against its recorded SHA-256; None if it has none."""
    from mlflow.exceptions import MlflowException

    quiet_downloads()
    run_id = run.info.run_id
    record = run.data.tags.get(store.CHECKPOINT_TAG)
    wanted = json.loads(record) if record else {"path": "checkpoints/last.pt", "sha256": None}
    with tempfile.TemporaryDirectory(prefix="twrl-checkpoint-") as tmp:
        try:
            local = Path(client.download_artifacts(run_id, wanted["path"], tmp))
        except (MlflowException, OSError) as exc:
            if record:
                raise ConfigError(
                    f"{source}: its checkpoint {wanted['path']} is missing from the artifact store."
                ) from exc
            return None
        if wanted.get("sha256") and serialization.sha256(local) != wanted["sha256"]:
            raise ConfigError(
                f"{source}: its checkpoint {wanted['path']} does not match the SHA-256 recorded "
                "when it was written (damaged or tampered with); refusing it."
            )
        state = serialization.load(local, what=f"checkpoint of run {run_id}")
    if not isinstance(state, dict) or "history" not in state:
        raise ConfigError(f"{source}: its checkpoint is not a twrl-exp checkpoint.")
    return state


def resume_source(uri: str, run_id: str, overrides: list[str]) -> ResumeSource:
    """What ``resume=run_id`` continues: the run's config, checkpoint and env step."""
    client = store.open_client(uri)  # marks runs of dead processes FAILED first
    source = f"resume={run_id}"
    run = find_run(client, uri, "resume", run_id)
    if run.info.status == "RUNNING":
        where = processes.describe(run.data.tags.get(store.PID_TAG, "?"))
        raise ConfigError(
            f"{source}: the run is still running ({where}); stop it first, or wait for it."
        )
    logged = download_config(client, run_id, "config.yaml", source)
    config = trusted_config(logged, overrides, source=source, choices=logged_choices(run))
    checkpoint = download_checkpoint(client, run, source)
    steps = int(checkpoint["history"]["env_steps"]) if checkpoint is not None else 0
    return ResumeSource(
        config=config,
        run_id=run_id,
        checkpoint=checkpoint,
        env_steps=steps,
        status=run.info.status,
        choices=_recorded_options(logged, run, source),
    )
