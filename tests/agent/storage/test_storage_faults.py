"""Faults that lose nothing: a stalled InfluxDB, 500/503, 413, 401/403, a full disk, a wall-clock step."""
from __future__ import annotations

import http.server
import logging
import os
import socket
import subprocess
import threading
import time

import pytest

from agent import netns
from agent.storage import Storage, V1Writer, query
from agent.storage.points import probe_point

DB = "vobox"


def batch(n: int, start: int) -> list:
    return [probe_point(f"b{i % 20}", "vm", "T", "icmp", "192.0.2.1", None, True, 0.1, None, None,
                        1_700_000_000 + (start + i) / 1000) for i in range(n)]


def count(server) -> int:
    with netns.entered(server.netns):
        rows = query(server.url, 'SELECT count("ok") FROM "probe"', db=DB)
    return rows[0]["count"] if rows else 0


def wait_for(pred, timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


# --- a stalled InfluxDB: accepts TCP, never answers -------------------------------------------------

class Staller:
    """Listens on 127.0.0.1:port in the current netns, accepts every connection and never answers."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.conns: list[socket.socket] = []
        self.accepted = 0
        self._t = threading.Thread(target=self._accept, daemon=True)
        self._t.start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            self.accepted += 1

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def test_stalled_influx_costs_the_caller_nothing_and_loses_nothing(throwaway_netns, tmp_path):
    from lab.influx import InfluxServer

    server = InfluxServer(str(tmp_path / "influx"), netns=throwaway_netns, http_port=8086)
    with netns.entered(throwaway_netns):
        staller = Staller(8086)
        st = Storage(V1Writer(server.url, DB, timeout_s=1.0), str(tmp_path / "state"), retry_min_s=0.2,
                     retry_max_s=0.5)
        took = []
        try:
            for k in range(30):                      # a 0.1 s "cycle" for 3 s of stall
                t0 = time.perf_counter()
                st.write(batch(100, k * 100))
                took.append(time.perf_counter() - t0)
                time.sleep(0.1)
            assert staller.accepted >= 1             # the writer really was stuck on the stalled server
            assert wait_for(lambda: st.counters().write_errors >= 1)
            assert st.counters().written == 0
        finally:
            staller.close()
        server.start()
        try:
            assert st.flush(timeout_s=30)
            c = st.counters()
            st.close()
            assert count(server) == 3000
        finally:
            server.stop()
    assert max(took) < 0.05, f"write() took up to {max(took) * 1000:.1f} ms while InfluxDB stalled"
    assert (c.written, c.queued, c.spool_points, c.dropped, c.rejected) == (3000, 0, 0, 0, 0)


def test_queue_bound_drops_oldest_and_counts_while_stalled(bare_netns, tmp_path):
    with netns.entered(bare_netns):
        staller = Staller(8086)
        st = Storage(V1Writer("http://127.0.0.1:8086", DB, timeout_s=1.0), str(tmp_path), retry_min_s=5,
                     queue_max_points=150)
        try:
            st.write(batch(100, 0))                  # the writer takes these and hangs on the stalled server
            assert wait_for(lambda: staller.accepted >= 1 and st.counters().queued == 0)
            for k in range(1, 4):
                st.write(batch(100, k * 100))        # 300 more while it hangs: 150 fit
            c = st.counters()
            assert c.queued == 150 and c.dropped == 150
            assert st.wait_idle(5)                   # the send times out; everything left is spooled
            c = st.counters()
            assert c.spool_points == 250 and c.dropped == 150 and c.queued == 0
        finally:
            staller.close()
            st.close(timeout_s=2)


# --- HTTP statuses from a local server ------------------------------------------------------------

class Scripted(http.server.BaseHTTPRequestHandler):
    """Answers /write with server.policy(body) -> status; records (time, status, lines)."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status = self.server.policy(body)
        self.server.log.append((time.monotonic(), status, body.splitlines()))
        data = b"" if status == 204 else b'{"error":"scripted"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    srv.policy, srv.log = (lambda body: 204), []
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def delivered(srv) -> list[bytes]:
    return [line for _, status, lines in srv.log if status == 204 for line in lines]


def lines_of(points) -> list[bytes]:
    return [p.to_line().encode() for p in points]


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_spools_retries_with_backoff_and_delivers_in_order(scripted, tmp_path, status):
    scripted.policy = lambda body: status
    st = Storage(V1Writer(scripted.url, DB, timeout_s=2), str(tmp_path), retry_min_s=0.1, retry_max_s=0.4)
    pts = batch(50, 0)
    st.write(pts[:10])
    assert wait_for(lambda: sum(1 for _, s, _ in scripted.log if s == status) >= 4)
    for k in range(1, 5):
        st.write(pts[k * 10:(k + 1) * 10])
    st.wait_idle()
    c = st.counters()
    assert c.spool_points + c.queued == 50 and c.written == 0 and c.dropped == 0
    assert 0.1 <= c.backoff_s <= 0.4
    times = [t for t, s, _ in scripted.log if s == status]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[0] >= 0.09 and max(gaps) >= 0.19              # waits between tries, doubling
    scripted.policy = lambda body: 204
    assert st.flush()
    st.close()
    assert delivered(scripted) == lines_of(pts)               # every point once, in order
    assert st.counters().written == 50


def test_413_splits_the_batch_and_delivers_everything(scripted, tmp_path, caplog):
    scripted.policy = lambda body: 413 if body.count(b"\n") > 30 else 204
    st = Storage(V1Writer(scripted.url, DB, timeout_s=2), str(tmp_path), batch_points=100, retry_min_s=5)
    pts = batch(250, 0)
    st.write(pts)
    assert st.flush()
    c = st.counters()
    assert (c.written, c.rejected, c.spool_points, c.dropped) == (250, 0, 0, 0)
    assert sorted(delivered(scripted)) == sorted(lines_of(pts))
    assert "413" in caplog.text and "splitting" in caplog.text
    n_requests = len(scripted.log)
    st.write(batch(100, 1000))                                # later batches start small: no new 413
    assert st.flush()
    assert all(s == 204 for _, s, _ in scripted.log[n_requests:])
    st.close()


def test_413_for_a_single_point_sets_it_aside(scripted, tmp_path):
    scripted.policy = lambda body: 413 if b"b7," in body else 204
    st = Storage(V1Writer(scripted.url, DB, timeout_s=2), str(tmp_path), retry_min_s=5)
    st.write(batch(20, 0))
    assert st.flush()
    c = st.counters()
    assert (c.written, c.rejected) == (19, 1)
    with open(st.rejected_path) as f:
        assert "HTTP 413" in f.read()
    st.close()


@pytest.mark.parametrize("status", [401, 403])
def test_credentials_refused_is_a_clear_error_and_spooled(scripted, tmp_path, caplog, status):
    scripted.policy = lambda body: status
    st = Storage(V1Writer(scripted.url, DB, username="agent", password="wrong", timeout_s=2), str(tmp_path),
                 retry_min_s=0.05, retry_max_s=0.1)
    with caplog.at_level(logging.DEBUG, logger="agent.storage"):
        for k in range(5):
            st.write(batch(10, k * 10))
            time.sleep(0.05)
        assert wait_for(lambda: sum(1 for _, s, _ in scripted.log if s == status) >= 3)
        st.wait_idle()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]          # one line, not one per try
    msg = errors[0].getMessage()
    assert "credentials" in msg and "influxdb.username/password/password_file" in msg and f"HTTP {status}" in msg
    assert "wrong" not in msg                                            # never the password
    c = st.counters()
    assert c.spool_points + c.queued == 50 and c.dropped == 0 and c.rejected == 0
    scripted.policy = lambda body: 204
    assert st.flush()
    assert len(delivered(scripted)) == 50
    st.close()


def test_wall_clock_step_changes_no_backoff_or_duration(scripted, tmp_path, monkeypatch):
    """time.time() jumps an hour back in the middle: back-off and durations come from time.monotonic()."""
    scripted.policy = lambda body: 503
    st = Storage(V1Writer(scripted.url, DB, timeout_s=2), str(tmp_path), retry_min_s=0.2, retry_max_s=0.2)
    st.write(batch(5, 0))
    assert wait_for(lambda: len(scripted.log) >= 1)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 3600)         # the wall clock steps back 1 h
    n = len(scripted.log)
    assert wait_for(lambda: len(scripted.log) >= n + 2, timeout_s=3)  # retries keep their 0.2 s rhythm
    c = st.counters()
    assert 0 < c.backoff_s <= 0.2 and st.last_write_ms >= 0
    monkeypatch.setattr(time, "time", lambda: real() + 3600)         # and forward
    scripted.policy = lambda body: 204
    assert st.flush()
    assert st.last_write_ms >= 0 and st.counters().backoff_s == 0
    st.close()
    assert len(delivered(scripted)) == 5


# --- the state_dir's disk is full ---------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (needs root); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "vobox-test", str(mnt)], check=True)
    try:
        yield str(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_keeps_points_in_memory_logs_once_and_loses_nothing(influx_server, small_disk, caplog):
    with netns.entered(influx_server.netns):
        st = Storage(V1Writer(influx_server.url, DB, timeout_s=2), os.path.join(small_disk, "state"),
                     retry_min_s=0.1, retry_max_s=0.2)
        st.write(batch(1, 0))
        assert st.flush()
        influx_server.stop()
        with caplog.at_level(logging.DEBUG, logger="agent.storage"):
            total = 1
            for k in range(12):                       # ~12 x 100 x 100 bytes: twice the disk
                st.write(batch(100, 1000 + k * 100))
                total += 100
                st.flush(timeout_s=5)
            c = st.counters()
            assert c.spool_errors >= 1 and c.queued > 0 and c.dropped == 0
            assert c.spool_points + c.queued + c.written == total
            grow = [r for r in caplog.records if "spool cannot grow" in r.getMessage() and r.levelno >= logging.ERROR]
            assert len(grow) == 1                     # one clear line, then counted quietly
            assert "No space left on device" in grow[0].getMessage()
        influx_server.start()
        assert st.flush(timeout_s=30)
        c = st.counters()
        st.close()
    assert count(influx_server) == total
    assert (c.queued, c.spool_points, c.dropped) == (0, 0, 0)
