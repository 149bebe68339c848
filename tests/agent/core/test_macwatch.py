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


# --- address conflicts: several MACs answering one request in one sweep (issue 28) ---------------------------

def RM(target, macs, t=1.0, probe="arp", ok=True):
    return ProbeResult(target, probe, None, ok, 1.0 if ok else None, None if ok else "timeout",
                       macs[0] if macs and ok else None, t, macs=tuple(macs) if ok else ())


A, B, C = "aa:aa:aa:aa:aa:aa", "bb:bb:bb:bb:bb:bb", "cc:cc:cc:cc:cc:cc"


@pytest.mark.parametrize("cycles,want", [
    pytest.param([[RM("192.0.2.10", [A])], [RM("192.0.2.10", [A, B], t=2.0)]],
                 [("192.0.2.10", (A, B), True, 2.0)], id="second-answerer-opens"),
    pytest.param([[RM("192.0.2.10", [A, B])], [RM("192.0.2.10", [B, A], t=2.0)]],
                 [("192.0.2.10", (A, B), True, 1.0)], id="same-pair-other-order-is-the-same-conflict"),
    pytest.param([[RM("192.0.2.10", [A, B])], [RM("192.0.2.10", [A, C], t=2.0)]],
                 [("192.0.2.10", (A, B), True, 1.0), ("192.0.2.10", (A, C), True, 2.0)], id="macs-change"),
    pytest.param([[RM("192.0.2.10", [A, B])], [RM("192.0.2.10", [], ok=False, t=2.0)], [RM("192.0.2.10", [A], t=3.0)]],
                 [("192.0.2.10", (A, B), True, 1.0), ("192.0.2.10", (A, B), False, 3.0)],
                 id="unanswered-keeps-it-one-answer-closes"),
    pytest.param([[RM("2001:db8::a", [A, B], probe="ndp")]], [("2001:db8::a", (A, B), True, 1.0)], id="ndp"),
    pytest.param([[RM("192.0.2.10", [A, A])]], [], id="one-host-twice-is-no-conflict"),
])
def test_address_conflict_table(cycles, want):
    w = MacWatch()
    got = [(c.address, c.macs, c.open, c.time_s) for results in cycles for c in w.observe_conflicts("b", results)]
    assert got == want


def test_a_conflict_is_not_a_mac_change_and_a_change_between_sweeps_still_is():
    w = MacWatch()
    assert w.observe("b", [RM("192.0.2.10", [A])]) == []
    for order in ([A, B], [B, A], [A, B]):   # whichever host answers first: no change while the conflict lasts
        assert w.observe("b", [RM("192.0.2.10", order, t=2.0)]) == []
    assert w.observe("b", [RM("192.0.2.10", [C], t=3.0)]) == [MacChange("b", "192.0.2.10", A, C, 3.0)]
    w.observe_conflicts("b", [RM("192.0.2.10", [A, B])])
    assert w.conflicts("b") == {"192.0.2.10": (A, B)}
    w.forget([])
    assert w.conflicts("b") == {}
