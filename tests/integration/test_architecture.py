"""Only the edges know the frameworks: algorithm code never imports mlflow, optuna, hydra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from twrl_exp.build import project_root


def test_import_contract_holds() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports)], cwd=project_root(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_checkout_holds_no_symlinks() -> None:
    """A wheel or a Windows checkout would lose them (sweeps/ reaches +sweep= without one)."""
    listed = subprocess.run(
        ["git", "ls-files", "-s"], cwd=project_root(), capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    links = [row.split("\t")[1] for row in listed.stdout.splitlines() if row.startswith("120000")]
    assert links == []


def test_the_learning_core_type_checks_against_what_it_imports() -> None:
    """``mypy src`` alone resolves no ``twrl_exp.*`` import (the package has no ``__init__``),
    so a learner could call a protocol wrongly and pass; here mypy reads them all."""
    mypy = Path(sys.executable).parent / "mypy"
    core = ["agent.py", "runner.py", "protocols.py", "seeding.py", "returns.py", "build.py"]
    packages = ["update", "storage", "policy", "model", "env"]
    targets = [f"src/twrl_exp/{name}" for name in [*core, *packages]]
    cache = ["--cache-dir", ".mypy_cache/learning-core"]  # its own: other options, other cache
    result = subprocess.run(
        [str(mypy), "--explicit-package-bases", "--follow-imports=silent", *cache, *targets],
        cwd=project_root(),
        env={"MYPYPATH": "src", "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
