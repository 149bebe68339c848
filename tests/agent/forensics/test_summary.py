"""Capture analysis: crafted exchanges -> the findings an engineer would state."""
from __future__ import annotations

import pytest

from agent.forensics.summary import analyze
from probes.types import ProbeResult
from tests.agent.forensics import frames as F

A = "192.0.2.10"
A6 = "2001:db8:1::10"
MAC1 = "02:42:c0:00:02:0a"
MAC2 = "02:42:c0:00:02:99"


def R(probe, ok, error=None, mac=None, port=None, target=A):
    return ProbeResult(target, probe, port, ok, 1.0 if ok else None, error, mac, 0.0)


def arp_cycle(t, reply_mac=None, echo=True, echo_reply=True):
    c = [F.rec(t, "out", "arp", A, F.arp_request(A))]
    if reply_mac:
        c.append(F.rec(t + .001, "in", "arp", A, F.arp_reply(A, reply_mac)))
    if echo:
        c.append(F.rec(t + .002, "out", "icmp", A, F.echo_request(A)))
        if echo_reply:
            c.append(F.rec(t + .003, "in", "icmp", A, F.echo_reply(A)))
    return c


CASES = [
    pytest.param([arp_cycle(1, MAC1), arp_cycle(2, None, echo_reply=False), arp_cycle(3, None, echo_reply=False)],
                 [R("arp", False, "timeout"), R("icmp", False, "timeout"), R("tcp", False, "timeout", port=1093)],
                 {}, "arp_no_reply", "ARP 192.0.2.10: no ARP reply: requests left, nothing came back", id="l2"),
    pytest.param([arp_cycle(1, MAC1), arp_cycle(2, MAC1, echo_reply=False)],
                 [R("arp", True, mac=MAC1), R("icmp", False, "timeout")],
                 {}, "arp_ok_ping_dead", "ARP answered, ping dead: ICMP 192.0.2.10: echo requests left, no reply",
                 id="l3"),
    pytest.param([arp_cycle(1, MAC1), arp_cycle(2, MAC1)],
                 [R("arp", True, mac=MAC1), R("icmp", True), R("tcp", False, "timeout", port=1093)],
                 {}, "ping_ok_tcp_dead", "ping answered, TCP dead: TCP 192.0.2.10 port 1093: no SYN-ACK (timeout)",
                 id="l4-timeout"),
    pytest.param([arp_cycle(1, MAC1)],
                 [R("arp", True, mac=MAC1), R("icmp", True), R("tcp", False, "refused", port=1093)],
                 {}, "ping_ok_tcp_dead", "ping answered, TCP dead: TCP 192.0.2.10 port 1093: RST (refused)",
                 id="l4-refused"),
    pytest.param([arp_cycle(1, MAC1), arp_cycle(2, MAC2)],
                 [R("arp", True, mac=MAC2), R("icmp", True)],
                 {}, "mac_changed", f"ARP answered with a different MAC than before for {A} ({MAC1} -> {MAC2})",
                 id="mac-changed-in-capture"),
    pytest.param([arp_cycle(2, MAC2)], [R("arp", True, mac=MAC2), R("icmp", True)],
                 {A: MAC1}, "mac_changed", f"({MAC1} -> {MAC2})", id="mac-changed-vs-known"),
    pytest.param([], [R("arp", True, mac=MAC2), R("icmp", True)],
                 {A: MAC1}, "mac_changed", f"({MAC1} -> {MAC2})", id="mac-changed-results-only"),
    pytest.param([arp_cycle(1, MAC1) + [F.rec(1.5, "in", "arp", A, F.arp_reply(A, MAC2))]],
                 [R("arp", True, mac=MAC1), R("icmp", True)],
                 {}, "mac_conflict", f"{MAC1} and {MAC2} answered in one cycle", id="two-macs-one-cycle"),
    pytest.param([[F.rec(1, "out", "icmp", A, F.echo_request(A)), F.rec(1.1, "in", "icmp", A, F.unreachable(A))]],
                 [R("icmp", False, "unreachable")], {}, "icmp_unreachable", "destination unreachable",
                 id="icmp-unreachable"),
    pytest.param([[F.rec(1, "out", "ndp", A6, F.ns(A6)), F.rec(1, "out", "icmp6", A6, F.echo6_request(A6))]],
                 [R("ndp", False, "timeout", target=A6), R("icmp6", False, "timeout", target=A6)],
                 {}, "ndp_no_reply", "NDP 2001:db8:1::10: no NDP reply", id="ndp-silent"),
    pytest.param([[F.rec(1, "out", "ndp", A6, F.ns(A6)), F.rec(1, "in", "ndp", A6, F.na(A6, MAC2))]],
                 [R("ndp", True, mac=MAC2, target=A6)], {A6: MAC1}, "mac_changed",
                 f"NDP answered with a different MAC than before for {A6} ({MAC1} -> {MAC2})", id="ndp-mac-changed"),
    pytest.param([], [R("arp", False, "timeout"), R("icmp", False, "timeout")], {}, "arp_no_reply",
                 "ARP 192.0.2.10: no ARP reply (timeout)", id="no-capture-results-only"),
    pytest.param([arp_cycle(1, MAC1)], [R("arp", True, mac=MAC1), R("icmp", True)], {}, None,
                 "nothing abnormal", id="healthy"),
]


@pytest.mark.parametrize("cycles, results, known, first_code, headline_part", CASES)
def test_analysis_names_what_happened(cycles, results, known, first_code, headline_part):
    analysis = analyze(cycles, results, known)
    assert (analysis.codes()[0] if analysis.codes() else None) == first_code
    assert headline_part in analysis.headline


def test_silent_cycles_count_only_the_trailing_streak():
    cycles = [arp_cycle(1, None, echo=False), arp_cycle(2, MAC1, echo=False), arp_cycle(3, None, echo=False),
              arp_cycle(4, None, echo=False)]
    analysis = analyze(cycles, [])
    (ex,) = analysis.exchanges
    assert (ex.sent, ex.answered, ex.cycles, ex.silent_cycles) == (4, 1, 4, 2)
    assert "(2 requests, 2 cycles)" in analysis.findings[0].text


def test_a_reply_in_the_last_cycle_is_not_a_finding():
    analysis = analyze([arp_cycle(1, None, echo=False), arp_cycle(2, MAC1, echo=False)], [])
    assert analysis.findings == ()


def test_malformed_frames_do_not_stop_the_analysis():
    cycles = [[F.rec(1, "out", "arp", A, b"\x01"), F.rec(1, "in", "arp", A, b"\xff" * 5),
               F.rec(1, "in", "icmp", A, b"", 101)]]
    analysis = analyze(cycles, [R("arp", True, mac=MAC1)])
    assert analysis.exchanges[0].answered == 1


def test_to_dict_is_json_ready():
    import json

    analysis = analyze([arp_cycle(1, MAC1), arp_cycle(2, None, echo_reply=False)], [R("arp", False, "timeout")])
    data = json.loads(json.dumps(analysis.to_dict()))
    assert data["findings"][0]["code"] == "arp_no_reply"
    assert data["exchanges"][0]["macs"] == [MAC1]


def test_mac_that_flipped_back_is_a_change_to_the_current_one():
    analysis = analyze([arp_cycle(1, MAC1), arp_cycle(2, MAC2), arp_cycle(3, MAC1)], [])
    assert analysis.findings[0].text.endswith(f"({MAC2} -> {MAC1})")
