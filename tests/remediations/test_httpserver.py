"""The shared HTTP server (remediations/httpserver.py) on loopback: the total request deadline drops a slow
sender whatever it trickles, the TLS handshake timeout, the per-source and total connection bounds (refusals
logged with the source), header and body limits, keep-alive, and no thread per connection.
Several source addresses: 127.0.0.0/8 is loopback, so 127.0.0.2... are other sources without a namespace."""
from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import ssl
import threading
import time

import pytest

from remediations.httpserver import HTTPServer, Limits, Request, Response, source_key
from tests.pki import CA


class Echo:
    """A handler that answers every request with what it saw (JSON); head() refuses /refuse before the body."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes]] = []

    def error(self, status: int, message: str) -> Response:
        return Response(status, json.dumps({"error": message}).encode(), (("Content-Type", "application/json"),))

    def head(self, request: Request) -> Response | None:
        return Response(403, b"no\n") if request.target == "/refuse" else None

    def handle(self, request: Request, body: bytes) -> Response:
        self.seen.append((request.method, request.target, body))
        if request.target == "/slow":
            time.sleep(0.6)
        return Response(200, json.dumps({"peer": request.peer, "len": len(body),
                                         "cert": request.peer_cert is not None}).encode())


@pytest.fixture
def serve():
    """serve(limits, tls=None) -> (server, handler); stopped at the end."""
    made: list[HTTPServer] = []

    def start(limits: Limits | None = None, tls: ssl.SSLContext | None = None, **kw) -> tuple[HTTPServer, Echo]:
        handler = Echo()
        srv = HTTPServer("127.0.0.1", 0, handler, name="test-http", limits=limits or Limits(),
                         tls=(lambda: tls) if tls is not None else None, **kw)
        srv.start()
        made.append(srv)
        return srv, handler

    yield start
    for srv in made:
        srv.stop()


def connect(srv: HTTPServer, source: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(srv.address, timeout=10, source_address=(source, 0))
    return s


def closed_after(sock: socket.socket, limit_s: float) -> float | None:
    """Seconds until the server closes SOCK (reading what it sends); None when still open after limit_s."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - t0 < limit_s:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - t0
        except TimeoutError:
            continue
        except ConnectionError:
            return time.monotonic() - t0
    return None


def refused_at_accept(srv: HTTPServer, source: str = "127.0.0.1") -> bool:
    """A new connection from SOURCE is reset at once: during connect() itself, or just after it."""
    try:
        sock = connect(srv, source)
    except ConnectionResetError:
        return True
    try:
        return closed_after(sock, 3) is not None
    finally:
        sock.close()


def get(srv: HTTPServer, path: str = "/x", source: str = "127.0.0.1", body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*srv.address, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST" if body is not None else "GET", path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_a_slow_sender_is_dropped_at_the_total_deadline_whatever_it_trickles(serve):
    srv, handler = serve(Limits(request_timeout_s=0.5))
    sock = connect(srv)
    request = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"y" * 100
    t0 = time.monotonic()
    sent = 0
    try:
        while sent < len(request) and time.monotonic() - t0 < 5:   # a byte every 50 ms: 7.5 s for the whole
            sock.sendall(request[sent:sent + 1])
            sent += 1
            time.sleep(0.05)
    except (BrokenPipeError, ConnectionResetError):
        pass
    dropped = closed_after(sock, 5)
    elapsed = time.monotonic() - t0
    sock.close()
    assert dropped is not None and 0.4 <= elapsed < 2.5, (elapsed, sent)
    assert sent < len(request) and handler.seen == []


def test_a_client_that_sends_nothing_is_dropped_at_the_deadline(serve):
    srv, _ = serve(Limits(request_timeout_s=0.5))
    sock = connect(srv)
    took = closed_after(sock, 5)
    sock.close()
    assert took is not None and 0.4 <= took < 2.5


def test_an_idle_tls_handshake_is_dropped_at_the_handshake_timeout(serve, tmp_path):
    ca = CA(tmp_path / "pki", "t")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*ca.issue("server", addresses=("127.0.0.1",)))
    srv, _ = serve(Limits(handshake_timeout_s=0.5, request_timeout_s=30), tls=ctx)
    sock = connect(srv)
    took = closed_after(sock, 5)
    sock.close()
    assert took is not None and 0.4 <= took < 2.5
    # a real TLS client is served, the certificate seen by the handler when one is asked for
    client = ssl.create_default_context(cafile=ca.pem)
    conn = http.client.HTTPSConnection(*srv.address, context=client, timeout=10)
    conn.request("GET", "/x")
    assert conn.getresponse().status == 200
    conn.close()


def test_connections_per_source_are_bounded_and_the_refusal_is_logged_with_the_source(serve, caplog):
    srv, _ = serve(Limits(max_per_source=3, request_timeout_s=30))
    held = [connect(srv) for _ in range(3)]
    try:
        deadline = time.monotonic() + 5
        while srv.connections < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        with caplog.at_level(logging.WARNING, logger="remediations.httpserver"):
            assert refused_at_accept(srv)
        assert "refused at accept: 3 already open from one source (last from 127.0.0.1)" in caplog.text
        assert get(srv, source="127.0.0.2")[0] == 200    # another source is served
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while srv.connections and time.monotonic() < deadline:
        time.sleep(0.02)
    assert get(srv)[0] == 200                            # the source's slots are free again


def test_connections_in_all_are_bounded(serve):
    srv, _ = serve(Limits(max_per_source=8, max_connections=4, request_timeout_s=30))
    held = [connect(srv, f"127.0.0.{10 + i}") for i in range(4)]
    try:
        deadline = time.monotonic() + 5
        while srv.connections < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert refused_at_accept(srv, "127.0.0.20")
    finally:
        for s in held:
            s.close()


def test_headers_over_the_limit_get_431_and_a_body_over_the_limit_413(serve):
    srv, handler = serve(Limits(max_header_bytes=2048, max_body_bytes=1000))
    conn = http.client.HTTPConnection(*srv.address, timeout=10)
    conn.request("GET", "/x", headers={"X-Big": "a" * 4000})
    resp = conn.getresponse()
    assert resp.status == 431 and "over 2048 bytes" in json.loads(resp.read())["error"]
    conn.close()
    # chunked: counted as it arrives
    sock = connect(srv)
    chunk = b"z" * 600
    sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                 (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2 + b"0\r\n\r\n")
    answer = sock.recv(4096)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413") and b"body over 1000 bytes" in answer
    assert get(srv, body=b"q" * 1000) == (200, json.dumps({"peer": "127.0.0.1", "len": 1000,
                                                           "cert": False}).encode())
    assert handler.seen == [("POST", "/x", b"q" * 1000)]


def test_an_early_answer_from_head_closes_without_reading_the_body(serve):
    srv, handler = serve()
    sock = connect(srv)
    sock.sendall(b"POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")   # no body follows
    t0 = time.monotonic()
    answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 403") and b"connection: close" in answer.lower()
    assert closed_after(sock, 3) is not None and time.monotonic() - t0 < 2
    sock.close()
    assert handler.seen == []


def test_keep_alive_serves_several_requests_and_an_idle_connection_is_closed(serve):
    srv, handler = serve(Limits(idle_timeout_s=0.5))
    conn = http.client.HTTPConnection(*srv.address, timeout=10)
    for _ in range(3):
        conn.request("GET", "/k")
        assert conn.getresponse().read()
    sock = conn.sock
    assert len(handler.seen) == 3
    assert closed_after(sock, 5) is not None
    conn.close()


def test_malformed_requests_get_400(serve):
    srv, _ = serve()
    sock = connect(srv)
    sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
    answer = sock.recv(4096)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 400") and b"malformed request" in answer


def test_limits_are_checked():
    with pytest.raises(ValueError, match="request_timeout_s must be > 0"):
        Limits(request_timeout_s=0)
    with pytest.raises(ValueError, match="max_per_source must be >= 1"):
        Limits(max_per_source=0)


def test_two_hundred_slow_clients_cost_no_thread_and_a_real_request_is_answered_at_once(serve):
    """The case of issue 27: 200 slow clients gave the stdlib server 209 threads."""
    before = threading.active_count()
    srv, _ = serve(Limits(request_timeout_s=30, max_per_source=8))
    started = threading.active_count()
    slow: list[socket.socket] = []
    try:
        for i in range(200):   # 25 sources x 8: every one within the per-source bound
            s = connect(srv, f"127.0.1.{1 + i // 8}")
            s.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\n")   # a head never finished
            slow.append(s)
        deadline = time.monotonic() + 10
        while srv.connections < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.connections == 200
        t0 = time.monotonic()
        assert get(srv, source="127.0.0.1")[0] == 200
        latency_s = time.monotonic() - t0
        threads = threading.active_count()
    finally:
        for s in slow:
            with contextlib.suppress(OSError):
                s.close()
    # the loop thread and at most `workers` handler threads, whatever the number of clients
    assert started - before == 1 and threads - before <= 1 + Limits().workers, (before, started, threads)
    assert latency_s < 1.0, latency_s


@pytest.mark.parametrize("address, key", [
    pytest.param("192.0.2.7", "192.0.2.7", id="ipv4-itself"),
    pytest.param("2001:db8:1:2::10", "2001:db8:1:2::/64", id="ipv6-its-64"),
    pytest.param("2001:db8:1:2:ffff:1:2:3", "2001:db8:1:2::/64", id="ipv6-same-64"),
    pytest.param("2001:db8:1:3::10", "2001:db8:1:3::/64", id="ipv6-next-64"),
    pytest.param("::ffff:198.51.100.4", "198.51.100.4", id="ipv4-mapped-is-ipv4"),
    pytest.param("fe80::1%eth9", "fe80::/64", id="zone-dropped"),
    pytest.param("?", "?", id="unknown-peer"),
])
def test_the_per_source_bound_counts_ipv4_addresses_and_ipv6_64s(address, key):
    assert source_key(address) == key


def test_the_handlers_time_is_not_the_clients_deadline(serve):
    """An alert that takes the engine a while is still answered: the deadline bounds what the client sends."""
    srv, handler = serve(Limits(request_timeout_s=0.25))   # the handler takes 0.6 s, over twice the deadline
    assert get(srv, "/slow")[0] == 200 and handler.seen == [("GET", "/slow", b"")]
