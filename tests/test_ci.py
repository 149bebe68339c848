"""CI's script: lint and types run before the README's test command, which stays its last line (issue 25)."""
from __future__ import annotations

import os
import stat

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def _commands(path: str) -> list[str]:
    with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
        return [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]


def test_ci_lints_before_the_tests_and_ends_with_the_readme_test_command():
    commands = _commands(".ci/run")
    assert commands[-1] == "bash scripts/test", commands
    assert "bash scripts/lint" in commands, commands
    assert commands.index("bash scripts/setup") < commands.index("bash scripts/lint") < len(commands) - 1


def test_lint_script_is_executable_and_runs_both_tools_from_the_venv():
    mode = os.stat(os.path.join(ROOT, "scripts", "lint")).st_mode
    assert mode & stat.S_IXUSR
    text = "\n".join(_commands("scripts/lint"))
    assert '"$venv/bin/ruff" check' in text and '"$venv/bin/mypy"' in text
