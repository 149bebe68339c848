"""The send/receive loop on a real socket pair: first in-time answer wins; duplicates, strays and late replies don't."""
from __future__ import annotations

import socket
import threading
import time

from probes import exchange
from probes.matching import Match


def parse(data: bytes, _addr) -> Match | None:
    """Replies look like b"rep<index>:<tag>"; anything else is a stray."""
    if not data.startswith(b"rep"):
        return None
    index, tag = data[3:].split(b":")
    return Match(int(index), None, tag.decode())


def peer(sock: socket.socket, script) -> threading.Thread:
    """Answer requests as SCRIPT(request_bytes, sock) says, in a thread."""
    def loop():
        sock.settimeout(2.0)
        try:
            while True:
                script(sock.recv(100), sock)
        except (TimeoutError, OSError):
            pass
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def test_duplicates_strays_late_and_missing_replies():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    recorded = []

    def script(request: bytes, sock: socket.socket) -> None:
        index = int(request[3:])
        if index == 0:
            sock.send(b"stray")
            sock.send(b"rep0:first")
            sock.send(b"rep0:duplicate")
            sock.send(b"rep7:beyond")  # no such request: the loop must not crash on it
        elif index == 1:
            # request 2 leaves 0.1 s after request 1, so the loop is still running when this late reply lands
            time.sleep(0.2)
            sock.send(b"rep1:late")
        # request 2: never answered

    peer(theirs, script)
    requests = [(None, b"req%d" % i) for i in range(3)]
    try:
        start = time.time()
        got = exchange.run(ours, requests, lambda d, a: parse(d, a) if not d.startswith(b"rep7") else None,
                           0.15, probe="test", addresses=["a0", "a1", "a2"], rate_pps=10.0, burst=1,
                           recorder=lambda *args: recorded.append(args[1:4] + (args[4],)), linktype=101)
        elapsed = time.time() - start
    finally:
        ours.close()
        theirs.close()
    assert [o.error for o in got] == [None, "timeout", "timeout"]
    assert got[0].mac == "first"  # the duplicate did not overwrite the first answer
    assert got[0].answered_s is not None and got[0].answered_s >= got[0].sent_s
    assert all(o.sent_s is not None for o in got)
    assert elapsed < 0.2 + 0.15 + 0.2  # ended one timeout after the last request, not later
    directions = [r[0] for r in recorded]
    assert directions.count("out") == 3 + 2  # the unanswered requests 1 and 2 went out once more
    assert ("in", "test", "a0", b"rep0:first") in recorded and ("in", "test", "a0", b"rep0:duplicate") in recorded


def test_ends_as_soon_as_everything_answered_and_survives_a_broken_recorder():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer(theirs, lambda request, sock: sock.send(b"rep%d:x" % int(request[3:])))
    calls = []

    def broken(*args):
        calls.append(args)
        raise RuntimeError("consumer bug")

    try:
        start = time.time()
        got = exchange.run(ours, [(None, b"req%d" % i) for i in range(50)], parse, 5.0, probe="test",
                           addresses=[str(i) for i in range(50)], rate_pps=100000.0, burst=10, recorder=broken)
        elapsed = time.time() - start
    finally:
        ours.close()
        theirs.close()
    assert all(o.error is None for o in got)
    assert elapsed < 1.0  # far below the 5 s timeout
    assert len(calls) == 1  # disabled after its first failure


def test_a_request_lost_once_is_sent_again_and_answered_within_the_timeout():
    """A lossy link: the peer never sees the first copy of a request; the resend at half the timeout is answered."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    seen: dict[int, int] = {}

    def lose_first_copy(request: bytes, sock: socket.socket) -> None:
        index = int(request[3:])
        seen[index] = seen.get(index, 0) + 1
        if seen[index] == 2:
            sock.send(b"rep%d:x" % index)

    peer(theirs, lose_first_copy)
    timeout_s = 0.4
    try:
        got = exchange.run(ours, [(None, b"req%d" % i) for i in range(5)], parse, timeout_s, probe="test",
                           addresses=[str(i) for i in range(5)], rate_pps=100000.0, burst=5)
    finally:
        ours.close()
        theirs.close()
    assert [o.error for o in got] == [None] * 5
    assert seen == {i: 2 for i in range(5)}   # each sent exactly twice
    for o in got:
        # timed from the resend (which left at half the timeout), not from the lost first copy
        assert o.answered_s - o.sent_s < timeout_s * exchange.RESEND_SHARE


def test_every_answerer_is_kept_and_linger_waits_for_a_second_one_only_briefly():
    """Two hosts answer one request (an address conflict): both MACs kept, the first stays `mac`; with linger_s
    the loop listens that much after the last answer (not until the timeout); without it, it ends at once."""
    def script(request: bytes, sock: socket.socket) -> None:
        index = int(request[3:])
        sock.send(b"rep%d:aa" % index)
        sock.send(b"rep%d:aa" % index)        # the same host twice: one MAC
        if index == 0:                          # a second host, 50 ms later (after request 1's answer)
            def late() -> None:
                try:
                    sock.send(b"rep0:bb")
                except OSError:
                    pass
            threading.Timer(0.05, late).start()
    for linger_s, want in ((0.3, ("aa", "bb")), (0.0, ("aa",))):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        peer(theirs, script)
        try:
            start = time.time()
            got = exchange.run(ours, [(None, b"req%d" % i) for i in range(2)], parse, 5.0, probe="test",
                               addresses=["a0", "a1"], rate_pps=100000.0, burst=10, linger_s=linger_s)
            elapsed = time.time() - start
        finally:
            ours.close()
            theirs.close()
        assert got[0].mac == "aa" and got[0].macs == want, (linger_s, got)
        assert got[1].macs == ("aa",)
        assert elapsed < 1.5, elapsed   # far below the 5 s timeout either way
        if linger_s:
            assert elapsed >= linger_s


def _stamped_pair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setsockopt(socket.SOL_SOCKET, exchange.SO_TIMESTAMPNS, 1)   # kernel receive stamps (CLOCK_REALTIME)
    return ours, theirs


def test_a_process_wall_clock_an_hour_behind_the_kernels_times_replies_when_read(monkeypatch):
    """libfaketime, or a step between the kernel's stamp and ours: the kernel stamp lies outside the sweep, so the
    reply is timed when read (before: every reply was 3600 s "late" and every probe a timeout)."""
    ours, theirs = _stamped_pair()
    peer(theirs, lambda request, sock: sock.send(b"rep%d:x" % int(request[3:])))
    real_time = time.time
    monkeypatch.setattr(exchange.time, "time", lambda: real_time() - 3600.0)
    try:
        got = exchange.run(ours, [(None, b"req%d" % i) for i in range(5)], parse, 1.0, probe="test",
                           addresses=[str(i) for i in range(5)], rate_pps=100000.0, burst=5)
    finally:
        ours.close()
        theirs.close()
    assert [o.error for o in got] == [None] * 5
    for o in got:
        assert 0 <= o.answered_s - o.sent_s < 0.5
        assert abs(o.answered_s - (real_time() - 3600.0)) < 5      # stamps on the process's wall clock


def test_kernel_stamps_are_used_when_the_clocks_agree():
    ours, theirs = _stamped_pair()
    recorded = []
    peer(theirs, lambda request, sock: (time.sleep(0.05), sock.send(b"rep%d:x" % int(request[3:]))))
    try:
        got = exchange.run(ours, [(None, b"req0")], parse, 1.0, probe="test", addresses=["0"], rate_pps=10.0,
                           burst=1, recorder=lambda *args: recorded.append(args))
        time.sleep(0.01)
    finally:
        ours.close()
        theirs.close()
    assert got[0].error is None and 0.04 < got[0].answered_s - got[0].sent_s < 0.5
    reply = [r for r in recorded if r[1] == "in"]
    assert reply and reply[0][0] == got[0].answered_s                 # the recorder gets the same wall stamp
    assert abs(reply[0][0] - time.time()) < 1.0


def test_a_wall_clock_step_back_during_a_sweep_does_not_stretch_its_wait(monkeypatch):
    """The wall clock steps back an hour after the sweep started; an unanswered request still ends the sweep one
    timeout after it was sent (before: poll() waited for the wall clock to catch up, an hour)."""
    ours, theirs = _stamped_pair()
    peer(theirs, lambda request, sock: None)                        # never answers
    real_time = time.time
    calls = []

    def stepping() -> float:
        calls.append(1)
        return real_time() - (3600.0 if len(calls) > 1 else 0.0)

    monkeypatch.setattr(exchange.time, "time", stepping)
    result: list = []
    t = threading.Thread(target=lambda: result.append(exchange.run(
        ours, [(None, b"req0")], parse, 0.3, probe="test", addresses=["0"], rate_pps=10.0, burst=1)), daemon=True)
    start = time.monotonic()
    try:
        t.start()
        t.join(5.0)
    finally:
        ours.close()
        theirs.close()
    assert result and result[0][0].error == "timeout", "the sweep did not end within 5 s"
    assert time.monotonic() - start < 1.0
