"""Without -c, commands read $VOBOX_AGENT_CONFIG, else /etc/vobox-agent/agent.toml, and say so (issue 33 item 1).

tests/conftest.py points VOBOX_AGENT_CONFIG at a missing file for the whole session: these tests set it
themselves (monkeypatch), and `default_config` takes the environment and the default path as arguments.
"""
from __future__ import annotations

import pytest

from agent.commands import CONFIG_ENV, DEFAULT_CONFIG, default_config
from tests.agent.commands.cli_helpers import dead_port, run_cli, vm_config


def test_default_path_rule():
    assert default_config({}) == (DEFAULT_CONFIG, "the default")
    assert DEFAULT_CONFIG == "/etc/vobox-agent/agent.toml"
    assert default_config({CONFIG_ENV: "/srv/a.toml"}) == ("/srv/a.toml", "$VOBOX_AGENT_CONFIG")
    assert default_config({CONFIG_ENV: ""}, default="/x/agent.toml") == ("/x/agent.toml", "the default")


def test_the_session_never_reads_this_machines_etc():
    import os

    assert os.environ[CONFIG_ENV] != DEFAULT_CONFIG and not os.path.exists(os.environ[CONFIG_ENV])


@pytest.fixture
def env_config(tmp_path, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    path = vm_config(tmp_path / "agent.toml", state, f"http://127.0.0.1:{dead_port()}")
    monkeypatch.setenv(CONFIG_ENV, path)
    return path


@pytest.mark.parametrize("argv", [
    pytest.param(["check-config"], id="check-config"),
    pytest.param(["check-config", "--json"], id="check-config-json"),
    pytest.param(["maintenance", "list"], id="maintenance-list"),
])
def test_a_command_that_needs_a_config_reads_the_default_and_says_which(argv, env_config):
    code, out, err = run_cli(argv)
    assert code == 0, (out, err)
    assert err.strip().splitlines()[0] == f"vobox-agent: reading config {env_config} ($VOBOX_AGENT_CONFIG; -c FILE " \
                                          "to choose another)"


def test_c_wins_and_is_not_announced(env_config, tmp_path):
    code, out, err = run_cli(["check-config", "-c", env_config])
    assert code == 0 and "reading config" not in err and out.startswith("OK: 1 box")


@pytest.mark.parametrize("argv", [
    pytest.param(["check-config"], id="check-config"),
    pytest.param(["status"], id="status"),
    pytest.param(["events", "--since", "1h"], id="events"),
    pytest.param(["report"], id="report"),
    pytest.param(["doctor"], id="doctor"),
    pytest.param(["remediate", "v", "exec"], id="remediate"),
    pytest.param(["maintenance", "start", "--all"], id="maintenance"),
    pytest.param(["run", "--cycles", "1"], id="run"),
])
def test_a_missing_default_is_one_line_exit_2(argv, tmp_path, monkeypatch):
    missing = str(tmp_path / "none.toml")
    monkeypatch.setenv(CONFIG_ENV, missing)
    code, out, err = run_cli(argv)
    assert code == 2, (code, out, err)
    assert err.count("\n") == 1 and "vobox-agent init --output" in err, err
    if argv[0] == "report":   # its own words (InfluxDB or --prometheus), then the same
        assert f"the default {missing} ($VOBOX_AGENT_CONFIG) does not exist" in err, err
    else:
        assert f"-c FILE not given and {missing} ($VOBOX_AGENT_CONFIG) does not exist" in err, err


@pytest.mark.parametrize("argv", [
    pytest.param(["evidence", "--since", "1h"], id="evidence"),
    pytest.param(["probe"], id="probe"),
])
def test_a_command_that_works_without_a_config_never_fails_on_a_missing_default(argv, tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "none.toml"))
    code, out, err = run_cli(argv)
    assert "reading config" not in err and "no config" not in err, err
    if argv[0] == "probe":   # no ADDRESS and no config: the usage error it always gave
        assert code == 2 and "give at least one ADDRESS" in err
    else:
        assert code == 0, (code, out, err)


def test_evidence_reads_the_default_when_it_exists(env_config, tmp_path):
    code, out, err = run_cli(["evidence", "--since", "1h"])
    assert code == 0 and f"reading config {env_config}" in err, (code, out, err)


@pytest.mark.parametrize("argv, message", [
    pytest.param(["probe", "--timeout", "500ms"], "give at least one ADDRESS", id="probe-timeout-ms"),
    pytest.param(["probe", "--timeout", "2m"], "expected a timeout in seconds > 0 and <= 60", id="probe-timeout-2m"),
    pytest.param(["status", "--interval", "0s", "--watch"], "expected an interval in seconds > 0", id="interval-0s"),
])
def test_seconds_options_take_units(argv, message):
    """The command line's seconds read like the config's: "500ms" is half a second (then the usual usage error)."""
    code, _, err = run_cli(argv)
    assert code == 2 and message in err, err
