"""Where things are: the configs twrl-exp ships, and the project a user's data belongs to.

Two different places. The **configs** are this package's: ``conf/`` and ``sweeps/`` of the
checkout it runs from (``python train.py`` in the repository, an editable install), or the copy
inside an installed wheel (``twrl_exp/conf``, made at build time). The **project** is the user's:
``$TWRL_PROJECT_ROOT`` if set, else the git repository around the working directory, else the
working directory. The MLflow store, Optuna studies, saved best-trial experiments and the git
commit a run records all belong to the project (the ``paths`` config group).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_PACKAGE = Path(__file__).resolve().parent


def source_root() -> Path | None:
    """The checkout this package runs from (``src/twrl_exp`` inside it), or None when installed."""
    root = _PACKAGE.parents[1]
    in_checkout = _PACKAGE.parent.name == "src" and (root / "conf" / "config.yaml").is_file()
    return root if in_checkout else None


def config_dir() -> Path:
    """The packaged config groups: the checkout's ``conf/``, else the wheel's ``twrl_exp/conf``."""
    root = source_root()
    return root / "conf" if root is not None else _PACKAGE / "conf"


def project_dir() -> Path:
    """Where a user's data goes: ``$TWRL_PROJECT_ROOT``, else the enclosing git repository of the
    working directory, else the working directory."""
    override = os.environ.get("TWRL_PROJECT_ROOT")
    if override:
        return Path(override).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return here


def default_tracking_uri(root: str | Path | None = None) -> str:
    """``$MLFLOW_TRACKING_URI``, else ``sqlite:///<project>/mlflow.db`` (what ``mlflow ui`` started
    in the project folder opens); ``root`` is the project (``paths.root``) where one is given."""
    folder = Path(root).resolve() if root else project_dir()
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{folder / 'mlflow.db'}"


def tracking_uri_of(cfg: Any) -> str:
    """A composed run config's store: ``monitor.mlflow.tracking_uri``, ``paths.mlflow_uri``, then
    the default for ``paths.root``."""
    paths = cfg.get("paths")
    return str(
        cfg.monitor.mlflow.tracking_uri
        or (paths.mlflow_uri if paths else None)
        or default_tracking_uri(paths.root if paths else None)
    )


def user_config_dir() -> Path | None:
    """The project's own config folder (``<project>/conf``), when it is not the packaged one."""
    folder = project_dir() / "conf"
    if not folder.is_dir() or folder.resolve() == config_dir().resolve():
        return None
    return folder.resolve()


def make_importable() -> None:
    """The working directory and the project folder on ``sys.path`` (as ``python -m`` puts the
    working directory there), so ``_target_: my_rules.MyRule`` and ``env.id=my_envs:Env-v0``
    find the user's own modules from an installed console script."""
    import sys

    for folder in (str(Path.cwd()), str(project_dir())):
        if folder not in sys.path:
            sys.path.append(folder)


def commands() -> tuple[str, str]:
    """How the user started us: ``twrl-train`` (installed) or ``python train.py`` (the checkout),
    and the matching evaluate command."""
    import sys

    if Path(sys.argv[0]).name.startswith("twrl-train"):
        return "twrl-train", "twrl-evaluate"
    return "python train.py", "python -m twrl_exp.evaluate"


def train_command() -> list[str]:
    """How a tool here starts ``python train.py``: the project's ``train.py`` where it has one
    (a checkout), else the installed package's entry point (``python -m twrl_exp.train``)."""
    import sys

    script = project_dir() / "train.py"
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "twrl_exp.train"]
