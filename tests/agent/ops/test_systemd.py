"""agent.ops.systemd: sd_notify over a real AF_UNIX datagram socket (path and abstract)."""
from __future__ import annotations

import os
import socket
import uuid

import pytest

from agent.ops import systemd


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request, tmp_path, monkeypatch):
    """A bound datagram socket standing in for systemd's; NOTIFY_SOCKET points at it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        addr = str(tmp_path / "notify")
        sock.bind(addr)
        env_value = addr
    else:
        name = f"vobox-ops-test/{os.getpid()}/{uuid.uuid4().hex}"
        sock.bind(b"\0" + name.encode())
        env_value = "@" + name
    sock.settimeout(2.0)
    monkeypatch.setenv("NOTIFY_SOCKET", env_value)
    yield sock
    sock.close()


def test_messages_arrive(notify_socket):
    assert systemd.ready("probing 3 boxes")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=probing 3 boxes"
    assert systemd.watchdog()
    assert notify_socket.recv(4096) == b"WATCHDOG=1"
    assert systemd.status("2 up\n1 frozen")
    assert notify_socket.recv(4096) == b"STATUS=2 up 1 frozen"
    assert systemd.stopping()
    assert notify_socket.recv(4096) == b"STOPPING=1"


def test_no_notify_socket_is_a_quiet_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.ready() is False
    assert systemd.watchdog() is False


def test_dead_socket_does_not_raise(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert systemd.watchdog() is False
    assert "sd_notify" in caplog.text and "nobody-listens" in caplog.text


@pytest.mark.parametrize("env, expected", [
    pytest.param({}, None, id="unset"),
    pytest.param({"WATCHDOG_USEC": "30000000"}, 15.0, id="half-of-30s"),
    pytest.param({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0, id="our-pid"),
    pytest.param({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None, id="other-pid"),
    pytest.param({"WATCHDOG_USEC": "zero"}, None, id="garbage"),
    pytest.param({"WATCHDOG_USEC": "0"}, None, id="zero"),
])
def test_watchdog_interval(env, expected):
    assert systemd.watchdog_interval_s(env) == expected
