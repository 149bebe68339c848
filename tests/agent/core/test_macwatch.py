"""MAC change detection from ARP/NDP results."""
from __future__ import annotations

import json

import pytest

from agent.core.macwatch import MacChange, MacWatch
from probes.types import ProbeResult


def R(probe, target, ok, mac=None, t=1.0):
    return ProbeResult(target, probe, None, ok, 1.0 if ok else None, None if ok else "timeout", mac, t)


CASES = [
    pytest.param([[R("arp", "192.0.2.10", True, "02:42:c0:00:02:0a")], [R("arp", "192.0.2.10", True, "02:42:c0:00:02:0a")]],
                 [], id="same-mac"),
    pytest.param([[R("arp", "192.0.2.10", True, "02:42:c0:00:02:0a")],
                  [R("arp", "192.0.2.10", True, "02:42:C0:00:02:0B", t=2.0)]],
                 [MacChange("b", "192.0.2.10", "02:42:c0:00:02:0a", "02:42:c0:00:02:0b", 2.0)], id="changed"),
    pytest.param([[R("arp", "192.0.2.10", True, "aa:aa:aa:aa:aa:aa")], [R("arp", "192.0.2.10", False)],
                  [R("arp", "192.0.2.10", True, "bb:bb:bb:bb:bb:bb", t=3.0)]],
                 [MacChange("b", "192.0.2.10", "aa:aa:aa:aa:aa:aa", "bb:bb:bb:bb:bb:bb", 3.0)],
                 id="failure-in-between-keeps-last"),
    pytest.param([[R("ndp", "2001:db8:1::a", True, "aa:aa:aa:aa:aa:aa")],
                  [R("ndp", "2001:0db8:1:0::a", True, "bb:bb:bb:bb:bb:bb", t=4.0)]],
                 [MacChange("b", "2001:db8:1::a", "aa:aa:aa:aa:aa:aa", "bb:bb:bb:bb:bb:bb", 4.0)], id="ndp-spelling"),
    pytest.param([[R("arp", "192.0.2.10", True, "aa:aa:aa:aa:aa:aa")]], [], id="first-sighting-is-no-change"),
    pytest.param([[R("icmp", "192.0.2.10", True)], [R("tcp", "192.0.2.10", True)]], [], id="other-probes-ignored"),
]


@pytest.mark.parametrize("cycles, expected", CASES)
def test_macwatch_table(cycles, expected):
    w = MacWatch()
    changes = [c for results in cycles for c in w.observe("b", results)]
    assert changes == expected


def test_boxes_are_apart_and_state_roundtrips():
    w = MacWatch()
    w.observe("b1", [R("arp", "192.0.2.10", True, "aa:aa:aa:aa:aa:aa")])
    assert w.observe("b2", [R("arp", "192.0.2.10", True, "bb:bb:bb:bb:bb:bb")]) == []
    restored = MacWatch.from_json(json.loads(json.dumps(w.to_json())))
    assert restored.last("b1") == {"192.0.2.10": "aa:aa:aa:aa:aa:aa"}
    (change,) = restored.observe("b1", [R("arp", "192.0.2.10", True, "cc:cc:cc:cc:cc:cc")])
    assert change.old == "aa:aa:aa:aa:aa:aa"
    restored.forget(["b2"])
    assert restored.last("b1") == {}


def test_bad_state_is_named():
    with pytest.raises(ValueError, match="box 'b'.*address -> MAC"):
        MacWatch.from_json({"b": ["x"]})
