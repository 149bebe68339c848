"""agent.redact (pure) and where it is applied without a lab: the log filter, status.json; and private file modes."""
from __future__ import annotations

import io
import json
import logging
import os
import stat

import pytest

from agent import atomic, redact
from agent.ops import logs

SECRET = "s3cr+t/Value&x"


def test_env_keeps_keys_and_replaces_values():
    assert redact.env(["A=1", "MONALISA_PASSWORD=x=y", "FLAG"]) == ["A=<redacted>", "MONALISA_PASSWORD=<redacted>",
                                                                    "FLAG"]


def test_docker_inspect_env_and_secret_keys_redacted_rest_kept():
    inspect = {"Id": "abc", "Config": {"Env": ["PATH=/bin", "TOKEN=t0k3n"], "Image": "busybox",
                                       "Labels": {"note": f"pw {SECRET}"}},
               "HostConfig": {"NetworkMode": "n"}, "State": {"Pid": 42}}
    out = redact.docker_inspect(inspect, [SECRET])
    assert out["Config"]["Env"] == ["PATH=<redacted>", "TOKEN=<redacted>"]
    assert out["Config"]["Labels"]["note"] == "pw <redacted>"
    assert out["State"] == {"Pid": 42} and out["Config"]["Image"] == "busybox"
    assert inspect["Config"]["Env"][1] == "TOKEN=t0k3n", "the input is not changed"


@pytest.mark.parametrize("key, secret", [
    ("password", True), ("webhook_token", True), ("Authorization", True), ("api_key", True),
    ("client_secret", True), ("token_file", False), ("password_file", False), ("state_dir", False),
    ("layer", False), ("reason", False),
])
def test_secret_keys(key, secret):
    assert redact.is_secret_key(key) is secret


@pytest.mark.parametrize("text, expected", [
    pytest.param(f"p={SECRET}", "p=<redacted>", id="raw"),
    pytest.param("GET /query?q=SHOW&u=admin&p=s3cr%2Bt%2FValue%26x HTTP/1.1", "GET /query?q=SHOW&u=admin&p=<redacted> "
                 "HTTP/1.1", id="url-encoded"),
    pytest.param('{"token": "s3cr+t/Value&x"}', '{"token": "<redacted>"}', id="json"),
    pytest.param("Authorization: Bearer abcdefgh12345", "Authorization: Bearer <redacted>", id="header"),
    pytest.param("https://admin:pw12345@influx:8086/write", "https://admin:<redacted>@influx:8086/write",
                 id="userinfo"),
    pytest.param("token accepted; http://127.0.0.1:8086/ping", "token accepted; http://127.0.0.1:8086/ping",
                 id="harmless-kept"),
])
def test_text(text, expected):
    assert redact.text(text, [SECRET]) == expected


def test_short_values_are_not_treated_as_secrets():
    assert redact.config_secrets(type("I", (), {"password": "ab", "token": None})()) == ()
    assert redact.text("a cab", ["ab"]) == "a cab"


def test_config_secrets_reads_the_files_with_the_callers_reader(tmp_path):
    influx = type("I", (), {"password": None, "token": None, "password_file": "/pw", "token_file": None})()
    rem = type("R", (), {"webhook_token_file": "/tok"})()
    files = {"/pw": "pass-word\n", "/tok": "webhook-token\n"}
    assert set(redact.config_secrets(influx, rem, read=files.__getitem__)) == {"pass-word", "webhook-token"}


@pytest.mark.parametrize("as_json", [False, True])
def test_log_filter_redacts_messages_arguments_and_tracebacks(as_json):
    stream = io.StringIO()
    handler = logs.setup("DEBUG", json=as_json, stream=stream)
    try:
        logs.protect([SECRET])
        log = logging.getLogger("test.redact")
        log.info("url %s", f"/write?u=a&p={SECRET}")
        try:
            raise RuntimeError(f"boom {SECRET}")
        except RuntimeError:
            log.exception("failed with %r", SECRET)
    finally:
        logging.getLogger().removeHandler(handler)
    out = stream.getvalue()
    assert SECRET not in out and json.dumps(SECRET)[1:-1] not in out
    assert out.count("<redacted>") >= 3 and "boom" in out


def test_private_files_and_dirs_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        d = atomic.private_dir(str(tmp_path / "a" / "b"))
        atomic.write_json(os.path.join(d, "s.json"), {"x": 1})
        with atomic.open_private_file(os.path.join(d, "log"), "ab") as fh:
            fh.write(b"x")
        from agent.forensics.bundle import write_json
        from agent.forensics.recorder import write_pcap
        from remediations import history
        from remediations.model import HistoryEntry

        write_json(os.path.join(d, "b.json"), {})
        write_pcap(os.path.join(d, "p.pcap"), [])
        history.merge_save(history.path_in(str(tmp_path / "h")), [HistoryEntry(1.0, "b", "a", "t")], 2.0)
    finally:
        os.umask(old)
    for root, dirs, files in os.walk(tmp_path):
        for name in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o700, os.path.join(root, name)
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o600, os.path.join(root, name)
    # an existing directory made by someone else is tightened, not left 0755
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    atomic.private_dir(str(loose))
    assert stat.S_IMODE(os.stat(loose).st_mode) == 0o700


def test_status_listener_writes_redacted_0600(tmp_path):
    from agent.core.events import CycleEnded
    from agent.listeners.status import StatusListener

    lst = StatusListener(str(tmp_path), {"b": "vm"}, site=None, interval_s=1, budget_per_hour=3, secrets=[SECRET])
    lst.on_events([CycleEnded(time_s=1.0, started_monotonic_s=0.0, boxes=1, unhealthy=(), frozen=(), misfires=0,
                              error=f"sweep failed: {SECRET}")])
    path = tmp_path / "status.json"
    data = json.loads(path.read_text())
    assert SECRET not in path.read_text()
    assert data["error"] == "sweep failed: <redacted>"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
