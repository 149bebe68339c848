"""The on-disk spool and the Storage facade's control flow (with a recording stub writer)."""
from __future__ import annotations

import os

import pytest

from agent.storage import SinkError, Storage
from agent.storage.spool import Spool


def lines(n: int, start: int = 0, size: int = 20) -> list[bytes]:
    return [f"m,i={start + i} f=1i {start + i}".ljust(size, "0").encode() for i in range(n)]


def test_append_read_in_order_across_reopen(tmp_path):
    sp = Spool(str(tmp_path), max_bytes=10_000, segment_bytes=100)
    sp.append(lines(5, 0))            # 105 bytes: the next append starts a new segment
    sp.append(lines(5, 5))
    sp.close()
    again = Spool(str(tmp_path), max_bytes=10_000, segment_bytes=100)
    assert again.points == 10 and len(again.segments()) == 2
    again.append(lines(1, 10))        # a reopened spool appends to a new, later segment
    assert len(again.segments()) == 3
    got = [line for seg in again.segments() for line in again.read(seg)]
    assert got == lines(11, 0)


def test_partial_last_line_from_crash_is_cut(tmp_path):
    sp = Spool(str(tmp_path), max_bytes=10_000)
    sp.append(lines(2))
    sp.close()
    seg = os.path.join(tmp_path, sp.segments()[0])
    with open(seg, "ab") as f:
        f.write(b"m,i=half f=")
    again = Spool(str(tmp_path), max_bytes=10_000)
    assert again.points == 2 and again.read(again.segments()[0]) == lines(2)


def test_full_drops_oldest_segments_and_counts(tmp_path, caplog):
    sp = Spool(str(tmp_path), max_bytes=1000, segment_bytes=200)    # 21-byte lines
    for k in range(10):
        sp.append(lines(10, k * 10))
    assert sp.bytes <= 1000
    assert sp.points + sp.dropped == 100 and sp.dropped > 0
    kept = [line for seg in sp.segments() for line in sp.read(seg)]
    assert kept == lines(100)[-len(kept):]                           # the newest survive, in order
    assert "spool" in caplog.text and "full" in caplog.text and "dropped" in caplog.text


def test_batch_bigger_than_spool_keeps_its_newest(tmp_path):
    sp = Spool(str(tmp_path), max_bytes=105, segment_bytes=4096)
    sp.append(lines(10))
    assert sp.points == 5 and sp.dropped == 5
    assert sp.read(sp.segments()[0]) == lines(10)[5:]


class StubWriter:
    """Records bodies; `fail` decides per call: None ok, or an exception to raise."""

    def __init__(self):
        self.bodies: list[bytes] = []
        self.fail = None

    def send(self, body: bytes) -> None:
        self.bodies.append(body)
        if self.fail is not None:
            raise self.fail

    def close(self):
        pass


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_backoff_skips_the_sink_until_due_then_replays_first(tmp_path):
    w, clock = StubWriter(), Clock()
    st = Storage(w, str(tmp_path), retry_min_s=5, retry_max_s=20, clock=clock)
    w.fail = SinkError("down")
    st.write(["a f=1i 1"])
    assert st.wait_idle()
    st.write(["b f=1i 2"])                     # in back-off: straight to the spool, no request
    assert st.wait_idle()
    assert len(w.bodies) == 1 and st.counters().spool_points == 2
    clock.t = 6
    w.fail = None
    st.write(["c f=1i 3"])
    assert st.wait_idle()
    assert w.bodies[1:] == [b"a f=1i 1\nb f=1i 2\n", b"c f=1i 3\n"]   # spool first, in order
    assert st.counters().spool_points == 0 and st.counters().written == 3


def test_unexpected_writer_error_spools_and_never_raises(tmp_path):
    w = StubWriter()
    w.fail = RuntimeError("bug in the writer")
    st = Storage(w, str(tmp_path), retry_min_s=5)
    st.write(["a f=1i 1"])
    assert st.wait_idle()
    assert st.counters().spool_points == 1
    w.fail = None
    assert st.flush() and w.bodies[-1] == b"a f=1i 1\n"


def test_unencodable_point_is_counted_not_raised(tmp_path):
    from agent.storage.points import Point

    w = StubWriter()
    st = Storage(w, str(tmp_path))
    st.write([Point("m", {}, {"f": None}, 0), Point("m", {}, {"f": 1}, 0)])
    assert st.flush()
    assert st.counters().rejected == 1 and w.bodies == [b"m f=1i 0\n"]


def test_batches_of_batch_points(tmp_path):
    w = StubWriter()
    st = Storage(w, str(tmp_path), batch_points=1000)
    st.write([f"m,i={i} f=1i {i}" for i in range(2500)])
    assert st.flush()
    assert [b.count(b"\n") for b in w.bodies] == [1000, 1000, 500]


@pytest.mark.parametrize("bad", [pytest.param({0}, id="first"), pytest.param({5, 6}, id="adjacent"),
                                 pytest.param(set(range(8)), id="all")])
def test_bisect_isolates_refused_lines(tmp_path, bad):
    class Refusing(StubWriter):
        def send(self, body):
            self.bodies.append(body)
            if any(f"i={i} ".encode() in body for i in bad):
                raise SinkError("HTTP 400: bad", 400, retryable=False)

    w = Refusing()
    st = Storage(w, str(tmp_path))
    st.write([f"m,i={i} f=1i {i}" for i in range(8)])
    assert st.flush()
    c = st.counters()
    assert c.rejected == len(bad) and c.written == 8 - len(bad) and c.spool_points == 0
    with open(st.rejected_path) as f:
        assert sum(1 for line in f if line.startswith("m,")) == len(bad)
