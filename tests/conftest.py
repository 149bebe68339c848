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

# Fixtures that need root, a network namespace, a Docker engine or a server (InfluxDB): a test that uses one,
# directly or through another fixture, is a lab test whatever its file says, so `-m 'not lab'` is a unit run.
LAB_FIXTURES = frozenset({
    "lab", "lab_available", "clean_lab",                                # tests/lab_fixtures.py
    "podman_lab", "engine_lab", "engine_docker_host", "clean_engine_lab",  # tests/lab_fixtures.py
    "wide_lab",                                                         # tests/agent/test_run_lab.py
    "ops_lab",                                                          # tests/agent/ops/conftest.py
    "rlab", "docker_proxy",                                             # tests/remediations/conftest.py
    "segment",                                                          # tests/probes/conftest.py
    "throwaway_netns", "bare_netns", "influx_server", "module_influx",  # tests/agent/storage/conftest.py
})


@pytest.hookimpl(tryfirst=True)   # before pytest's own -m selection reads the marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if LAB_FIXTURES.intersection(fixtures):
            item.add_marker(pytest.mark.lab)
        # a lab fixture parametrized over the engines (engine_lab, a module's own lab) in its podman run
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "podman_lab" in fixtures or any(k.endswith("lab") and v == "podman" for k, v in params.items()):
            item.add_marker(pytest.mark.podman)


@pytest.fixture
def agents():
    """Agents (tests.agent.agent_proc.AgentProc) started by a test; any still running at the end are killed."""
    started: list = []
    yield started
    for a in started:
        a.ensure_gone()


@pytest.fixture(autouse=True, scope="session")
def no_default_config(tmp_path_factory):
    """Without -c a command reads $VOBOX_AGENT_CONFIG, else /etc/vobox-agent/agent.toml (issue 33): point the
    variable at a file that does not exist, for this process and every command a test starts, so no test reads
    this machine's /etc. A test that wants a default config sets the variable itself (monkeypatch.setenv)."""
    absent = str(tmp_path_factory.mktemp("no-default-config") / "absent.toml")
    old = os.environ.get("VOBOX_AGENT_CONFIG")
    os.environ["VOBOX_AGENT_CONFIG"] = absent
    yield absent
    if old is None:
        os.environ.pop("VOBOX_AGENT_CONFIG", None)
    else:
        os.environ["VOBOX_AGENT_CONFIG"] = old
