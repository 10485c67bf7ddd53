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
