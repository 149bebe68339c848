"""doctor checks the files the config names (agent.core.config.file_errors, shared with check-config) and the
commands run inside the containers (`exec` steps and checks), each missing one a FAIL naming its key path."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent import netns
from agent.core import config
from agent.ops import doctor

AGENT_BIN = os.path.join(os.path.dirname(sys.executable), "vobox-agent")


def _config(tmp_path, **files) -> str:
    text = f"""
[agent]
state_dir = "{tmp_path / 'state'}"

[influxdb]
url = "https://127.0.0.1:9"
username = "agent"
password_file = "{files.get('password_file', tmp_path / 'missing-pw')}"
ca_file = "{files.get('ca_file', tmp_path / 'missing-ca.pem')}"

[remediation]
enabled = true
webhook_listen = "127.0.0.1:9999"
webhook_token_file = "{files.get('token', tmp_path / 'missing-token')}"

[[box]]
name = "vm1"
kind = "vm"
ipv4 = "192.0.2.20"
remediate = ["command"]
command = ["{files.get('hook', tmp_path / 'missing-hook')}", "{{box}}"]
"""
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return str(path)


def test_each_missing_file_is_a_failed_check_naming_the_key_and_the_file(tmp_path):
    cfg = config.load(_config(tmp_path), check_files=False)
    results = [r for r in doctor.run_checks(cfg, open_socket=lambda *a: _Sock()) if r.name == "config files"]
    details = [r.detail for r in results]
    assert all(r.label == "FAIL" and r.fix for r in results), details
    want = {"influxdb.password_file": "missing-pw", "influxdb.ca_file": "missing-ca.pem",
            "remediation.webhook_token_file": "missing-token", '[[box]] "vm1" (#1, line 16).command[0]': "missing-hook"}
    for key, file in want.items():
        assert any(d.startswith(key + ":") and file in d for d in details), (key, details)
    # the same list check-config prints: one function
    assert details == config.file_errors(cfg)


def test_present_files_pass(tmp_path, pki_files):
    ca, pw, token, hook = pki_files
    cfg = config.load(_config(tmp_path, ca_file=ca, password_file=pw, token=token, hook=hook))
    results = [r for r in doctor.run_checks(cfg, open_socket=lambda *a: _Sock()) if r.name == "config files"]
    assert [r.label for r in results] == ["PASS"], results


def test_doctor_cli_reports_missing_files_as_checks_not_a_config_error(tmp_path):
    proc = subprocess.run([AGENT_BIN, "doctor", "-c", _config(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr   # checks failed; 2 would be "bad config"
    fails = [line for line in proc.stdout.splitlines() if line.startswith("FAIL  config files:")]
    assert len(fails) == 4, proc.stdout
    assert any("remediation.webhook_token_file" in f and "missing-token" in f for f in fails), fails
    check = subprocess.run([AGENT_BIN, "check-config", "-c", _config(tmp_path)], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 2 and "missing-token" in check.stderr, check


class _Sock:
    """A raw socket that opens (the privileges topic is not what these tests are about)."""

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def close(self):
        pass


@pytest.fixture
def pki_files(tmp_path):
    """A real CA certificate (openssl), a password file, a token file and an executable hook."""
    ca_key, ca = tmp_path / "ca.key", tmp_path / "ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
                    "-days", "1", "-subj", "/CN=doctor-test-ca"], check=True, capture_output=True, timeout=60)
    pw, token, hook = tmp_path / "pw", tmp_path / "token", tmp_path / "hook"
    pw.write_text("secret\n")
    token.write_text("t0ken\n")
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    return str(ca), str(pw), str(token), str(hook)


@pytest.mark.lab
def test_container_commands_are_looked_up_inside_the_running_container(ops_lab):
    ctr = [b for b in ops_lab.boxes if b.kind == "container"]
    text = ops_lab.agent_config(boxes=[b.name for b in ctr], box_extra={
        ctr[0].name: {"remediate": ["exec", "restart_container"], "exec": ["/bin/sh", "-c", "true"]},
        ctr[1].name: {"remediate": ["exec"], "exec": ["/opt/monalisa/bin/restart"]}})
    text += '\n[[box.check]]\nkind = "exec"\nargv = ["no-such-status-cmd"]\n'   # on the last [[box]]: ctr[1]
    text += '[[box.check]]\nkind = "exec"\nargv = ["httpd", "-h"]\n'            # a busybox applet (a symlink)
    cfg = config.loads(text)
    with netns.entered(ops_lab.monitor_ns):
        results = doctor.run_checks(cfg)
    out = doctor.format_results(results)
    good = [r for r in results if r.name == f"box {ctr[0].name} commands"]
    first, second = (cfg.box_path(i) for i, b in enumerate(cfg.boxes) if b.name in (ctr[0].name, ctr[1].name))
    assert first.startswith(f'[[box]] "{ctr[0].name}" (#') and ", line " in first, first
    assert [r.label for r in good] == ["PASS"] and f"{first}.exec[0] /bin/sh" in good[0].detail, out
    bad = [r for r in results if r.name == f"box {ctr[1].name} commands"]
    assert [r.label for r in bad] == ["FAIL", "FAIL"], out
    assert bad[0].detail.startswith(f"{second}.exec[0]: '/opt/monalisa/bin/restart' not found"), out
    assert bad[1].detail.startswith(f"{second}.check[0].argv[0]: 'no-such-status-cmd' not found"), out
