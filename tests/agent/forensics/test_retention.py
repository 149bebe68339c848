"""Retention: count and byte bounds, oldest removed first, the current bundle kept."""
from __future__ import annotations

import os

import pytest

from agent.forensics import retention
from agent.forensics.retention import BundleInfo, parse_stamp, plan, prune, stamp


def B(box, start, size):
    return BundleInfo(path=f"/e/{box}/{stamp(start)}", box=box, start_s=start, size_bytes=size)


@pytest.mark.parametrize("bundles, max_n, max_b, keep, removed", [
    pytest.param([B("a", 1, 10), B("b", 2, 10), B("a", 3, 10)], 10, 100, (), [], id="within-bounds"),
    pytest.param([B("a", 3, 10), B("b", 2, 10), B("a", 1, 10)], 2, 100, (), [1], id="count-oldest-first"),
    pytest.param([B("a", 1, 50), B("b", 2, 50), B("a", 3, 50)], 10, 100, (), [1], id="bytes"),
    pytest.param([B("a", 1, 50), B("b", 2, 50), B("a", 3, 50)], 1, 1000, (), [1, 2], id="count-to-one"),
    pytest.param([B("a", 1, 50), B("b", 2, 50), B("a", 3, 50)], 1, 1000, (f"/e/a/{stamp(1)}",), [2, 3],
                 id="kept-bundle-is-skipped"),
])
def test_plan(bundles, max_n, max_b, keep, removed):
    assert [b.start_s for b in plan(bundles, max_n, max_b, keep)] == removed


def test_stamp_roundtrip():
    assert stamp(1795821300.7) == "20261127T231500Z"
    assert parse_stamp("20261127T231500Z") == 1795821300.0
    assert parse_stamp("notes") is None


def test_prune_on_disk(tmp_path):
    root = str(tmp_path)
    for box, start in (("a", 100.0), ("b", 200.0), ("a", 300.0)):
        d = os.path.join(root, box, stamp(start))
        os.makedirs(d)
        with open(os.path.join(d, "onset.pcap"), "wb") as f:
            f.write(b"x" * 1000)
    os.makedirs(os.path.join(root, "a", "not-a-bundle"))
    removed = prune(root, max_bundles=10, max_bytes=2500)
    assert removed == [os.path.join(root, "a", stamp(100.0))]
    removed = prune(root, max_bundles=1, max_bytes=10**9)
    assert removed == [os.path.join(root, "b", stamp(200.0))]
    assert not os.path.exists(os.path.join(root, "b"))  # empty box directory removed too
    assert [b.start_s for b in retention.scan(root)] == [300.0]
