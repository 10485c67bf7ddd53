"""Small disks that fill up and folders that are read-only, for tests of what users meet.

Tests run as root in CI, and root ignores file permissions: a read-only folder is a tmpfs
remounted read-only, a full disk a small tmpfs filled up. Where mounting is not allowed (not
root, no CAP_SYS_ADMIN) the test is skipped, saying why.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``"6m"``) mounted on ``folder`` (made if missing) for the block."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the disk holding ``folder`` until ``leave`` bytes are free; the filler file."""
    filler = folder / "filler"
    with filler.open("wb") as out:
        free = shutil.disk_usage(folder).free
        try:
            out.write(b"\0" * max(free - leave, 0))
            out.flush()
        except OSError:  # a tmpfs counts whole pages: the last ones may not fit
            pass
    return filler


def remount_read_only(folder: Path) -> None:
    """Make the tmpfs on ``folder`` read-only (for everyone, root included)."""
    done = subprocess.run(
        ["mount", "-o", "remount,ro", str(folder)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot remount a tmpfs read-only here: {done.stderr.strip()}")
