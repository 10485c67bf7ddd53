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


def test_mypy_reads_the_package_it_checks() -> None:
    """The package has no ``__init__``: without ``mypy_path = "src"`` and explicit package
    bases in pyproject, ``mypy src`` names its modules ``errors``, ``storage.replay``… and
    every ``twrl_exp.*`` import is ``Any`` (``ignore_missing_imports``), so a learner could
    call a protocol wrongly and ``make lint`` would still pass."""
    mypy = Path(sys.executable).parent / "mypy"
    probe = "from twrl_exp.storage.replay import ReplayStorage\nreveal_type(ReplayStorage)\n"
    revealed = subprocess.run(
        [str(mypy), "-c", probe], cwd=project_root(), capture_output=True, text=True, timeout=300
    )
    assert "twrl_exp.storage.replay.ReplayStorage" in revealed.stdout, revealed.stdout
    wrong = "from twrl_exp.returns import gae\ngae(1, 2, 3)\n"
    caught = subprocess.run(
        [str(mypy), "-c", wrong], cwd=project_root(), capture_output=True, text=True, timeout=300
    )
    assert caught.returncode == 1, caught.stdout
    assert "gae" in caught.stdout, caught.stdout
    whole = subprocess.run(
        [str(mypy), "src"], cwd=project_root(), capture_output=True, text=True, timeout=300
    )
    assert whole.returncode == 0, whole.stdout + whole.stderr
