"""No secret leaves its place: a real agent run in the lab with secrets planted, every file it wrote grepped.

Planted, each a fresh random value: a container environment variable (MONALISA_PASSWORD, as images keep
passwords), the webhook bearer token (a token file), the InfluxDB v1 password (a password file; the lab's
influxd has auth off, so it is sent with every request and ignored). The agent runs at DEBUG (urllib3 then
logs every request URL, the password in it) under umask 0, a container is paused (evidence with its
`docker inspect`, then restart_container), alerts reach the webhook with the right and a wrong token. Then
every file under the state directory, the agent's log, `doctor` (at DEBUG too) and `status --json` must
hold none of the values, and every file is 0600, every directory 0700.
"""
from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.agent.agent_proc import AGENT_BIN, AgentProc, errors_in_log, free_port, query, write_config
from tests.agent.test_run_lab import _post


@pytest.fixture(scope="module")
def planted():
    """The secret values of this run (random, so a hit can only come from the agent)."""
    return {"env": "MLpw-" + secrets.token_hex(12), "webhook": "whTok-" + secrets.token_hex(12),
            "influx": "ifxPw-" + secrets.token_hex(12)}


@pytest.fixture(scope="module")
def secret_lab(lab_available, planted):
    """A lab of its own: one container box whose environment holds MONALISA_PASSWORD, one VM, InfluxDB."""
    if lab_available:
        pytest.skip(lab_available)
    from lab import Lab

    the_lab = Lab.create(containers=1, vms=1, influx=True, box_env={"ctr1": {"MONALISA_PASSWORD": planted["env"]}})
    try:
        yield the_lab
    finally:
        the_lab.down()


def _config(lab, tmp_path, planted, port: int, influx_url: str | None = None) -> str:
    token_file, pw_file = tmp_path / "webhook.token", tmp_path / "influx.password"
    token_file.write_text(planted["webhook"] + "\n")
    pw_file.write_text(planted["influx"] + "\n")
    os.chmod(token_file, 0o600)
    os.chmod(pw_file, 0o600)
    path = write_config(lab, str(tmp_path), database="t_secrets",
                        sections={"remediation": {"enabled": True, "cooldown": 1, "verify": 3, "stop_timeout": 2,
                                                  "webhook_listen": f"127.0.0.1:{port}",
                                                  "webhook_token_file": str(token_file)}},
                        box_keys={"ctr1": {"remediate": ["restart_container"]}},
                        **({"influx_url": influx_url} if influx_url else {}))
    text = Path(path).read_text(encoding="utf-8")
    head, sep, tail = text.partition("[influxdb]\n")
    assert sep, text
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(head + sep + f'username = "vobox"\npassword_file = "{pw_file}"\n' + tail)
    return path


def _leaks(text: str, planted: dict[str, str]) -> list[str]:
    return [name for name, value in planted.items() if value in text]


def _walk(root: str):
    yield root, True
    for d, dirs, files in os.walk(root):
        for name in dirs:
            yield os.path.join(d, name), True
        for name in files:
            yield os.path.join(d, name), False


def _cli(lab, *args: str) -> subprocess.CompletedProcess:
    """`vobox-agent [global options] --netns MON COMMAND ...`: global options first (the leading "--" ones)."""
    i = 0
    while i < len(args) and args[i].startswith("--"):
        i += 2
    return subprocess.run([AGENT_BIN, *args[:i], "--netns", lab.monitor_ns, *args[i:]], capture_output=True,
                          text=True, timeout=120)


def test_no_planted_secret_in_anything_the_agent_writes(secret_lab, planted, tmp_path):
    lab = secret_lab
    env = subprocess.run(["docker", "inspect", "-f", "{{json .Config.Env}}", lab.box("ctr1").container],
                         capture_output=True, text=True, check=True).stdout
    assert f"MONALISA_PASSWORD={planted['env']}" in env, "the lab did not plant the variable"
    port = free_port(lab.monitor_ns)
    cfg = _config(lab, tmp_path, planted, port)
    old = os.umask(0)            # the agent inherits umask 0: its modes must not come from the umask
    try:
        a = AgentProc(lab, cfg, str(tmp_path / "agent.log"), global_args=("--log-level", "DEBUG"))
    finally:
        os.umask(old)
    try:
        a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 30)
        lab.fault("ctr1", "l4")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = query(lab, "SELECT * FROM remediation WHERE box = 'ctr1'", "t_secrets")
            if any(r["outcome"] == "done" for r in rows):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"no restart_container done for ctr1: {rows}\n{a.log_text()[-3000:]}")
        lab.wait_box("ctr1", timeout_s=20)
        a.wait_until("ctr1 up again", lambda st: st["boxes"]["ctr1"]["state"] == "up", 30)
        alert = {"receiver": "vobox", "status": "firing", "version": "4", "groupKey": "{}:{box=\"ctr1\"}",
                 "alerts": [{"status": "firing", "labels": {"alertname": "VOBoxFrozen", "box": "ctr1"},
                             "annotations": {}, "startsAt": "2026-01-01T00:00:00Z"}]}
        assert _post(lab.monitor_ns, port, planted["webhook"], alert)[0] == 202
        assert _post(lab.monitor_ns, port, planted["webhook"] + "x", alert)[0] in (401, 403)
        a.wait_cycles(3)
        status_json = _cli(lab, "status", "-c", cfg, "--json")
        assert status_json.returncode == 0, status_json.stderr
        status_text = _cli(lab, "status", "-c", cfg)
    finally:
        code = a.stop()
    assert code == 0, a.log_text()[-3000:]
    lab.clear("ctr1", wait=True)
    log = a.log_text()
    assert errors_in_log(log) == [], errors_in_log(log)

    # The evidence bundle holds the container's docker inspect, its environment keys kept, values redacted.
    inspects = [p for p, is_dir in _walk(a.state_dir) if not is_dir and p.endswith("docker_inspect.json")]
    assert inspects, f"no docker_inspect.json under {a.state_dir}"
    with open(inspects[0], encoding="utf-8") as fh:
        container_env = json.load(fh)["container"]["Config"]["Env"]
    assert "MONALISA_PASSWORD=<redacted>" in container_env, container_env

    problems = []
    seen_files = 0
    for path, is_dir in _walk(a.state_dir):
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        if mode != (0o700 if is_dir else 0o600):
            problems.append(f"{path}: mode {mode:o}")
        if not is_dir:
            seen_files += 1
            with open(path, "rb") as fh:
                leaks = _leaks(fh.read().decode("latin-1"), planted)
            if leaks:
                problems.append(f"{path}: holds {', '.join(leaks)}")
    assert seen_files >= 8, f"only {seen_files} files under {a.state_dir}"
    assert problems == [], "\n".join(problems)

    assert _leaks(log, planted) == [], "the agent's log holds a planted secret"
    # DEBUG logging really carried the password (urllib3 logs each request URL): the filter replaced it.
    assert "p=<redacted>" in log, "no request URL with the password was logged: the test proves nothing"
    assert _leaks(status_json.stdout + status_json.stderr + status_text.stdout + status_text.stderr, planted) == []
    assert json.loads(status_json.stdout)["source"] == "agent"

    # doctor at DEBUG: urllib3 logs its /query URL (u=, p=) to stderr; the filter must have replaced the password
    doctor = _cli(lab, "--log-level", "DEBUG", "doctor", "-c", cfg)
    assert "influxdb auth" in doctor.stdout, doctor.stdout + doctor.stderr
    assert _leaks(doctor.stdout + doctor.stderr, planted) == []
    assert "p=<redacted>" in doctor.stderr, doctor.stderr[-2000:]
