"""Shared test policy: under CI=true a skipped test is a failure (a green CI means the lab tests ran)."""
from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which counts as a failure: {reason}"


# Lab fixtures (session-scoped `lab`, etc.) live in tests/lab_fixtures.py.
pytest_plugins = ["tests.lab_fixtures"]


@pytest.fixture
def agents():
    """Agents (tests.agent.agent_proc.AgentProc) started by a test; any still running at the end are killed."""
    started: list = []
    yield started
    for a in started:
        a.ensure_gone()
