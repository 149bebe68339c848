"""Correlation tables: box freezes vs segment freezes, holds, closing, persistence."""
from __future__ import annotations

import pytest

from agent.core.correlation import CorrelationSettings, Correlator, Membership, memberships_from_config

# Segment "net1": a..f (6 boxes); "net2": x, y (2 boxes); "solo": s (1 box).
MEMBERS = {**{b: Membership("net1", "CERN") for b in "abcdef"},
           **{b: Membership("net2", "CERN") for b in "xy"}, "s": Membership("solo", "CERN")}
S = CorrelationSettings(min_boxes=3, min_share=0.5, window_s=60.0)

# Each step: ("start", box, t, layer) | ("end", box, t). Expected: list of (segment, open, boxes) emitted per step.
CASES = [
    pytest.param(S, [("start", "a", 0, "l2"), ("start", "b", 10, "l2")], [[], []], id="two-of-six-is-not-enough"),
    pytest.param(S, [("start", "a", 0, "l2"), ("start", "b", 10, "l2"), ("start", "c", 20, "l2")],
                 [[], [], [("net1", True, ("a", "b", "c"))]], id="min-boxes-within-window"),
    pytest.param(S, [("start", "a", 0, "l2"), ("start", "b", 10, "l2"), ("start", "c", 100, "l2")],
                 [[], [], []], id="outside-window"),
    pytest.param(S, [("start", "a", 0, "l2"), ("start", "b", 50, "l2"), ("start", "c", 100, "l2")],
                 [[], [], []], id="chain-longer-than-window-does-not-count"),
    pytest.param(S, [("start", "x", 0, "l2"), ("start", "y", 5, "l2")],
                 [[], [("net2", True, ("x", "y"))]], id="min-share-two-of-two"),
    pytest.param(S, [("start", "s", 0, "l2")], [[]], id="one-box-alone-is-a-box-freeze"),
    pytest.param(S, [("start", "a", 0, "l2"), ("start", "x", 1, "l2"), ("start", "b", 2, "l2")],
                 [[], [], []], id="segments-are-counted-apart"),
    pytest.param(S, [("start", "a", 0, "l2"), ("end", "a", 5), ("start", "b", 10, "l2"), ("start", "c", 20, "l2")],
                 [[], [], [], []], id="recovered-box-does-not-count"),
    pytest.param(S, [("start", "a", 0, "l2"), ("start", "b", 0, "l2"), ("start", "c", 0, "l2"),
                     ("start", "d", 300, "l3")],
                 [[], [], [("net1", True, ("a", "b", "c"))], [("net1", True, ("a", "b", "c", "d"))]],
                 id="later-freeze-joins-open-segment"),
    pytest.param(S, [("start", "a", 0, "l2"), ("start", "b", 0, "l2"), ("start", "c", 0, "l2"),
                     ("start", "d", 300, "l4")],
                 [[], [], [("net1", True, ("a", "b", "c"))], []],
                 id="an-l4-freeze-does-not-join-its-ping-answers"),
    pytest.param(S, [("start", "a", 0, "l4"), ("start", "b", 0, "l7"), ("start", "c", 0, "l4")],
                 [[], [], []], id="service-freezes-together-are-no-segment-freeze"),
    pytest.param(S, [("start", "a", 0, "l2"), ("start", "b", 0, "l2"), ("start", "c", 0, "l2"),
                     ("end", "a", 100), ("end", "b", 110), ("end", "c", 120)],
                 [[], [], [("net1", True, ("a", "b", "c"))], [("net1", False, ("a", "b", "c"))], [], []],
                 id="closes-when-the-rest-no-longer-fail-together"),
    pytest.param(S, [("start", "a", 0, "l2"), ("start", "b", 0, "l2"), ("start", "c", 0, "l2"), ("start", "d", 0, "l2"),
                     ("end", "a", 100), ("end", "b", 110), ("end", "c", 120), ("end", "d", 130)],
                 [[], [], [("net1", True, ("a", "b", "c"))], [("net1", True, ("a", "b", "c", "d"))],
                  [], [("net1", False, ("a", "b", "c", "d"))], [], []],
                 id="stays-open-while-three-still-down"),
    pytest.param(S, [("start", "x", 0, "l3"), ("start", "y", 0, "l2"), ("end", "y", 50), ("end", "x", 300)],
                 [[], [("net2", True, ("x", "y"))], [("net2", False, ("x", "y"))], []],
                 id="two-unrelated-faults-one-recovers-the-other-is-alone"),
    pytest.param(CorrelationSettings(enabled=False), [("start", "a", 0, "l2"), ("start", "b", 0, "l2"),
                                                      ("start", "c", 0, "l2")],
                 [[], [], []], id="disabled"),
]


@pytest.mark.parametrize("settings, steps, expected", CASES)
def test_correlation_table(settings, steps, expected):
    c = Correlator(settings, MEMBERS)
    for step, want in zip(steps, expected, strict=True):
        out = c.freeze_started(step[1], step[2], step[3]) if step[0] == "start" else c.freeze_ended(step[1], step[2])
        assert [(sf.segment, sf.open, sf.boxes) for sf in out] == want, step


def test_segment_freeze_fields_and_duration():
    c = Correlator(S, MEMBERS)
    c.freeze_started("b", 1010.0, "l3")
    c.freeze_started("a", 1000.0, "l3")
    (sf,) = c.freeze_started("c", 1020.0, "l2")
    assert (sf.segment, sf.site, sf.boxes, sf.layer, sf.start_s) == ("net1", "CERN", ("a", "b", "c"), "l2", 1000.0)
    c.freeze_started("d", 1030.0, "l2")
    for box, t in (("a", 1100.0), ("c", 1130.0)):
        assert c.freeze_ended(box, t) == [] or box == "c"
    assert c.open_freezes() == ()
    c = Correlator(S, MEMBERS)
    for box, t in (("a", 1000.0), ("b", 1010.0), ("c", 1020.0), ("d", 1030.0)):
        c.freeze_started(box, t, "l2")
    assert c.freeze_ended("a", 1100.0) == []          # b, c, d: still three down together
    (closed,) = c.freeze_ended("c", 1130.0)          # b, d: two of six, no longer a segment outage
    assert (closed.open, closed.end_s, closed.duration_s, closed.still_down) == (False, 1130.0, 130.0, ("b", "d"))
    assert c.open_freezes() == () and c.holds("b") is None and c.holds("d") is None


def test_holds_only_boxes_of_the_open_segment():
    c = Correlator(S, MEMBERS)
    for b in "abc":
        c.freeze_started(b, 0.0, "l2")
    c.freeze_started("x", 0.0, "l2")
    assert "segment freeze of net1 open since 1970-01-01T00:00:00Z (3 boxes" in c.holds("a")
    assert c.holds("x") is None and c.holds("d") is None and c.holds("unknown") is None
    for b in "abc":
        c.freeze_ended(b, 10.0)
    assert c.holds("a") is None


def test_no_hold_when_configured_off_but_segment_still_recorded():
    c = Correlator(CorrelationSettings(hold_remediation=False), MEMBERS)
    out = [c.freeze_started(b, 0.0, "l2") for b in "abc"]
    assert out[-1] and c.holds("a") is None


def test_state_survives_a_restart():
    c = Correlator(S, MEMBERS)
    for b in "abcd":
        c.freeze_started(b, 0.0, "l2")
    c.freeze_ended("a", 5.0)
    import json

    d = Correlator.from_json(json.loads(json.dumps(c.to_json())), S, MEMBERS)
    assert d.holds("b") is not None
    (closed,) = d.freeze_ended("c", 7.0)
    assert closed.duration_s == 7.0 and closed.still_down == ("b", "d")
    with pytest.raises(ValueError, match="correlation state"):
        Correlator.from_json({"open": [{"segment": "x"}]}, S, MEMBERS)


def test_memberships_from_config_use_segment_then_network_then_site():
    from agent.core.config import loads

    cfg = loads("""
[agent]
site = "CERN"
[[box]]
name = "c1"
kind = "container"
ipv4 = "192.0.2.10"
container = "c1"
network = "docknet"
[[box]]
name = "v1"
kind = "vm"
ipv4 = "192.0.2.20"
[[box]]
name = "v2"
kind = "vm"
ipv4 = "192.0.2.21"
segment = "rack7"
""")
    m = memberships_from_config(cfg)
    assert (m["c1"].segment, m["v1"].segment, m["v2"].segment) == ("docknet", "CERN", "rack7")
    assert CorrelationSettings.from_config(cfg.correlation).window_s == cfg.correlation.window_s


@pytest.mark.parametrize("suspect, enabled, hold, expected", [
    pytest.param([], True, True, None, id="nobody-else-failing"),
    pytest.param(["x"], True, True, None, id="suspect-in-another-segment"),
    pytest.param(["b1"], True, True, "waiting a cycle: 1 other box of segment s1 failing too (b1)", id="one-other"),
    pytest.param(["b0", "b1", "b2"], True, True,
                 "waiting a cycle: 2 other boxes of segment s1 failing too (b1, b2)", id="itself-not-counted"),
    pytest.param(["b1"], False, True, None, id="correlation-off"),
    pytest.param(["b1"], True, False, None, id="hold-off"),
])
def test_settling_waits_while_other_boxes_of_the_segment_are_failing(suspect, enabled, hold, expected):
    from agent.core.correlation import CorrelationSettings, Correlator, Membership

    members = {"b0": Membership("s1"), "b1": Membership("s1"), "b2": Membership("s1"), "x": Membership("s2")}
    c = Correlator(CorrelationSettings(enabled=enabled, hold_remediation=hold), members)
    assert c.settling("b0", suspect) == expected


def test_the_default_segment_is_the_l2_domain_the_host_reaches_the_box_through():
    """A macvlan container and a VM on the same wire and prefix share a segment; a routed box does not."""
    import ipaddress
    from types import SimpleNamespace as NS

    from agent.core.config import loads
    from agent.core.correlation import memberships_from_config

    cfg = loads("""
[agent]
state_dir = "/tmp/x"
site = "CERN"
[[box]]
name = "ctr"
kind = "container"
ipv4 = "192.0.2.10"
container = "c1"
network = "docknet"
[[box]]
name = "vm"
kind = "vm"
ipv4 = "192.0.2.20"
[[box]]
name = "far"
kind = "vm"
ipv4 = "198.51.100.7"
[[box]]
name = "named"
kind = "vm"
ipv4 = "192.0.2.30"
segment = "row-7"
""")
    routes = {"192.0.2.0/24": NS(interface="lab0", network=ipaddress.ip_network("192.0.2.0/24"), gateway=None),
              "198.51.100.0/24": NS(interface="eth9", network=ipaddress.ip_network("0.0.0.0/0"),
                                    gateway="203.0.113.1")}

    def route_of(address):
        return next((r for p, r in routes.items() if ipaddress.ip_address(address) in ipaddress.ip_network(p)), None)

    seg = {b: m.segment for b, m in memberships_from_config(cfg, route_of).items()}
    assert seg == {"ctr": "lab0 192.0.2.0/24", "vm": "lab0 192.0.2.0/24", "far": "eth9 via 203.0.113.1",
                   "named": "row-7"}
    # without a route: the Docker network, else the site (as before)
    assert {b: m.segment for b, m in memberships_from_config(cfg, lambda a: None).items()} == {
        "ctr": "docknet", "vm": "CERN", "far": "CERN", "named": "row-7"}


# Life (issue 26): ("seen", box, t, answered) | ("witness", t, answered) | ("start", box, t, layer) | ("end", box, t)
# | ("settle", t). Expected per step: (segment, open, boxes) emitted.
W = CorrelationSettings(min_boxes=3, min_share=0.5, window_s=60.0, witness="192.0.2.1")
LIFE_CASES = [
    pytest.param(S, [("seen", "d", 0, True), ("seen", "e", 0, True), ("start", "a", 0, "l2"),
                     ("start", "b", 0, "l3"), ("start", "c", 0, "l3"), ("settle", 0)],
                 [[], [], [], [], [], []], id="three-faults-while-two-boxes-answer-are-box-freezes"),
    pytest.param(S, [("seen", "d", 0, True), ("start", "a", 10, "l2"), ("start", "b", 10, "l2"),
                     ("start", "c", 10, "l2")],
                 [[], [], [], [("net1", True, ("a", "b", "c"))]], id="an-answer-before-the-first-failure-is-no-life"),
    pytest.param(S, [("seen", "d", 10, True), ("seen", "d", 20, False), ("start", "a", 10, "l2"),
                     ("start", "b", 10, "l2"), ("start", "c", 10, "l2")],
                 [[], [], [], [], [("net1", True, ("a", "b", "c"))]],
                 id="a-box-gone-silent-since-is-no-life-outage-began-mid-sweep"),
    pytest.param(S, [("seen", "x", 5, True), ("start", "a", 0, "l2"), ("start", "b", 0, "l2"),
                     ("start", "c", 0, "l2")],
                 [[], [], [], [("net1", True, ("a", "b", "c"))]], id="life-on-another-segment-does-not-count"),
    pytest.param(S, [("seen", "d", 5, True), ("start", "a", 0, "l4"), ("start", "b", 0, "l2"),
                     ("start", "c", 0, "l2")],
                 [[], [], [], []], id="an-answering-box-with-its-own-service-fault-is-life"),
    pytest.param(W, [("witness", 5, True), ("start", "a", 0, "l2"), ("start", "b", 0, "l2"),
                     ("start", "c", 0, "l2")],
                 [[], [], [], []], id="the-witness-answering-is-life"),
    pytest.param(W, [("witness", 5, False), ("start", "a", 0, "l2"), ("start", "b", 0, "l2"),
                     ("start", "c", 0, "l2")],
                 [[], [], [], [("net1", True, ("a", "b", "c"))]], id="a-silent-witness-is-no-life"),
    pytest.param(S, [("start", "a", 0, "l2"), ("start", "b", 0, "l2"), ("start", "c", 0, "l2"),
                     ("seen", "d", 30, True), ("start", "e", 30, "l2"), ("settle", 30)],
                 [[], [], [("net1", True, ("a", "b", "c"))], [], [], [("net1", False, ("a", "b", "c"))]],
                 id="no-join-while-the-segment-answers-and-the-hold-ends"),
    pytest.param(S, [("start", "a", 0, "l2"), ("start", "b", 0, "l2"), ("start", "c", 0, "l2"),
                     ("seen", "d", 30, False), ("start", "d", 30, "l2"), ("settle", 30)],
                 [[], [], [("net1", True, ("a", "b", "c"))], [], [("net1", True, ("a", "b", "c", "d"))], []],
                 id="joins-while-nothing-answers"),
    pytest.param(S, [("start", "a", 0, "l2"), ("start", "b", 0, "l2"), ("start", "c", 0, "l2"),
                     ("settle", 10), ("seen", "a", 40, True), ("settle", 40)],
                 [[], [], [("net1", True, ("a", "b", "c"))], [], [], [("net1", False, ("a", "b", "c"))]],
                 id="ends-when-a-held-box-answers-again"),
    pytest.param(W, [("start", "a", 0, "l2"), ("start", "b", 0, "l2"), ("start", "c", 0, "l2"),
                     ("witness", 40, True), ("settle", 40)],
                 [[], [], [("net1", True, ("a", "b", "c"))], [], [("net1", False, ("a", "b", "c"))]],
                 id="ends-when-the-witness-answers-again"),
]


@pytest.mark.parametrize("settings, steps, expected", LIFE_CASES)
def test_segment_freezes_rest_on_evidence(settings, steps, expected):
    c = Correlator(settings, MEMBERS)
    for step, want in zip(steps, expected, strict=True):
        kind = step[0]
        out = []
        if kind == "seen":
            c.observe(step[1], step[2], step[3])
        elif kind == "witness":
            c.observe_witness(step[1], step[2])
        elif kind == "start":
            out = c.freeze_started(step[1], step[2], step[3])
        elif kind == "end":
            out = c.freeze_ended(step[1], step[2])
        else:
            out = c.settle(step[1])
        assert [(sf.segment, sf.open, sf.boxes) for sf in out] == want, step


def test_reasons_name_the_evidence():
    c = Correlator(W, MEMBERS)
    for b in "abc":
        c.freeze_started(b, 0.0, "l2")
    (sf,) = c.open_freezes()
    assert sf.reason == ("3 of 6 boxes froze within 60 s and nothing of the segment answered ARP/NDP or ping "
                         "since 1970-01-01T00:00:00Z")
    assert "remediate --force" in c.holds("a")
    c.observe_witness(42.0, True)
    (closed,) = c.settle(43.0)
    assert closed.reason == "the segment answers again: witness 192.0.2.1 answered ARP/NDP or ping at 1970-01-01T00:00:42Z"
    assert (closed.end_s, closed.duration_s, closed.still_down) == (42.0, 42.0, ("a", "b", "c"))
    assert c.holds("a") is None


def test_no_settling_wait_while_the_segment_answers():
    c = Correlator(S, MEMBERS)
    c.observe("d", 10.0, True)
    assert c.settling("a", ["b"], since_s=10.0) is None
    assert c.settling("a", ["b"], since_s=11.0) is not None   # no answer since a's freeze began


@pytest.mark.parametrize("results, expected", [
    pytest.param([("arp", False), ("icmp", True), ("tcp", False)], True, id="ping-answers"),
    pytest.param([("arp", False), ("icmp", False), ("tcp", True)], False, id="only-tcp-is-no-life"),
    pytest.param([("ndp", True)], True, id="ndp-answers"),
    pytest.param([("tcp", True)], None, id="no-arp-nor-ping-sent"),
])
def test_answered(results, expected):
    from types import SimpleNamespace

    from agent.core.correlation import answered

    assert answered([SimpleNamespace(probe=p, ok=ok) for p, ok in results]) is expected


def test_life_survives_a_restart():
    import json

    c = Correlator(S, MEMBERS)
    for b in "abc":
        c.freeze_started(b, 0.0, "l2")
    c.observe("d", 5.0, False)
    d = Correlator.from_json(json.loads(json.dumps(c.to_json())), S, MEMBERS)
    assert d.settle(6.0) == [] and d.holds("a") is not None
    d.observe("d", 7.0, True)
    (closed,) = d.settle(7.0)
    assert closed.reason.startswith("the segment answers again: box d")
