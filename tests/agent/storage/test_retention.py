"""Old points never block storage: retention partial writes as InfluxDB 1.x, 2.0.x and 2.x answer them (a local
HTTP server answering with their exact statuses and bodies), and the spool dropping points older than a known
retention before sending (learned from SHOW RETENTION POLICIES / the buckets API, or [influxdb] retention).

The server keeps a 1 h retention policy: a batch with points older than now - 1 h is stored without them and
answered with the version's partial write (influxdata/influxdb#20359, influxdata/telegraf#8571)."""
from __future__ import annotations

import logging
import threading
import time

import pytest

from agent.storage import Storage, V1Writer
from agent.storage.influx import parse_go_duration_s, retention_dropped
from tests.agent.storage.retention_server import (
    ANSWERS,
    RetentionServer,
    points,
    writer_for,
    writes,
)


@pytest.fixture
def influx():
    srv = RetentionServer("1.x")
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("version", list(ANSWERS))
def test_a_retention_partial_write_is_one_request_no_resend_and_counted(influx, tmp_path, caplog, version):
    """After an outage: 200 points 8 days old spooled, then 300 fresh ones; the retention cannot be learned."""
    influx.version, influx.down = version, True
    st = Storage(writer_for(influx), str(tmp_path), retry_min_s=0.05, retry_max_s=0.1)
    st.write(points(200, 8 * 86400))
    deadline = time.monotonic() + 10
    while st.counters().spool_points < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert st.counters().spool_points == 200
    influx.down = False
    before = len(writes(influx))
    caplog.clear()
    fresh = points(300, 0, first=1000)
    st.write(fresh)
    assert st.flush(10)
    after = writes(influx)[before:]
    sent = [line for lines in after for line in lines]
    assert len(sent) == len(set(sent)) == 500                    # every point sent once: no resend, no bisection
    assert len(after) <= 2                                       # the spooled batch, then the fresh one
    assert sorted(influx.stored) == sorted(p.to_line("ms").encode() for p in fresh)
    c = st.counters()
    assert (c.retention_dropped, c.written, c.rejected, c.spool_points, c.queued) == (200, 300, 0, 0, 0)
    partial = [r for r in caplog.records if "older than its retention policy" in r.getMessage()]
    assert len(partial) == 1 and partial[0].levelno == logging.WARNING   # one line per batch
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not (tmp_path / "rejected.lp").exists()
    st.close()


@pytest.mark.parametrize("version", list(ANSWERS))
def test_a_batch_of_old_and_fresh_points_is_one_request_and_fresh_points_are_not_delayed(influx, tmp_path,
                                                                                         version):
    influx.version = version
    st = Storage(writer_for(influx), str(tmp_path), retry_min_s=5)
    old, fresh = points(50, 2 * 3600), points(50, 0, first=100)
    st.write(old + fresh)
    assert st.flush(5)
    assert len(writes(influx)) == 1
    assert sorted(influx.stored) == sorted(p.to_line("ms").encode() for p in fresh)
    assert st.counters().backoff_s == 0                          # no back-off: the next batch goes at once
    st.write(points(10, 0, first=500))
    assert st.flush(5) and len(writes(influx)) == 2
    assert (st.counters().retention_dropped, st.counters().written) == (50, 60)
    st.close()


@pytest.mark.parametrize("version", ["1.x", "2.x"])
def test_a_learned_retention_drops_spooled_old_points_before_sending(influx, tmp_path, caplog, version):
    influx.version, influx.down, influx.readable = version, True, True
    st = Storage(writer_for(influx), str(tmp_path), retry_min_s=0.05, retry_max_s=0.1)
    old, fresh = points(200, 8 * 86400), points(20, 0, first=1000)
    st.write(old + fresh)
    deadline = time.monotonic() + 10
    while st.counters().spool_points < 220 and time.monotonic() < deadline:
        time.sleep(0.02)
    influx.down = False
    assert st.flush(10)
    sent = [line for lines in writes(influx) for line in lines]
    # the old points were offered only while InfluxDB was down; once up, only the fresh ones went, once each
    old_lines = {p.to_line("ms").encode() for p in old}
    assert sum(1 for line in sent if line in old_lines) == sum(1 for line in influx.refused if line in old_lines)
    assert influx.stored == [p.to_line("ms").encode() for p in fresh]
    assert 503 in influx.answered and not {400, 422, 500} & set(influx.answered)
    asked = [path for method, path, _ in influx.requests if "buckets" in path or "/query" in path]
    assert asked == (["/query?q=SHOW+RETENTION+POLICIES+ON+%22vobox%22"] if version == "1.x"
                     else ["/api/v2/buckets?name=vobox"])         # asked once, before the replay
    assert (st.counters().retention_dropped, st.counters().written) == (200, 20)
    assert not [r for r in caplog.records if "older than its retention policy" in r.getMessage()]
    assert any("dropped 200 of 220 points older than the retention (3600 s, told by InfluxDB)" in r.getMessage()
               for r in caplog.records)
    st.close()


def test_configured_retention_drops_before_sending_without_asking(influx, tmp_path):
    influx.readable = True
    st = Storage(writer_for(influx), str(tmp_path), retention_s=7200)
    st.write(points(30, 3 * 3600) + points(30, 1800, first=100))
    assert st.flush(5)
    assert [len(lines) for lines in writes(influx)] == [30]
    assert not [p for m, p, _ in influx.requests if "/query" in p]
    assert (st.counters().retention_dropped, st.counters().written) == (30, 30)
    st.close()


@pytest.mark.parametrize("status, body, expect", [
    pytest.param(*ANSWERS["1.x"], 7, id="1.x"),
    pytest.param(*ANSWERS["2.0.x"], 7, id="2.0.x"),
    pytest.param(*ANSWERS["2.x"], 7, id="2.x"),
    pytest.param(400, '{"error":"partial write: field type conflict: input field \\"ok\\" on measurement \\"probe\\" '
                      'is type float, already exists as type integer dropped=%d"}', None, id="1.x-type-conflict"),
    pytest.param(500, '{"code":"internal error","message":"timeout %d"}', None, id="500-other"),
    pytest.param(204, "", None, id="ok"),
])
def test_retention_answers_are_told_from_other_refusals(status, body, expect):
    assert retention_dropped(status, body % 7 if "%d" in body else body) == expect


@pytest.mark.parametrize("text, seconds", [("1h0m0s", 3600), ("168h0m0s", 604800), ("0s", 0), ("30m0s", 1800),
                                           ("720h0m0s", 2592000)])
def test_go_durations(text, seconds):
    assert parse_go_duration_s(text) == seconds


def test_a_bad_go_duration_is_an_error():
    with pytest.raises(ValueError, match="not a duration"):
        parse_go_duration_s("7 days")


# --- the lab's real InfluxDB 1.6: a 1 h retention policy, points 2 h old ------------------------------------

class CountingV1(V1Writer):
    """The real V1Writer, recording the lines of every write request it sends."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.sent: list[list[bytes]] = []

    def send(self, body: bytes) -> None:
        self.sent.append(body.splitlines())
        super().send(body)


def one_hour_db(server, db: str) -> None:
    server.create_database(db)
    res = server.query(f'CREATE RETENTION POLICY "one_hour" ON "{db}" DURATION 1h REPLICATION 1 DEFAULT')
    assert "error" not in res["results"][0], res


def stored(server, db: str) -> int:
    res = server.query("SELECT count(ok) FROM probe", db=db)["results"][0]
    return res["series"][0]["values"][0][1] if "series" in res else 0


@pytest.mark.lab
def test_influxdb_1_6_partial_write_of_old_points_is_one_request_and_counted(influx_server, tmp_path, caplog):
    from agent import netns

    one_hour_db(influx_server, "ret1")
    with netns.entered(influx_server.netns):
        writer = CountingV1(influx_server.url, "ret1", timeout_s=5)
        st = Storage(writer, str(tmp_path), retry_min_s=5)
        st.write(points(100, 2 * 3600) + points(100, 0, first=1000))
        assert st.flush(10)
        c = st.counters()
        st.close()
    assert len(writer.sent) == 1                                  # no resend, no bisection
    assert (c.retention_dropped, c.written, c.rejected, c.write_errors) == (100, 100, 0, 0)
    assert stored(influx_server, "ret1") == 100
    partial = [r.getMessage() for r in caplog.records if "older than its retention policy" in r.getMessage()]
    assert len(partial) == 1 and "HTTP 400" in partial[0], partial
    assert not (tmp_path / "rejected.lp").exists()


@pytest.mark.lab
def test_influxdb_1_6_retention_is_learned_and_old_spooled_points_are_never_sent(influx_server, tmp_path):
    from agent import netns

    one_hour_db(influx_server, "ret2")
    with netns.entered(influx_server.netns):
        writer = CountingV1(influx_server.url, "ret2", timeout_s=2)
        st = Storage(writer, str(tmp_path), retry_min_s=0.1, retry_max_s=0.2)
        influx_server.stop()
        old, fresh = points(100, 2 * 3600), points(10, 0, first=1000)
        st.write(old + fresh)
        st.flush(5)
        assert st.counters().spool_points == 110
        tries = len(writer.sent)
        influx_server.start()
        assert st.flush(20)
        c = st.counters()
        st.close()
    after = [line for lines in writer.sent[tries:] for line in lines]
    assert sorted(after) == sorted(p.to_line("ms").encode() for p in fresh)   # the old ones never left the spool
    assert (c.retention_dropped, c.written, c.spool_points) == (100, 10, 0)
    assert stored(influx_server, "ret2") == 10
