"""Property-based: random points encode to line protocol and read back exactly from the lab's real InfluxDB 1.6."""
from __future__ import annotations

import itertools

import pytest
import requests
from hypothesis import HealthCheck, event, given, settings, strategies as st

from agent import netns
from agent.storage import query
from agent.storage.influx import V1Writer
from agent.storage.points import LineProtocolError, Point

# Text with what trips line protocol up: separators, escapes, quotes, newlines, unicode.
TRICKY = st.sampled_from(list(' ,="\\\n\r\t#éü€😀\x00') + ["a", "b", "Z", "0"])
TEXT = st.lists(st.one_of(TRICKY, st.characters(codec="utf-8")), max_size=12).map("".join)
NAME_TRICKY = st.sampled_from(list(' ,="\\#éü€😀') + ["a", "b", "Z", "0"] * 3 + ["\n", "\t"])
NAME = st.lists(st.one_of(NAME_TRICKY, st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs"))),
                min_size=1, max_size=10).map("".join)
FIELD = st.one_of(TEXT, st.integers(-(2**63) + 1, 2**63 - 1), st.booleans(),
                  st.floats(allow_nan=False, allow_infinity=False))


def _valid(p: Point) -> bool:
    try:
        p.to_line()
        return True
    except LineProtocolError:
        return False


@st.composite
def points(draw):
    """A small batch of points with distinct times; some may be unwritable (those must be rejected)."""
    measurement = draw(NAME)
    tags = draw(st.dictionaries(NAME, NAME, max_size=3))
    fields = draw(st.dictionaries(NAME, FIELD, min_size=1, max_size=3))
    return Point(measurement, tags, fields, 1_700_000_000_000_000_000)


_db_counter = itertools.count()


def _read_back(server, db: str) -> list[dict]:
    with netns.entered(server.netns):
        return query(server.url, "SELECT * FROM /.*/ GROUP BY *", db=db)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(p=points())
def test_points_round_trip_exactly_or_are_rejected(module_influx, p):
    try:
        line = p.to_line("ms")
    except LineProtocolError:
        event("rejected at encode")
        # rejected at encode time: it must really be one of the documented unwritable shapes
        texts = [p.measurement, *p.tags, *(v for v in p.tags.values() if v), *p.fields]
        assert (any("\\" in t or t == "time" or any(ord(c) < 0x20 or c == "\x7f" for c in t) for t in texts)
                or set(p.tags) & set(p.fields) or p.measurement.startswith("#")), p
        return
    except ValueError:
        return                                   # no writable field (all None/NaN): nothing to compare
    event("written and read back")
    db = f"rt{next(_db_counter)}"
    server = module_influx
    w = V1Writer(server.url, db, timeout_s=5)
    try:
        with netns.entered(server.netns):
            w.ensure_database()
            w.send(line.encode() + b"\n")
        rows = _read_back(server, db)
    finally:
        with netns.entered(server.netns):
            requests.post(f"{server.url}/query", params={"q": f'DROP DATABASE "{db}"'}, timeout=5)
        w.close()
    assert len(rows) == 1, (line, rows)
    row = rows[0]
    assert row.pop("_measurement") == p.measurement
    assert row.pop("time") == 1_700_000_000_000
    want_tags = {k: v for k, v in p.tags.items() if v}
    for k, v in want_tags.items():
        assert row.pop(k) == v, (k, line)
    got_fields = {k: v for k, v in row.items() if v is not None}
    assert set(got_fields) == set(p.fields), line
    for k, v in p.fields.items():
        got = got_fields[k]
        if isinstance(v, float):
            # InfluxDB's JSON writes an integral float without a point (1e17 -> 100000000000000000)
            assert isinstance(got, (int, float)) and not isinstance(got, bool) and float(got) == v, (k, got, line)
        else:
            assert type(got) is type(v) and got == v, (k, got, line)


@pytest.mark.lab   # counts what the lab test above wrote to a real influxd
def test_zz_enough_examples_reached_influxdb():
    """The property above must really have written and read back many points, not only rejected them."""
    assert next(_db_counter) >= 80
