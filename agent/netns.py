"""Enter a named network namespace (`ip netns` style, /run/netns/NAME) from Python.

setns(CLONE_NEWNET) acts on the calling OS thread only. Sockets keep the
namespace they were created in, and threads and child processes started
from a thread inherit its namespace, so `entered(name)` around socket
creation (or around a whole sweep) is enough to probe from inside a lab.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def path_of(name: str) -> str:
    """Path of the bind-mounted namespace file for NAME."""
    return os.path.join(NETNS_DIR, name)


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the body with the calling thread inside network namespace NAME."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path_of(name), os.O_RDONLY)
    except FileNotFoundError:
        os.close(own)
        raise FileNotFoundError(f"network namespace {name!r} does not exist ({path_of(name)!r})") from None
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def enter_for_process(name: str) -> None:
    """Move the (still single-threaded) process into namespace NAME for good."""
    try:
        fd = os.open(path_of(name), os.O_RDONLY)
    except FileNotFoundError:
        raise SystemExit(f"vobox-agent: network namespace {name!r} does not exist ({path_of(name)!r})") from None
    except (OSError, ValueError) as exc:  # no permission, a NUL in the name: one line, the name quoted
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SystemExit(f"vobox-agent: network namespace {name!r} cannot be opened ({path_of(name)!r}: {why})") from None
    try:
        _setns(fd)
    except OSError as exc:  # EINVAL: the file is no network namespace (a directory, '..'); EPERM: not root
        what = "is not a network namespace" if exc.errno == errno.EINVAL else "cannot be entered"
        raise SystemExit(f"vobox-agent: {path_of(name)!r} {what} ({exc.strerror})") from None
    finally:
        os.close(fd)
