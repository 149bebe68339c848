"""One event loop for many TCP conversations: connect, optional TLS handshake, send a request, read until a verdict.

The service kinds (tcp, http, tls) describe each target as a Job; `run()` drives all of
them at once on one selector of non-blocking sockets, each under its own deadline, so a
sweep costs about one timeout however many targets hang. What it reports per job is
where the conversation ended: a failed or timed-out connect is l4 (the port does not
accept), anything after an accepted connection is l7 (the service does not answer, or
answers wrong, or its TLS fails).

A connect still unanswered after RETRY_SHARE of the timeout gets a second socket (the
kernel would resend the SYN only after its initial RTO of 1 s, at or past a usual
timeout): on a lossy link one lost SYN or SYN-ACK is not a dead port. Whichever
attempt ends first decides; the deadline stays the one of the first attempt.
"""
from __future__ import annotations

import errno
import logging
import resource
import selectors
import socket
import ssl
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from probes.routing import bind_to_device

log = logging.getLogger(__name__)

RESERVED_FDS = 64  # left for the rest of the process
RECV_BYTES = 65536
RETRY_SHARE = 0.5  # a connect pending this share of the timeout after it started gets a second attempt

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


def fd_budget(wanted: int) -> int:
    """How many sockets may be open at once; raises the soft RLIMIT_NOFILE to the hard one when needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted + RESERVED_FDS and soft != hard:
        new = hard if hard == resource.RLIM_INFINITY else max(soft, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError) as exc:
            log.warning("probe: could not raise RLIMIT_NOFILE from %d to %d: %s", soft, new, exc)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - RESERVED_FDS))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a Reader concluded from the answer."""

    ok: bool
    error: str | None = None
    status_code: int | None = None


class Reader(Protocol):
    """Judges one service's answer as it arrives."""

    def feed(self, data: bytes) -> Verdict | None:
        """Take the next bytes received (b"" at end of stream); a Verdict when decided, None to read on."""
        ...

    def at_deadline(self) -> Verdict:
        """The verdict when the deadline passes before feed() decided (a failure)."""
        ...


@dataclass(slots=True)
class Job:
    """One conversation: where to connect, TLS or not, what to send, who judges the answer (None: none awaited)."""

    address: str
    port: int
    tls: ssl.SSLContext | None = None
    server_hostname: str | None = None
    request: bytes = b""
    reader: Reader | None = None


@dataclass(frozen=True, slots=True)
class Done:
    """How a Job ended; layer is None when ok, "l4" when the connect failed, "l7" after it."""

    ok: bool
    error: str | None
    layer: str | None
    start_s: float
    end_s: float
    status_code: int | None = None
    peer_cert_der: bytes | None = None  # TLS: the peer's leaf certificate, when the handshake completed


_CONNECT, _HANDSHAKE, _SEND, _RECV = range(4)


class _Conn:
    __slots__ = ("index", "sock", "state", "start_s", "deadline_s", "sent", "cert", "events")  # deadline: monotonic

    def __init__(self, index: int, sock: socket.socket, start_s: float, deadline_s: float):
        self.index, self.sock, self.start_s, self.deadline_s = index, sock, start_s, deadline_s
        self.state, self.sent, self.events = _CONNECT, 0, selectors.EVENT_WRITE
        self.cert: bytes | None = None  # the peer's DER certificate, after a TLS handshake


def _tls_error(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"tls: certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLEOFError):
        return "tls: closed during handshake"
    reason = exc.reason or exc.strerror or str(exc)
    return f"tls: {str(reason).lower().replace('_', ' ')}"


def run(jobs: Sequence[Job], timeout_s: float, interface: str | None = None) -> list[Done]:
    """Run every job once, all at once; each ends within TIMEOUT_S of its start. Results in input order."""
    count = len(jobs)
    done: list[Done | None] = [None] * count
    budget = fd_budget(2 * count)   # room for the second attempts
    sel = selectors.DefaultSelector()
    next_index = 0
    live: dict[int, _Conn] = {}
    twins: dict[int, _Conn] = {}          # index -> the second connect attempt of a live conn
    retry_queue: deque[_Conn] = deque()   # live conns in start order, until their retry time has passed
    retry_after_s = timeout_s * RETRY_SHARE

    def drop(conn: _Conn) -> None:
        try:
            sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def finish(conn: _Conn, ok: bool, error: str | None, layer: str | None, now_s: float,
               status_code: int | None = None) -> None:
        for other in (live.pop(conn.index, None), twins.pop(conn.index, None)):
            if other is not None and other is not conn:
                drop(other)
        drop(conn)
        done[conn.index] = Done(ok, error, None if ok else layer, conn.start_s, now_s, status_code, conn.cert)

    def open_conn(index: int, deadline_s: float) -> tuple[_Conn, int]:
        job = jobs[index]
        family = socket.AF_INET6 if ":" in job.address else socket.AF_INET  # a validated literal
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        if interface:
            try:
                bind_to_device(sock, interface)
            except ValueError:
                sock.close()
                raise
        start_s = time.time()
        code = sock.connect_ex((job.address, job.port))
        return _Conn(index, sock, start_s, deadline_s), code

    def want(conn: _Conn, events: int) -> None:
        if events != conn.events:
            sel.modify(conn.sock, events, conn)
            conn.events = events

    def after_connect(conn: _Conn, now_s: float) -> None:
        """Advance a connected socket as far as it goes without blocking."""
        job = jobs[conn.index]
        while True:
            if conn.state == _HANDSHAKE:
                tls_sock = conn.sock   # wrapped (SSLContext.wrap_socket) when the state became _HANDSHAKE
                if not isinstance(tls_sock, ssl.SSLSocket):
                    raise TypeError(f"TLS handshake on an unwrapped socket {tls_sock!r}")
                try:
                    tls_sock.do_handshake()
                except ssl.SSLWantReadError:
                    return want(conn, selectors.EVENT_READ)
                except ssl.SSLWantWriteError:
                    return want(conn, selectors.EVENT_WRITE)
                except ssl.SSLError as exc:
                    return finish(conn, False, _tls_error(exc), "l7", now_s)
                except OSError as exc:
                    return finish(conn, False, f"tls: {error_text(exc.errno or 0)}", "l7", now_s)
                conn.cert = tls_sock.getpeercert(binary_form=True)
                conn.state = _SEND
            elif conn.state == _SEND:
                if conn.sent < len(job.request):
                    try:
                        conn.sent += conn.sock.send(job.request[conn.sent:])
                    except (BlockingIOError, ssl.SSLWantWriteError):
                        return want(conn, selectors.EVENT_WRITE)
                    except ssl.SSLWantReadError:
                        return want(conn, selectors.EVENT_READ)
                    except (OSError, ssl.SSLError) as exc:
                        return finish(conn, False, f"send: {error_text(getattr(exc, 'errno', 0) or 0)}", "l7", now_s)
                    continue
                if job.reader is None:
                    return finish(conn, True, None, None, now_s)
                conn.state = _RECV
            else:  # _RECV: drain what is there (TLS may hold decrypted bytes the selector cannot see)
                reader = job.reader
                if reader is None:  # _RECV is entered only with a reader
                    return finish(conn, True, None, None, now_s)
                verdict: Verdict | None
                try:
                    data = conn.sock.recv(RECV_BYTES)
                except (BlockingIOError, ssl.SSLWantReadError):
                    return want(conn, selectors.EVENT_READ)
                except ssl.SSLWantWriteError:
                    return want(conn, selectors.EVENT_WRITE)
                except ssl.SSLError as exc:
                    verdict = Verdict(False, _tls_error(exc))
                except OSError as exc:
                    verdict = Verdict(False, error_text(exc.errno or 0))
                else:
                    verdict = reader.feed(data)
                    if verdict is None and not data:
                        verdict = Verdict(False, "closed")  # a Reader must decide at end of stream
                if verdict is not None:
                    return finish(conn, verdict.ok, verdict.error, "l7", now_s, verdict.status_code)

    try:
        while next_index < count or live:
            while next_index < count and len(live) + len(twins) < budget:
                index, next_index = next_index, next_index + 1
                conn, code = open_conn(index, time.monotonic() + timeout_s)
                if code in (errno.EINPROGRESS, 0):
                    live[index] = conn
                    sel.register(conn.sock, selectors.EVENT_WRITE, conn)
                    retry_queue.append(conn)
                else:
                    finish(conn, False, error_text(code), "l4", time.time())
            mono_s = time.monotonic()
            while retry_queue and retry_queue[0].deadline_s - timeout_s + retry_after_s <= mono_s:
                first = retry_queue.popleft()
                if (live.get(first.index) is first and first.state == _CONNECT and first.index not in twins
                        and len(live) + len(twins) < budget):
                    twin, code = open_conn(first.index, first.deadline_s)
                    if code in (errno.EINPROGRESS, 0):
                        twins[first.index] = twin
                        sel.register(twin.sock, selectors.EVENT_WRITE, twin)
                    else:
                        drop(twin)   # the first attempt still decides
            if not live:
                continue
            # Every conn gets the same timeout and starts after the ones before it, so insertion order is
            # deadline order (monotonic clock): the first live conn holds the next deadline (a twin keeps
            # the deadline of its first attempt and takes its place in `live` when it connects).
            wait_s = next(iter(live.values())).deadline_s - time.monotonic()
            if retry_queue:
                wait_s = min(wait_s, retry_queue[0].deadline_s - timeout_s + retry_after_s - time.monotonic())
            for key, _events in sel.select(max(0.0, wait_s)):
                conn = key.data
                if live.get(conn.index) is not conn and twins.get(conn.index) is not conn:
                    continue
                now_s = time.time()
                if conn.state == _CONNECT:
                    code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        finish(conn, False, error_text(code), "l4", now_s)
                        continue
                    if twins.get(conn.index) is conn:   # the second attempt connected first: it takes over
                        drop(live[conn.index])
                        del twins[conn.index]
                        live[conn.index] = conn   # same key: its place (deadline order) in `live` is kept
                    elif conn.index in twins:           # the first attempt connected: the second one goes
                        drop(twins.pop(conn.index))
                    job = jobs[conn.index]
                    if job.tls is None and not job.request and job.reader is None:
                        finish(conn, True, None, None, now_s)  # connect only: the fast path
                        continue
                    if job.tls is not None:
                        sel.unregister(conn.sock)
                        conn.sock = job.tls.wrap_socket(conn.sock, server_hostname=job.server_hostname,
                                                        do_handshake_on_connect=False)
                        sel.register(conn.sock, conn.events, conn)
                        conn.state = _HANDSHAKE
                    else:
                        conn.state = _SEND
                after_connect(conn, now_s)
            mono_s = time.monotonic()
            expired = []
            for conn in live.values():
                if conn.deadline_s > mono_s:
                    break
                expired.append(conn)
            for conn in expired:
                job, end_s = jobs[conn.index], conn.start_s + timeout_s
                if conn.state == _CONNECT:
                    finish(conn, False, "timeout", "l4", end_s)
                elif conn.state == _HANDSHAKE:
                    finish(conn, False, "tls: handshake timeout", "l7", end_s)
                elif conn.state == _SEND:
                    finish(conn, False, "send timeout", "l7", end_s)
                elif job.reader is None:  # _RECV is entered only with a reader
                    finish(conn, True, None, None, end_s)
                else:
                    verdict = job.reader.at_deadline()
                    finish(conn, False, verdict.error, "l7", end_s, verdict.status_code)
    finally:
        for conn in [*live.values(), *twins.values()]:
            conn.sock.close()
        sel.close()
    finished = [d for d in done if d is not None]
    if len(finished) != count:  # every job ends above, by its verdict or its deadline
        raise RuntimeError(f"dialogue: {count - len(finished)} of {count} jobs never finished")
    return finished
