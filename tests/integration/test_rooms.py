"""The rooms of the package (docs/architecture.md) hold: no import circle, no upward arrow.

``lint-imports`` checks the layers contract in pyproject.toml; these tests prove that the contract
covers every module and that it catches what it is there to catch, on a copy of the source."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from twrl_exp.build import project_root

ROOMS = "Rooms: entry points > observers > recording > assembly > learning core > base"


def lint_copy(tmp_path: Path, edit: tuple[str, str] | None = None) -> subprocess.CompletedProcess:
    """lint-imports on a copy of src/ (with ``edit``: text appended to one of its modules)."""
    root = project_root()
    shutil.copytree(root / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(root / "pyproject.toml", tmp_path / "pyproject.toml")
    if edit is not None:
        module, text = edit
        with (tmp_path / "src" / module).open("a") as file:
            file.write(text)
    return lint(tmp_path)


# lint-imports on the copy, not on the checkout: without site's .pth files (the editable
# install's import hook would find the checkout's twrl_exp first), with the copy first on the path.
LINT = """
import sys
sys.path[:0] = sys.argv[1:3]
sys.argv[1:] = ["--no-cache"]
from importlinter.cli import lint_imports_command
lint_imports_command()
"""


def lint(tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-S", "-c", LINT, str(tmp_path / "src"), sysconfig.get_paths()["purelib"]],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_rooms_contract_is_kept_and_names_every_module(tmp_path: Path) -> None:
    result = lint_copy(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{ROOMS} KEPT" in result.stdout


@pytest.mark.parametrize(
    ("module", "text", "why"),
    [
        # recording must not reach up into the observers (the circle this contract ended)
        ("twrl_exp/store.py", "\n\ndef _up():\n    from twrl_exp.monitor import report\n", "up"),
        # the learning core must not reach the assembly floor
        ("twrl_exp/storage/replay.py", "\n\ndef _up():\n    from twrl_exp import config\n", "up"),
        # siblings on one floor stay independent (no circle between them)
        ("twrl_exp/logged.py", "\n\ndef _side():\n    import twrl_exp.store_repair\n", "side"),
    ],
)
def test_an_upward_or_sideways_import_breaks_the_contract(
    tmp_path: Path, module: str, text: str, why: str
) -> None:
    result = lint_copy(tmp_path, (module, text))
    assert result.returncode != 0, result.stdout
    assert f"{ROOMS} BROKEN" in result.stdout


def test_a_new_top_level_module_must_be_given_a_room(tmp_path: Path) -> None:
    """``exhaustive = true``: a module that no room names fails the contract, so the picture in
    docs/architecture.md cannot silently go out of date."""
    root = project_root()
    shutil.copytree(root / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(root / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "src" / "twrl_exp" / "roomless.py").write_text("X = 1\n")
    result = lint(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "roomless" in result.stdout + result.stderr
