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
