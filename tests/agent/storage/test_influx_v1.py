"""Storage against a real InfluxDB 1.6 (influxd in a throwaway netns): counts, outage, restart, 400, spool bound."""
from __future__ import annotations

import os

import pytest

from agent import netns
from agent.storage import Storage, V1Writer, query
from agent.storage.points import Point, box_point, probe_point

DB = "vobox"


def count(server, measurement: str, field: str = "ok", where: str = "") -> int:
    with netns.entered(server.netns):
        rows = query(server.url, f'SELECT count("{field}") FROM "{measurement}" {where}', db=DB)
    return rows[0]["count"] if rows else 0


def batch(n: int, start: int, measurement: str = "probe") -> list[Point]:
    """n distinct points (distinct series+time, so each counts once)."""
    return [probe_point(f"b{i % 50}", "container", "T", "icmp", f"192.0.2.{i % 50}", None, True, 0.1, None, None,
                        1_700_000_000 + (start + i) / 1000) for i in range(n)]


@pytest.fixture
def storage(influx_server, tmp_path):
    """A Storage writing to the namespace's influxd (calls must run inside the namespace)."""
    st = Storage(V1Writer(influx_server.url, DB, timeout_s=2), str(tmp_path / "state"), batch_points=500,
                 retry_min_s=0.1, retry_max_s=0.1)
    yield st
    st.close()


def test_write_query_exact_counts_and_db_created(influx_server, storage):
    with netns.entered(influx_server.netns):
        storage.write(batch(1200, 0))                  # creates the database on the first write (404)
        storage.write([box_point("b1", "vm", "T", 1, "up", "none", 1_700_000_000.0)])
        assert storage.flush()
        rows = query(influx_server.url, 'SELECT "up","state" FROM "box"', db=DB)
    assert count(influx_server, "probe") == 1200
    assert rows == [{"_measurement": "box", "time": 1_700_000_000_000, "up": 1, "state": "up"}]
    c = storage.counters()
    assert (c.written, c.spool_points, c.write_errors, c.rejected, c.dropped) == (1201, 0, 0, 0, 0)


def test_tricky_values_round_trip(influx_server, storage):
    p = Point("probe", {"box": "a b,c=d\\e", "kind": "vm"}, {"error": 'x "y" \\ z', "ok": 0}, 1_000_000)
    with netns.entered(influx_server.netns):
        storage.write([p])
        assert storage.flush()
        rows = query(influx_server.url, 'SELECT "error" FROM "probe" GROUP BY "box"', db=DB)
    assert storage.counters().rejected == 0
    assert rows[0]["box"] == "a b,c=d\\e" and rows[0]["error"] == 'x "y" \\ z'


def test_outage_spools_then_replays_each_point_once(influx_server, storage):
    with netns.entered(influx_server.netns):
        storage.write(batch(100, 0))
        assert storage.flush()
        influx_server.stop()
        for k in range(1, 6):                          # 5 batches while it is down
            storage.write(batch(100, k * 100))
        assert not storage.flush()
        assert storage.counters().spool_points == 500
        assert storage.counters().write_errors >= 1
        assert not storage.flush()
        influx_server.start()
        assert storage.flush()
    assert storage.counters().spool_points == 0
    assert count(influx_server, "probe") == 600
    assert not [n for n in os.listdir(storage.spool.directory) if n.endswith(".lp")]


def test_spool_replayed_in_order_before_new_points(influx_server, storage, tmp_path):
    """A point spooled during the outage and a newer one at the same series+time: the newer wins."""
    t = 1_700_000_000.0
    with netns.entered(influx_server.netns):
        storage.write([box_point("b1", "vm", "T", 1, "up", "none", 0.5)])
        assert storage.flush()
        influx_server.stop()
        storage.write([box_point("b1", "vm", "T", 1, "suspect", "l3", t)])
        assert not storage.flush()
        influx_server.start()
        storage.write([box_point("b1", "vm", "T", 0, "frozen", "l3", t)])   # replays the spool first
        assert storage.flush()
        rows = query(influx_server.url, f'SELECT "up","state" FROM "box" WHERE time = {int(t * 1e9)}', db=DB)
    assert [(r["up"], r["state"]) for r in rows] == [(0, "frozen")]


def test_restarted_storage_replays_non_empty_spool(influx_server, tmp_path):
    state = str(tmp_path / "state2")
    with netns.entered(influx_server.netns):
        first = Storage(V1Writer(influx_server.url, DB, timeout_s=2), state, retry_min_s=0.1)
        first.write(batch(10, 0))
        assert first.flush()
        influx_server.stop()
        first.write(batch(300, 10))
        first.close(timeout_s=5)
        assert first.counters().spool_points == 300   # the agent exits (or is killed) with a spool
        influx_server.start()
        second = Storage(V1Writer(influx_server.url, DB, timeout_s=2), state, retry_min_s=0.1)
        assert second.counters().spool_points == 300
        assert second.flush()
        second.close()
    assert count(influx_server, "probe") == 310


def test_400_sets_bad_points_aside_without_blocking_others(influx_server, storage):
    good = batch(200, 0)
    with netns.entered(influx_server.netns):
        storage.write(good[:1])                         # field ok is an integer now
        assert storage.flush()
        # type conflicts, in the same shard (field types are per shard in 1.x)
        bad = [Point("probe", {"box": "bad1"}, {"ok": "yes"}, 1_700_000_000_500_000_000),
               Point("probe", {"box": "bad2"}, {"ok": 1.5}, 1_700_000_000_600_000_000)]
        mixed = good[1:100] + bad[:1] + good[100:150] + bad[1:] + good[150:]
        storage.write(mixed)
        storage.write(batch(10, 1000))                  # nothing is blocked afterwards
        assert storage.flush()
    assert count(influx_server, "probe") == 210
    c = storage.counters()
    assert c.rejected == 2 and c.spool_points == 0
    with open(storage.rejected_path) as f:
        text = f.read()
    assert 'box=bad1 ok="yes"' in text and "box=bad2 ok=1.5" in text and "HTTP 400" in text
    assert text.count("\n# ") + text.startswith("# ") == 2


def test_spool_full_drops_oldest_and_counts(influx_server, tmp_path):
    with netns.entered(influx_server.netns):
        st = Storage(V1Writer(influx_server.url, DB, timeout_s=2), str(tmp_path / "s"),
                     spool_max_bytes=64 * 1024, retry_min_s=0.1)
        st.write(batch(1, 0))
        assert st.flush()
        influx_server.stop()
        total = 0
        for k in range(20):                              # ~ 20 x 100 x 100 bytes = 200 kB > 64 kB
            st.write(batch(100, 1000 + k * 100))
            total += 100
            assert not st.flush()                        # each batch reaches the spool on its own
        c = st.counters()
        assert c.dropped > 0 and c.spool_bytes <= 64 * 1024
        assert c.spool_points + c.dropped == total
        influx_server.start()
        assert st.flush()
        st.close()
    assert count(influx_server, "probe") == 1 + total - c.dropped
    # the newest survived: the last point written is there, the first spooled one is not
    newest = 1_700_000_000_000 + 1000 + 19 * 100 + 99
    oldest = 1_700_000_000_000 + 1000
    assert count(influx_server, "probe", where=f"WHERE time = {newest}ms") == 1
    assert count(influx_server, "probe", where=f"WHERE time = {oldest}ms") == 0
