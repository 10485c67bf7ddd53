"""Installing twrl-exp costs other programs nothing: Hydra's plugin scan of our sweeper imports
nothing heavy, and no module of ours changes global state when it is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from twrl_exp.build import project_root

APP = """
import json, sys
import hydra

@hydra.main(version_base=None)
def main(cfg):
    names = ("torch", "optuna", "mlflow", "twrl_exp", "matplotlib", "sqlalchemy", SWEEPER)
    print(json.dumps({name: name in sys.modules for name in names}))

main()
"""


def test_an_unrelated_hydra_app_imports_neither_torch_nor_optuna(tmp_path: Path) -> None:
    sweeper = "hydra_plugins.twrl_optuna_sweeper.sweeper"
    (tmp_path / "app.py").write_text(f"SWEEPER = {sweeper!r}\n" + APP)
    result = subprocess.run(
        [sys.executable, "app.py", f"hydra.run.dir={tmp_path / 'out'}"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded.pop(sweeper), "the plugin was not scanned: this test would prove nothing"
    assert loaded == dict.fromkeys(loaded, False)


SNAPSHOT = """
import json, logging, os, pkgutil, importlib, warnings, sys
# Third-party libraries first: what they do on import is theirs, not ours.
import numpy, torch, gymnasium, mlflow, optuna, hydra, omegaconf, rich, matplotlib, sqlalchemy
def state():
    loggers = {n: l.level for n, l in logging.root.manager.loggerDict.items()
               if isinstance(l, logging.Logger)}
    return {
        "env": dict(os.environ),
        "root": logging.root.level,
        "loggers": {
            n: v for n, v in loggers.items() if not n.startswith(("twrl_exp", "hydra_plugins"))
        },
        "warnings": [repr(f) for f in warnings.filters],
        "backend": matplotlib.rcParams._get_backend_or_none(),
    }
before = state()
import twrl_exp, hydra_plugins.twrl_optuna_sweeper
names = []
for package in (twrl_exp, hydra_plugins.twrl_optuna_sweeper):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.endswith("__main__"):  # a command, run by importing it
            continue
        importlib.import_module(info.name)
        names.append(info.name)
after = state()
changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
if "loggers" in changed:  # new loggers of third-party modules imported late are not changes
    b, a = changed["loggers"]
    diff = {n: (b.get(n), a[n]) for n in a if n in b and b[n] != a[n]}
    diff.update({n: a[n] for n in a if n not in b and a[n] != logging.NOTSET})
    changed["loggers"] = diff or None
    if not diff: del changed["loggers"]
if "env" in changed:
    b, a = changed["env"]
    changed["env"] = {k: a.get(k) for k in set(a) | set(b) if a.get(k) != b.get(k)}
print(json.dumps({"modules": len(names), "changed": changed}, default=str))
"""


def test_importing_our_modules_changes_no_global_state() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SNAPSHOT],
        cwd=project_root(),
        env={**os.environ, "PYTHONPATH": str(project_root() / "src")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["modules"] > 30
    assert report["changed"] == {}
