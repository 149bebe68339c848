"""Files the config names (webhook token, a command's executable): check-config and run say which key, exit 2, no traceback."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def config(tmp_path, token_file, executable):
    text = f"""
[agent]
state_dir = "{tmp_path / 'state'}"
[remediation]
enabled = true
webhook_listen = "127.0.0.1:9787"
webhook_token_file = "{token_file}"
[[box]]
name = "vm1"
kind = "vm"
ipv4 = "192.0.2.20"
remediate = ["command"]
command = ["{executable}", "{{box}}"]
"""
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return str(path)


def agent(*args):
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("token, executable, error", [
    pytest.param("missing", "true", "remediation.webhook_token_file: cannot read", id="token-file-missing"),
    pytest.param("empty", "true", "remediation.webhook_token_file:", id="token-file-empty"),
    pytest.param("ok", "/nonexistent/vobox-reset",
                 "[[box]] \"vm1\" (#1, line 8).command[0]: '/nonexistent/vobox-reset' does not exist",
                 id="command-path-missing"),
    pytest.param("ok", "vobox-no-such-hook", "[[box]] \"vm1\" (#1, line 8).command[0]: 'vobox-no-such-hook' not found on PATH",
                 id="command-not-on-path"),
    pytest.param("ok", "NOT_EXECUTABLE", "is not executable", id="command-not-executable"),
])
def test_a_missing_file_is_one_clear_line_and_exit_2(tmp_path, command, token, executable, error):
    token_file = tmp_path / "webhook.token"
    if token == "ok":
        token_file.write_text("s3cret\n")
    elif token == "empty":
        token_file.write_text("\n")
    if executable == "NOT_EXECUTABLE":
        executable = str(tmp_path / "hook.sh")
        (tmp_path / "hook.sh").write_text("#!/bin/sh\n")
        os.chmod(tmp_path / "hook.sh", 0o644)
    proc = agent(command, "-c", config(tmp_path, token_file, executable))
    assert proc.returncode == 2, proc.stderr
    assert error in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 2   # "FILE: 1 error" and the error


def test_with_the_files_in_place_check_config_says_ok(tmp_path):
    token_file = tmp_path / "webhook.token"
    token_file.write_text("s3cret\n")
    proc = agent("check-config", "-c", config(tmp_path, token_file, "true"))
    assert proc.returncode == 0 and proc.stdout.startswith("OK:"), proc.stderr
