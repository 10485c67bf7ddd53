"""The fast tier is enforced: a test under tests/unit/ or tests/config/ that starts a process
fails, whichever way it starts one, even if it catches the refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiers import in_fast_tier

STARTERS = """
import multiprocessing
import os
import subprocess
import sys


def test_subprocess():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_os_system():
    os.system("true")


def test_fork():
    if os.fork() == 0:
        os._exit(0)


def test_multiprocessing_spawn():
    multiprocessing.get_context("spawn").Process(target=print).start()


def test_multiprocessing_fork():
    multiprocessing.get_context("fork").Process(target=print).start()


def test_caught():
    try:
        subprocess.run(["true"])
    except Exception:
        pass


def test_in_process():
    assert sum(range(4)) == 6
"""


def test_a_fast_tier_test_that_starts_a_process_fails_and_says_where_it_belongs(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(**{"tests/unit/test_starters": STARTERS})
    # -rN: no short summary, whose lines repeat the message or not depending on the terminal's
    # width; the failure reports alone are counted.
    result = pytester.runpytest("-p", "tests.tiers", "-p", "no:cacheprovider", "-rN")
    result.assert_outcomes(passed=1, failed=6)
    result.stdout.fnmatch_lines(["*test_caught*tried to start a process (subprocess.Popen)*"])
    refusals = [
        line
        for line in result.stdout.lines
        if line.startswith("E ") and "Move this test to tests/integration/" in line
    ]
    assert len(refusals) == 5, result.stdout.str()


def test_the_tier_is_the_folder_a_test_lives_in(tmp_path: Path) -> None:
    assert in_fast_tier(tmp_path / "tests" / "unit" / "test_x.py", tmp_path)
    assert in_fast_tier(tmp_path / "tests" / "config" / "sub" / "test_x.py", tmp_path)
    assert not in_fast_tier(tmp_path / "tests" / "integration" / "test_x.py", tmp_path)
    assert not in_fast_tier(tmp_path / "tests" / "learning" / "test_x.py", tmp_path)
    assert not in_fast_tier(tmp_path / "elsewhere" / "tests" / "unit" / "test_x.py", tmp_path)
