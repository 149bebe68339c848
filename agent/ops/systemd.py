"""Minimal sd_notify(3) client over $NOTIFY_SOCKET: readiness, watchdog, status, stopping.

Every call is a no-op returning False when the agent is not started by systemd
with Type=notify (no $NOTIFY_SOCKET), and never raises: notification is best effort.
"""
from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _address(value: str) -> str | bytes:
    # "@name" is a Linux abstract-namespace socket: a leading NUL byte in sun_path.
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send MESSAGE (newline-separated VAR=value lines) to $NOTIFY_SOCKET; True when sent."""
    environ: Mapping[str, str] = os.environ if env is None else env
    target = environ.get("NOTIFY_SOCKET")
    if not target:
        return False
    if not (target.startswith("/") or target.startswith("@")):
        log.warning("NOTIFY_SOCKET=%r is neither a path nor @abstract; not notifying", target)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), _address(target))
    except OSError as exc:
        log.warning("sd_notify %r to %s failed: %s", message.split("\n", 1)[0], target, exc)
        return False
    return True


def ready(status: str | None = None) -> bool:
    """Tell systemd start-up is finished (READY=1), optionally with a status line."""
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def watchdog() -> bool:
    """Keep-alive ping for WatchdogSec= (WATCHDOG=1)."""
    return notify("WATCHDOG=1")


def stopping(status: str | None = None) -> bool:
    """Tell systemd the agent is shutting down (STOPPING=1)."""
    return notify("STOPPING=1" + (f"\nSTATUS={status}" if status else ""))


def status(text: str) -> bool:
    """Set the free-form status line shown by `systemctl status` (STATUS=...)."""
    return notify("STATUS=" + text.replace("\n", " "))


def watchdog_interval_s(env: Mapping[str, str] | None = None) -> float | None:
    """How often to call watchdog(): half of $WATCHDOG_USEC in seconds, or None when no watchdog is set for us."""
    environ: Mapping[str, str] = os.environ if env is None else env
    raw = environ.get("WATCHDOG_USEC")
    if not raw:
        return None
    pid = environ.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None  # the watchdog is meant for another process (e.g. our parent)
    try:
        usec = int(raw)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer; ignoring the watchdog", raw)
        return None
    if usec <= 0:
        return None
    return usec / 1e6 / 2
