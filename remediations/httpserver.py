"""A small HTTP/1.1 server on one asyncio event loop (h11 parses): the webhook's and /metrics' transport.

No thread per connection: one loop thread holds every connection, and request handlers run in a
small bounded pool (`Limits.workers` threads), so 600 slow clients cost sockets, not threads.
The rules, after Go's net/http.Server (ReadTimeout, IdleTimeout, MaxHeaderBytes) and nginx's
`limit_conn`:
- a TOTAL deadline (`request_timeout_s`) for request line, headers and body, counted from accept
  (after the TLS handshake) or, on a kept-alive connection, from the request's first byte; a client
  sending a byte a second is dropped when it runs out, not kept alive by each byte;
- the TLS handshake has its own timeout (`handshake_timeout_s`); a connection idle between
  requests is closed after `idle_timeout_s`;
- at most `max_per_source` connections per source (an IPv4 address, an IPv6 /64: `source_key`) and
  `max_connections` in all; one over either bound is reset at accept, and refusals and drops are
  logged with their count and the last source, at most once a minute;
- the request line and headers together at most `max_header_bytes` (431), a body at most
  `max_body_bytes` (413), whether sent with Content-Length or chunked.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import logging
import os
import resource
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import h11

log = logging.getLogger(__name__)

# Go's net/http.DefaultMaxHeaderBytes is 1 MiB; nginx's large_client_header_buffers 4 x 8 KiB. Alertmanager and
# Grafana send well under 2 KiB of headers, Prometheus under 1 KiB: 16 KiB leaves room, refuses the abusive.
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
SUMMARY_EVERY_S = 60.0   # refused and dropped connections are logged at most this often (with their count)
# Descriptors the rest of the agent needs beside the servers' connections. systemd's default LimitNOFILE is
# 1024:524288 (soft:hard); a server raises the soft limit towards the hard one as far as its bound needs, as the
# Go runtime does for every Go server since 1.19 (Prometheus, Alertmanager). Nothing of the agent waits with
# select() on a descriptor opened after start (probes use poll/epoll), so descriptors past 1024 are safe.
FD_RESERVE = 256
LISTEN_BACKLOG = 4096
LINGER_S = 2.0   # after the answer, what the peer still sends is read (and dropped) this long before the close
ACCEPT_BATCH = 128   # connections accepted per readiness of the listening socket, before other work runs


def raise_nofile(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE to NEEDED more descriptors than are open now, at most to the hard limit.

    Returns the soft limit in force after (never lowered). Source of the practice: Go 1.19's os package raises
    the soft limit to the hard one at start for the same reason (golang/go#46279).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 0
    want = needed + in_use
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if new > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError) as exc:
            log.debug("cannot raise RLIMIT_NOFILE to %d: %s", new, exc)
    return soft


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of one server; every time in seconds, every size in bytes.

    request_timeout_s: total time for request line, headers and body (a slow sender is dropped);
    handshake_timeout_s: the TLS handshake; idle_timeout_s: a kept-alive connection between requests;
    write_timeout_s: sending one response (a client that never reads is dropped);
    max_per_source: open connections per source address; max_connections: open connections in all;
    workers: threads that run handlers (the only threads besides the loop's).
    """

    request_timeout_s: float = 10.0
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    write_timeout_s: float = 10.0
    max_per_source: int = 8
    max_connections: int = 640
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_body_bytes: int = 1 << 20
    workers: int = 2

    def __post_init__(self) -> None:
        for name in ("request_timeout_s", "handshake_timeout_s", "idle_timeout_s", "write_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("max_per_source", "max_connections", "max_header_bytes", "max_body_bytes", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class Request:
    """One request's head: method and target as sent, header names lower-case (repeated ones joined by ", ").

    peer: the source address; peer_cert: the verified client certificate (SSLSocket.getpeercert() form) or None.
    """

    method: str
    target: str
    headers: dict[str, str]
    peer: str
    peer_cert: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """What to send: status, headers (Content-Length is added), body; close ends the connection after it."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False

    def closing(self) -> Response:
        """This response with close set (the connection ends after it)."""
        return self if self.close else Response(self.status, self.body, self.headers, True)


class Handler(Protocol):
    """What a server serves: `head()` may answer before the body is read (auth, size), `handle()` the whole request.

    head() runs on the event loop and must not block; handle() runs in the worker pool.
    error(status, message) builds the server's own answers (400, 413, 431) in the handler's format.
    """

    def head(self, request: Request) -> Response | None: ...

    def handle(self, request: Request, body: bytes) -> Response: ...

    def error(self, status: int, message: str) -> Response: ...


class _Drop(Exception):
    """The connection ends without an answer (deadline passed, peer gone); the message says why (for the log)."""


@dataclass(slots=True)
class _Tally:
    """Connections refused or dropped since the last summary line, by reason; the last source seen for each."""

    counts: dict[str, int] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    logged_at: float = float("-inf")


class _Stream:
    """A connection's bytes: plain, or TLS through memory BIOs (the handshake and every alert under our control)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.tls: ssl.SSLObject | None = None
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()

    async def _flush(self) -> None:
        pending = self._out.read()
        if pending:
            self.writer.write(pending)
            await self.writer.drain()

    async def handshake(self, ctx: ssl.SSLContext) -> None:
        """The server side of a TLS handshake; ssl.SSLError (its alert sent to the peer first) or ConnectionError."""
        tls = ctx.wrap_bio(self._in, self._out, server_side=True)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionResetError("the peer closed the connection during the TLS handshake") from None
                self._in.write(data)
            except ssl.SSLError:
                with contextlib.suppress(OSError):
                    await self._flush()   # the TLS alert, so the client learns why
                raise
        await self._flush()
        self.tls = tls

    async def recv(self) -> bytes:
        """The next bytes the peer sent; b"" at its end (EOF, TLS close_notify)."""
        if self.tls is None:
            return await self.reader.read(65536)
        while True:
            try:
                data = self.tls.read(65536)
                await self._flush()   # TLS 1.3 post-handshake messages
                return data
            except ssl.SSLWantReadError:
                data = await self.reader.read(65536)
                if not data:
                    return b""
                self._in.write(data)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def write(self, data: bytes) -> None:
        """Queue DATA (encrypted under TLS); drain() sends it."""
        if self.tls is None:
            self.writer.write(data)
        else:
            self.tls.write(data)
            self.writer.write(self._out.read())

    async def drain(self) -> None:
        """Wait until the queued bytes are with the kernel."""
        await self.writer.drain()


def source_key(address: str) -> str:
    """What the per-source bound counts by: an IPv4 address itself, an IPv6 address's /64.

    One IPv6 host is given a whole /64 (RFC 6177) and may pick any address in it: counted per address, it
    would pass the bound at will. An IPv4-mapped IPv6 address (a dual-stack listener) counts as its IPv4.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class HTTPServer:
    """Serves `handler` at (host, port) from one event-loop thread; TLS when `tls()` returns a context.

    tls: called once per connection, so a context swapped by a reload applies to new connections only;
    on_handshake_failed(peer, exc): a failed handshake that was not a timeout (e.g. a refused client
    certificate). The socket is bound here: OSError when the address is taken or not local.
    """

    def __init__(self, host: str, port: int, handler: Handler, *, name: str, limits: Limits = Limits(),
                 tls: Callable[[], ssl.SSLContext | None] | None = None,
                 on_handshake_failed: Callable[[str, BaseException], None] | None = None) -> None:
        self.name, self.limits, self._handler = name, limits, handler
        self._tls, self._on_handshake_failed = tls, on_handshake_failed
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # The listen backlog absorbs a burst of connects while the loop is busy (the kernel caps it at
        # net.core.somaxconn, 4096 since Linux 5.4): a full accept queue drops SYNs, 1 s to each client.
        self._sock = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
        self._sock.setblocking(False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._stopped: asyncio.Event | None = None
        self._open: dict[str, int] = {}   # source_key(peer) -> open connections
        self._tasks: set[asyncio.Task[None]] = set()
        self._tally = _Tally()

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) bound (port 0 picks a free one)."""
        host, port = self._sock.getsockname()[:2]
        return host, port

    @property
    def connections(self) -> int:
        """Connections open now."""
        return sum(self._open.values())

    def start(self) -> None:
        """Serve from a daemon thread; returns once the loop accepts connections."""
        soft = raise_nofile(self.limits.max_connections + FD_RESERVE)
        if soft != resource.RLIM_INFINITY and self.limits.max_connections + FD_RESERVE > soft:
            log.warning("%s: up to %d connections and the agent's own files need more descriptors than the soft "
                        "RLIMIT_NOFILE of %d: connections beyond it fail at accept", self.name,
                        self.limits.max_connections, soft)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.limits.workers, thread_name_prefix=f"{self.name}-w")
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=self.name, daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, close every connection and the socket (safe when never started)."""
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and self._thread is not None:
            with contextlib.suppress(RuntimeError):   # the loop already ended
                loop.call_soon_threadsafe(stopped.set)
            self._thread.join(timeout_s)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._sock.close()

    # --- the loop ------------------------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        loop.add_reader(self._sock.fileno(), self._accept_ready)
        ready.set()
        summary = asyncio.create_task(self._log_tally_every())
        try:
            await self._stopped.wait()
        finally:
            summary.cancel()
            loop.remove_reader(self._sock.fileno())
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=2)

    def _accept_ready(self) -> None:
        """Accept what is queued; a connection over a bound is reset before any stream or task is made for it.

        The refusal costs one accept and one close, so a flood of them keeps the accept queue short and the
        legitimate client's SYN is not dropped (a dropped SYN costs the client a 1 s retransmission).
        """
        lim = self.limits
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:   # EMFILE/ENFILE/ENOBUFS: what is queued waits for the next readiness
                self._note(f"not accepted: {exc.strerror or exc}", "?")
                return
            peer = str(address[0])
            source = source_key(peer)
            if self._open.get(source, 0) >= lim.max_per_source:
                self._reset(sock, f"refused at accept: {lim.max_per_source} already open from one source", peer)
            elif self.connections >= lim.max_connections:
                self._reset(sock, f"refused at accept: {lim.max_connections} open in all", peer)
            else:
                self._open[source] = self._open.get(source, 0) + 1
                task = asyncio.get_running_loop().create_task(self._accepted(sock, peer, source))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _reset(self, sock: socket.socket, why: str, peer: str) -> None:
        """Close with a TCP reset (SO_LINGER 0): no FIN handshake and no TIME_WAIT for a refused connection."""
        self._note(why, peer)   # before the close: the refusal is on record when the peer sees it
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def _note(self, reason: str, peer: str) -> None:
        """Count a refused or dropped connection; log the counts at most once a SUMMARY_EVERY_S."""
        tally = self._tally
        tally.counts[reason] = tally.counts.get(reason, 0) + 1
        tally.sources[reason] = peer
        if time.monotonic() - tally.logged_at >= SUMMARY_EVERY_S:
            self._log_tally()

    def _log_tally(self) -> None:
        tally = self._tally
        if tally.counts:
            log.warning("%s: %s", self.name, "; ".join(
                f"{n} connection(s) {why} (last from {tally.sources[why]})" for why, n in sorted(tally.counts.items())))
        tally.counts.clear()
        tally.sources.clear()
        tally.logged_at = time.monotonic()

    async def _log_tally_every(self) -> None:
        """What was counted since the last line, once a SUMMARY_EVERY_S (the end of an attack is logged too)."""
        while True:
            await asyncio.sleep(SUMMARY_EVERY_S)
            if self._tally.counts:
                self._log_tally()

    async def _accepted(self, sock: socket.socket, peer: str, source: str) -> None:
        """Serve one accepted connection (already counted under SOURCE) to its end; uncount it."""
        loop = asyncio.get_running_loop()
        writer: asyncio.StreamWriter | None = None
        clean = False   # ended by the protocol (answered, closed by the peer): close gracefully, else reset
        try:
            sock.setblocking(False)
            reader = asyncio.StreamReader(limit=self.limits.max_header_bytes, loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            await self._connection(reader, writer, peer)
            clean = True
            await self._linger(reader, writer)
        except _Drop as exc:
            self._note(f"dropped: {exc}", peer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass   # the peer went away: nothing to answer
        except asyncio.CancelledError:
            pass   # stop()
        except Exception:   # one connection's bug never stops the server
            log.exception("%s: connection from %s failed", self.name, peer)
        finally:
            left = self._open.get(source, 1) - 1
            if left > 0:
                self._open[source] = left
            else:
                self._open.pop(source, None)
            if writer is None:
                sock.close()
            elif clean:
                writer.close()   # flushes what is buffered, then closes
            else:
                writer.transport.abort()

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Half-close, then read and discard what the peer still sends, for LINGER_S at most (nginx's lingering_close).

        A connection closed with unread bytes in the kernel is reset, and the reset can destroy the answer
        before the client read it: an early 401 or 413, sent before the body was read, would be lost.
        """
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
        drained = 0
        with contextlib.suppress(TimeoutError, OSError):
            async with asyncio.timeout(LINGER_S):
                while drained <= self.limits.max_body_bytes:
                    data = await reader.read(65536)
                    if not data:
                        return
                    drained += len(data)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        lim = self.limits
        loop = asyncio.get_running_loop()
        stream = _Stream(reader, writer)
        ctx = self._tls() if self._tls is not None else None
        peer_cert: dict[str, Any] | None = None
        if ctx is not None:
            try:
                async with asyncio.timeout(lim.handshake_timeout_s):
                    await stream.handshake(ctx)
            except TimeoutError:
                raise _Drop(f"TLS handshake over {lim.handshake_timeout_s:g} s") from None
            except (ssl.SSLError, OSError) as exc:
                # Reported while the connection is still open: the log line comes before the peer sees the close.
                if self._on_handshake_failed is not None:
                    self._on_handshake_failed(peer, exc)
                return
            peer_cert = stream.tls.getpeercert() if stream.tls is not None else None
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=lim.max_header_bytes)
        first = True
        while True:
            if first:
                deadline = loop.time() + lim.request_timeout_s
            else:   # kept alive: wait for the next request's first bytes, then its whole deadline starts
                if not conn.trailing_data[0]:
                    try:
                        async with asyncio.timeout(lim.idle_timeout_s):
                            data = await stream.recv()
                    except TimeoutError:
                        return
                    if not data:
                        return
                    conn.receive_data(data)
                deadline = loop.time() + lim.request_timeout_s
            first = False
            try:
                async with asyncio.timeout_at(deadline):
                    got = await self._read(conn, stream, peer, peer_cert)
            except TimeoutError:
                raise _Drop(f"request not complete within {lim.request_timeout_s:g} s") from None
            if got is None:
                return
            # The deadline is the client's: the handler's time is not counted against it (an alert that was
            # acted on is always answered).
            response = await loop.run_in_executor(self._pool, self._handler.handle, *got)
            await self._send(conn, stream, response)
            if response.close or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _next(self, conn: h11.Connection, stream: _Stream) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            conn.receive_data(await stream.recv())

    async def _send(self, conn: h11.Connection, stream: _Stream, response: Response) -> None:
        headers = [(k, v) for k, v in response.headers if k.lower() not in ("content-length", "connection")]
        headers.append(("Content-Length", str(len(response.body))))
        if response.close:
            headers.append(("Connection", "close"))
        data = conn.send(h11.Response(status_code=response.status, headers=headers))
        data += conn.send(h11.Data(data=response.body)) if response.body else b""
        data += conn.send(h11.EndOfMessage())
        stream.write(data)
        try:
            async with asyncio.timeout(self.limits.write_timeout_s):
                await stream.drain()
        except TimeoutError:
            raise _Drop(f"response not taken within {self.limits.write_timeout_s:g} s") from None

    async def _read(self, conn: h11.Connection, stream: _Stream, peer: str,
                    peer_cert: dict[str, Any] | None) -> tuple[Request, bytes] | None:
        """Read one request, head and body; None when it ended or was answered here (an error, head())."""
        handler = self._handler
        try:
            event = await self._next(conn, stream)
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            message = (f"request line and headers over {self.limits.max_header_bytes} bytes" if status == 431
                       else f"malformed request: {exc}")
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await self._send(conn, stream, handler.error(status, message).closing())
            return None
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            return None
        # h11 bounds what it buffers of an incomplete head; a head that arrived whole is measured here.
        head_bytes = len(event.method) + len(event.target) + 12 + sum(len(n) + len(v) + 4 for n, v in event.headers)
        if head_bytes > self.limits.max_header_bytes:
            await self._send(conn, stream, handler.error(
                431, f"request line and headers over {self.limits.max_header_bytes} bytes").closing())
            return None
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        request = Request(event.method.decode("ascii"), event.target.decode("latin-1"), headers, peer, peer_cert)
        early = handler.head(request)
        if early is not None:
            # Answered before the body: the rest of the request is never read, so the connection ends.
            await self._send(conn, stream, early.closing())
            return None
        if conn.they_are_waiting_for_100_continue:
            stream.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        body = bytearray()
        limit = self.limits.max_body_bytes
        while True:
            try:
                event = await self._next(conn, stream)
            except h11.RemoteProtocolError as exc:
                await self._send(conn, stream, handler.error(400, f"malformed body: {exc}").closing())
                return None
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > limit:
                    await self._send(conn, stream, handler.error(413, f"body over {limit} bytes").closing())
                    return None
            elif isinstance(event, h11.EndOfMessage):
                break
            else:   # ConnectionClosed: the body never came
                return None
        return request, bytes(body)
