"""Build hook: the version from the git tag (agent/version.py), written into the wheel and the sdist as agent/_version.py.

Everything else about the distribution is in pyproject.toml. No build dependency beyond setuptools: the wheel
builds offline (`python -m build --no-isolation`, scripts/release).
"""
import importlib.util
import os

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("_vobox_agent_version", os.path.join(HERE, "agent", "version.py"))
_version = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_version)
VERSION = _version.version(HERE)


class BuildPy(build_py):
    """build_py that also writes agent/_version.py into the build tree (never into the checkout)."""

    def run(self):
        super().run()
        if not self.editable_mode:
            _write(os.path.join(self.build_lib, "agent", "_version.py"))


class Sdist(sdist):
    """sdist whose tree carries agent/_version.py, so a build from it (no .git) knows its version."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        path = os.path.join(base_dir, "agent", "_version.py")
        if os.path.exists(path):
            os.unlink(path)   # a hard link to the checkout's file (if any): never write through it
        _write(path)


def _write(path):
    with open(path, "w", encoding="utf-8") as f:
        f.write(_version.module_text(VERSION))


setup(version=VERSION, cmdclass={"build_py": BuildPy, "sdist": Sdist})
