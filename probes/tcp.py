"""TCP connect (IPv4 and IPv6): a real handshake per host:port, all in flight at once on one epoll.

Needs no privileges. The kernel does the handshake, so there are no frames to
hand to a recorder: the recorder is not called for tcp.
"""
from __future__ import annotations

import errno
import ipaddress
import logging
import resource
import selectors
import socket
import time
from collections.abc import Sequence

from probes.exchange import Recorder
from probes.routing import bind_to_device
from probes.types import ProbeResult, Target

log = logging.getLogger(__name__)

NAME = "tcp"
FAMILY = None  # both
NEEDS_RAW = False
LAYER = "l4"  # the layer a failure of this probe points at (probes.types.LAYERS)
RESERVED_FDS = 64  # left for the rest of the process

_ERRORS = {
    errno.ECONNREFUSED: "refused",
    errno.ETIMEDOUT: "timeout",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETUNREACH: "unreachable",
    errno.EHOSTDOWN: "unreachable",
    errno.ENETDOWN: "unreachable",
    errno.ECONNRESET: "reset",
}


def error_text(code: int) -> str:
    """Short error text for a connect errno."""
    return _ERRORS.get(code) or errno.errorcode.get(code, str(code)).lower()


def _fd_budget(wanted: int) -> int:
    """How many sockets may be open at once; raises the soft RLIMIT_NOFILE to the hard one when needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted + RESERVED_FDS and soft != hard:
        new = hard if hard == resource.RLIM_INFINITY else max(soft, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError) as exc:
            log.warning("probe tcp: could not raise RLIMIT_NOFILE from %d to %d: %s", soft, new, exc)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - RESERVED_FDS))


def sweep(targets: Sequence[Target], timeout_s: float, interface: str | None = None,
          recorder: Recorder | None = None) -> list[ProbeResult]:
    """Connect to every target's port once, all at once; results in input order with connect time."""
    count = len(targets)
    results: list[ProbeResult | None] = [None] * count
    budget = _fd_budget(count)
    sel = selectors.DefaultSelector()
    next_index = 0
    in_flight: dict[int, tuple[socket.socket, float, float]] = {}  # index -> (socket, start_s, deadline_s)

    def finish(index: int, ok: bool, error: str | None, start_s: float | None, now_s: float) -> None:
        target = targets[index]
        rtt_ms = (now_s - start_s) * 1000.0 if ok and start_s is not None else None
        results[index] = ProbeResult(target.address, NAME, target.port, ok, rtt_ms, error, None, now_s)

    try:
        while next_index < count or in_flight:
            while next_index < count and len(in_flight) < budget:
                index, next_index = next_index, next_index + 1
                target = targets[index]
                family = socket.AF_INET6 if ipaddress.ip_address(target.address).version == 6 else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                if interface:
                    try:
                        bind_to_device(sock, interface)
                    except ValueError:
                        sock.close()
                        raise
                start_s = time.time()
                code = sock.connect_ex((target.address, target.port))
                if code in (errno.EINPROGRESS, 0):
                    in_flight[index] = (sock, start_s, start_s + timeout_s)
                    sel.register(sock, selectors.EVENT_WRITE, index)
                else:
                    sock.close()
                    finish(index, False, error_text(code), None, time.time())
            if not in_flight:
                continue
            wait_s = min(d for _, _, d in in_flight.values()) - time.time()
            for key, _events in sel.select(max(0.0, wait_s)):
                index = key.data
                sock, start_s, _ = in_flight.pop(index)
                now_s = time.time()
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                sel.unregister(sock)
                sock.close()
                finish(index, code == 0, None if code == 0 else error_text(code), start_s, now_s)
            now_s = time.time()
            for index in [i for i, (_, _, d) in in_flight.items() if d <= now_s]:
                sock, _, deadline_s = in_flight.pop(index)
                sel.unregister(sock)
                sock.close()
                finish(index, False, "timeout", None, deadline_s)
    finally:
        for sock, _, _ in in_flight.values():
            sock.close()
        sel.close()
    return results  # type: ignore[return-value]
