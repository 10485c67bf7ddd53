"""The fast tier stays in-process: a test under tests/unit/ or tests/config/ that starts a
process fails, even if it catches the error its start raised.

`make test-fast` runs these two folders after every edit, so they must not wait on a child
process (a subprocess, a fork, a multiprocessing worker, an MLflow writer). A test that needs one
belongs in tests/integration/. Registered by tests/conftest.py as a pytest plugin.
"""

from __future__ import annotations

import _posixsubprocess
import os
import platform
import re
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


def pytest_sessionstart(session: pytest.Session) -> None:
    """Libraries that start a process once and cache what it said, started here before any
    test is guarded: Python asks ``uname -p`` the first time anything reads the platform's
    processor (MLflow does when it opens a run), so that which test is first does not
    matter."""
    del session
    platform.processor()
    # MuJoCo's import asks GLFW for its version (a process): once, here, as the product
    # prepares it (twrl_exp.env.prepare_mujoco), for the MuJoCo presets' build tests.
    from twrl_exp.env import prepare_mujoco

    prepare_mujoco()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, None]:
    yield from _guarded(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, None]:
    yield from _guarded(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, Any, None]:
    yield from _guarded(item)


# ---------------------------------------------------------------------------- two workers
# `make test` runs with --dist loadgroup --no-loadscope-reorder, scheduled here: each test is its
# own unit of work, sent in the order below, except the tests of a file with a module-scoped
# fixture (one cluster, one trained store, one install), which stay together on one worker.
# (xdist's own xdist_group marks do nothing under pytest 9: it renames items by an attribute
# pytest 9 no longer reads.) The cluster tests run one after another on one cluster, so they go
# first and the other worker takes everything else meanwhile; long tiers before short tests, so
# that the two workers finish together.

_MODULE_FIXTURE = re.compile(r"""scope=["'](module|package)["']""")


def _order(item: pytest.Item) -> int:
    if item.get_closest_marker("cluster"):
        return 0
    parts = item.path.relative_to(item.config.rootpath).parts
    return {"learning": 1, "integration": 2}.get(parts[1] if len(parts) > 1 else "", 3)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_order)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    tests = config.rootpath / "tests"
    together = {
        str(path.relative_to(config.rootpath))
        for path in tests.rglob("test_*.py")
        if _MODULE_FIXTURE.search(path.read_text())
    }

    class TogetherWhereAFixtureIsShared(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path in together else nodeid

    return TogetherWhereAFixtureIsShared(config, log)
