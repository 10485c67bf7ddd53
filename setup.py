"""Build hook: the wheel carries the config groups and sweeps as ``twrl_exp/conf``.

The repository keeps ``conf/`` and ``sweeps/`` at its root (the project's layout); a built
wheel gets a copy of both inside the package, with the sweeps as a real ``conf/sweep`` folder
rather than the checkout's symlink. Editable installs read the checkout's files directly.
Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithConfigs(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "twrl_exp" / "conf"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(ROOT / "conf", target, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "sweeps", target / "sweep")


setup(cmdclass={"build_py": BuildPyWithConfigs})
