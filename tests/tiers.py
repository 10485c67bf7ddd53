"""The fast tier stays in-process: a test under tests/unit/ or tests/config/ that starts a
process fails, even if it catches the error its start raised.

`make test-fast` runs these two folders after every edit, so they must not wait on a child
process (a subprocess, a fork, a multiprocessing worker, an MLflow writer). A test that needs one
belongs in tests/integration/. Registered by tests/conftest.py as a pytest plugin.
"""

from __future__ import annotations

import _posixsubprocess
import os
import subprocess
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

FAST_FOLDERS = (("tests", "unit"), ("tests", "config"))
"""Folders of the fast tier, relative to the rootdir."""

_OS_STARTS = ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system")


class ProcessStartInFastTier(RuntimeError):
    """Raised where a fast-tier test would have started a process."""


def in_fast_tier(path: Path, rootdir: Path) -> bool:
    try:
        parts = path.relative_to(rootdir).parts
    except ValueError:
        return False
    return any(parts[: len(folder)] == folder for folder in FAST_FOLDERS)


@contextmanager
def no_processes(attempts: list[str]) -> Iterator[None]:
    """Every way Python starts a process raises ProcessStartInFastTier and is appended to
    ``attempts`` (subprocess, os.system/popen, fork, posix_spawn, multiprocessing of any start
    method, pty)."""

    def refuse(what: str) -> Callable[..., Any]:
        def _refused(*args: Any, **kwargs: Any) -> Any:
            attempts.append(what)
            raise ProcessStartInFastTier(
                f"{what} started a process in a fast-tier test; the fast tier (tests/unit, "
                "tests/config: `make test-fast`) is in-process only. Move this test to "
                "tests/integration/."
            )

        return _refused

    originals: list[tuple[Any, str, Any]] = [
        (subprocess.Popen, "_execute_child", subprocess.Popen._execute_child),  # type: ignore[attr-defined]
        (_posixsubprocess, "fork_exec", _posixsubprocess.fork_exec),
    ]
    originals += [(os, name, getattr(os, name)) for name in _OS_STARTS if hasattr(os, name)]
    for owner, name, _ in originals:
        label = "subprocess.Popen" if name == "_execute_child" else f"{owner.__name__}.{name}"
        setattr(owner, name, refuse(label))
    try:
        yield
    finally:
        for owner, name, original in reversed(originals):
            setattr(owner, name, original)


def _guarded(item: pytest.Item) -> Generator[None, Any, None]:
    if not in_fast_tier(item.path, item.config.rootpath):
        yield
        return
    attempts: list[str] = []
    with no_processes(attempts):
        outcome = yield
    if attempts and outcome.excinfo is None:
        # The test caught the refusal and went on: it still fails the tier.
        outcome.force_exception(
            ProcessStartInFastTier(
                f"{item.nodeid} tried to start a process ({', '.join(attempts)}); the fast "
                "tier is in-process only. Move it to tests/integration/."
            )
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, None]:
    yield from _guarded(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, None]:
    yield from _guarded(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, Any, None]:
    yield from _guarded(item)
