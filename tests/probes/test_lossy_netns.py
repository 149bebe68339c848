"""A lossy link: the target drops the first copy of every request (nft numgen inc); each probe still succeeds
within one timeout, because an unanswered request is sent once more at half the timeout (ICMP, ARP, NDP) and a
pending connect gets a second attempt (TCP)."""
from __future__ import annotations

import ipaddress
import json

import pytest

import probes
from agent import netns
from probes import Target
from tests.probes.conftest import make_segment, remove_segment, run, segment_unavailable_reason

pytestmark = pytest.mark.lab   # network namespaces, nftables, raw sockets: root

TIMEOUT_S = 1.0


def _rules(seg, v4: str, v6: str) -> str:
    # every other request (the first, third...) to v4/v6 is lost on arrival at the target, counted
    drop = "numgen inc mod 2 0 counter drop"
    tail = ipaddress.IPv6Address(v6).packed[13:]
    solicited = ipaddress.IPv6Address(bytes.fromhex("ff0200000000000000000001ff") + tail)   # RFC 4291 2.7.1
    return (f"table netdev lossy {{\n  chain ingress {{\n"
            f"    type filter hook ingress device \"{seg.target_link}\" priority -500; policy accept;\n"
            f"    arp operation request arp daddr ip {v4} {drop}\n"
            f"    ip daddr {v4} icmp type echo-request {drop}\n"
            f"    ip daddr {v4} tcp dport {seg.port} tcp flags & (syn | ack) == syn {drop}\n"
            f"    ip6 daddr {v6} icmpv6 type echo-request {drop}\n"
            f"    ip6 daddr {{ {v6}, {solicited} }} icmpv6 type nd-neighbor-solicit {drop}\n"
            f"    ip6 daddr {v6} tcp dport {seg.port} tcp flags & (syn | ack) == syn {drop}\n"
            f"  }}\n}}\n")


def _dropped(seg) -> list[int]:
    out = json.loads(run("ip", "netns", "exec", seg.target, "nft", "-j", "list", "table", "netdev", "lossy").stdout)
    drops = []
    for item in out["nftables"]:
        for expr in (item.get("rule") or {}).get("expr", []):
            if "counter" in expr:
                drops.append(expr["counter"]["packets"])
    return drops


@pytest.fixture(scope="module")
def lossy():
    reason = segment_unavailable_reason()
    if reason:
        pytest.skip(reason)
    seg = make_segment(2)
    try:
        yield seg
    finally:
        remove_segment(seg)


def test_every_kind_survives_losing_the_first_request(lossy):
    seg = lossy
    v4, v6 = seg.ipv4[1], seg.ipv6[1]
    with netns.entered(seg.monitor):
        warm = probes.sweep([Target(v4, "icmp"), Target(v6, "icmp6")], TIMEOUT_S)   # the kernel's neighbours
    assert [r.ok for r in warm] == [True, True]
    run("ip", "netns", "exec", seg.target, "nft", "-f", "-", input=_rules(seg, v4, v6))
    targets = [Target(v4, "arp"), Target(v4, "icmp"), Target(v4, "tcp", seg.port),
               Target(v6, "ndp"), Target(v6, "icmp6"), Target(v6, "tcp", seg.port)]
    with netns.entered(seg.monitor):
        results = probes.sweep(targets, TIMEOUT_S)
    assert [(r.probe, r.ok, r.error) for r in results] == [(t.probe, True, None) for t in targets]
    for r in results:   # answered after the resend, which left at half the timeout
        assert 0 <= r.rtt_ms < TIMEOUT_S * 1000 / 2, r
    assert all(n >= 1 for n in _dropped(seg)), _dropped(seg)   # each kind really lost its first request
