"""Reply matching and request building on crafted (scapy-built) packets: replies, strays, errors."""
from __future__ import annotations

import socket

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from probes import matching
from probes.matching import (
    ECHO_PAYLOAD,
    ArpMatcher,
    EchoMatcher,
    Match,
    NdpMatcher,
    arp_request,
    echo_request,
    inet_checksum,
    ndp_solicit,
)

IDENT, TOKEN = 0x4242, b"tok12345"
OTHER_TOKEN = b"other!!!"
OWN4, OWN6 = "198.51.100.1", "2001:db8:1::1"
TARGETS4 = ["198.51.100.10", "198.51.100.11", "198.51.100.12"]
TARGETS6 = ["2001:db8:1::10", "2001:db8:1::11", "2001:db8:1::12"]
OWN_MAC, BOX_MAC = "02:00:00:00:00:01", "02:42:c6:33:64:0b"
PAD = b"\0" * 16


def p4(a: str) -> bytes:
    return socket.inet_aton(a)


def p6(a: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, a)


def echo4(src: str, index: int, ident: int = IDENT, token: bytes = TOKEN, seq: int | None = None,
          typ: int = 0) -> bytes:
    seq = index & 0xFFFF if seq is None else seq
    return bytes(IP(src=src, dst=OWN4) / ICMP(type=typ, id=ident, seq=seq) / Raw(ECHO_PAYLOAD.pack(token, index) + PAD))


def echo6(index: int, ident: int = IDENT, token: bytes = TOKEN, reply: bool = True) -> bytes:
    layer = ICMPv6EchoReply if reply else ICMPv6EchoRequest
    pkt = IPv6(src=TARGETS6[index], dst=OWN6) / layer(id=ident, seq=index, data=ECHO_PAYLOAD.pack(token, index) + PAD)
    return bytes(pkt)[40:]


@pytest.fixture
def m4() -> EchoMatcher:
    return EchoMatcher(IDENT, TOKEN, [p4(a) for a in TARGETS4])


@pytest.fixture
def m6() -> EchoMatcher:
    return EchoMatcher(IDENT, TOKEN, [p6(a) for a in TARGETS6])


def test_echo_request_equals_scapy_built_packet_with_valid_checksum():
    template = bytes(ICMP(type=8, id=IDENT, seq=0) / Raw(ECHO_PAYLOAD.pack(TOKEN, 0) + PAD))
    for index in (0, 1, 70000):
        got = echo_request(template, index)
        want = bytes(ICMP(type=8, id=IDENT, seq=index & 0xFFFF) / Raw(ECHO_PAYLOAD.pack(TOKEN, index) + PAD))
        assert got == want
        assert inet_checksum(got) == 0


@pytest.mark.parametrize("ident, token, pad", [
    pytest.param(IDENT, TOKEN, PAD, id="sweep"), pytest.param(1, OTHER_TOKEN, b"", id="no-padding"),
    pytest.param(0xFFFF, b"\xff" * 8, b"\x01" * 3, id="odd-padding")])
def test_echo_template_is_the_scapy_built_request(ident, token, pad):
    """The probes build their templates with struct (no scapy import at CLI start): same bytes as scapy's."""
    want4 = bytes(ICMP(type=8, id=ident, seq=0) / Raw(ECHO_PAYLOAD.pack(token, 0) + pad))
    got4 = matching.echo_template(matching.ICMP_ECHO, ident, token, pad)
    for index in (0, 5, 70000):
        assert echo_request(got4, index) == echo_request(want4, index)
    want6 = bytes(IPv6(src="::", dst="::") / ICMPv6EchoRequest(id=ident, seq=0, data=ECHO_PAYLOAD.pack(token, 0) + pad))
    want6 = want6[40:42] + b"\0\0" + want6[44:]
    assert matching.echo_template(matching.ICMP6_ECHO, ident, token, pad) == want6


def test_icmpv6_request_leaves_checksum_to_the_kernel():
    template = echo6(0, reply=False)
    template = template[:2] + b"\0\0" + template[4:]
    got = echo_request(template, 2)
    assert got[0] == 128 and got[2:4] == b"\0\0" and ECHO_PAYLOAD.unpack_from(got, 8) == (TOKEN, 2)


@pytest.mark.parametrize("packet, expected", [
    pytest.param(echo4(TARGETS4[1], 1), Match(1), id="reply"),
    pytest.param(echo4(TARGETS4[1], 1, ident=IDENT + 1), None, id="other-identifier"),
    pytest.param(echo4(TARGETS4[1], 1, token=OTHER_TOKEN), None, id="other-token-same-identifier"),
    pytest.param(echo4(TARGETS4[2], 1), None, id="other-source"),
    pytest.param(echo4(TARGETS4[1], 1, seq=7), None, id="sequence-disagrees-with-index"),
    pytest.param(echo4(TARGETS4[1], 9, seq=9), None, id="index-beyond-sweep"),
    pytest.param(echo4(TARGETS4[1], 1, typ=8), None, id="echo-request-not-reply"),
    pytest.param(echo4(TARGETS4[1], 1)[:30], None, id="truncated"),
    pytest.param(bytes(IP(src=TARGETS4[1], dst=OWN4) / UDP(sport=7, dport=7) / Raw(b"x" * 30)), None, id="udp"),
    pytest.param(b"", None, id="empty"),
])
def test_icmp4_matching(m4, packet, expected):
    assert m4.match4(packet) == expected


def quoted_request(index: int, dst: str, ident: int = IDENT, cut: int | None = None) -> bytes:
    original = bytes(IP(src=OWN4, dst=dst) / ICMP(type=8, id=ident, seq=index)
                     / Raw(ECHO_PAYLOAD.pack(TOKEN, index) + PAD))
    return original if cut is None else original[:cut]


@pytest.mark.parametrize("packet, expected", [
    pytest.param(bytes(IP(src="198.51.100.254", dst=OWN4) / ICMP(type=3, code=1) / Raw(quoted_request(2, TARGETS4[2]))),
                 Match(2, "unreachable"), id="host-unreachable-from-router"),
    pytest.param(bytes(IP(src="198.51.100.254", dst=OWN4) / ICMP(type=11, code=0)
                       / Raw(quoted_request(0, TARGETS4[0]))), Match(0, "ttl exceeded"), id="time-exceeded"),
    pytest.param(bytes(IP(src="198.51.100.254", dst=OWN4) / ICMP(type=3, code=1)
                       / Raw(quoted_request(1, TARGETS4[1], cut=28))), Match(1, "unreachable"),
                 id="rfc792-quote-8-bytes-identifier-and-sequence"),
    pytest.param(bytes(IP(src="198.51.100.254", dst=OWN4) / ICMP(type=3, code=1)
                       / Raw(quoted_request(1, TARGETS4[2]))), None, id="quoted-destination-is-not-that-target"),
    pytest.param(bytes(IP(src="198.51.100.254", dst=OWN4) / ICMP(type=3, code=1)
                       / Raw(quoted_request(1, TARGETS4[1], ident=9))), None, id="quoted-other-identifier"),
])
def test_icmp4_errors_are_matched_to_the_quoted_request(m4, packet, expected):
    assert m4.match4(packet) == expected


@pytest.mark.parametrize("message, source, expected", [
    pytest.param(echo6(1), TARGETS6[1], Match(1), id="reply"),
    pytest.param(echo6(1, ident=IDENT + 1), TARGETS6[1], None, id="other-identifier"),
    pytest.param(echo6(1, token=OTHER_TOKEN), TARGETS6[1], None, id="other-token"),
    pytest.param(echo6(1), TARGETS6[0], None, id="other-source"),
    pytest.param(echo6(1, reply=False), TARGETS6[1], None, id="request-not-reply"),
    pytest.param(bytes(IPv6(src="2001:db8:1::fe", dst=OWN6) / ICMPv6DestUnreach(code=3)
                       / IPv6(src=OWN6, dst=TARGETS6[2]) / ICMPv6EchoRequest(
                           id=IDENT, seq=2, data=ECHO_PAYLOAD.pack(TOKEN, 2) + PAD))[40:],
                 "2001:db8:1::fe", Match(2, "unreachable"), id="address-unreachable-from-router"),
])
def test_icmp6_matching(m6, message, source, expected):
    assert m6.match6(message, p6(source)) == expected


def test_two_overlapping_sweeps_never_take_each_others_replies():
    """Same targets, same identifier by bad luck: the token still tells the sweeps apart."""
    a = EchoMatcher(IDENT, TOKEN, [p4(t) for t in TARGETS4])
    b = EchoMatcher(IDENT, OTHER_TOKEN, [p4(t) for t in TARGETS4])
    for_a, for_b = echo4(TARGETS4[0], 0), echo4(TARGETS4[0], 0, token=OTHER_TOKEN)
    assert (a.match4(for_a), a.match4(for_b)) == (Match(0), None)
    assert (b.match4(for_a), b.match4(for_b)) == (None, Match(0))


# ----- ARP -----------------------------------------------------------------------------------------
def arp_template() -> bytes:
    return bytes(Ether(src=OWN_MAC, dst="ff:ff:ff:ff:ff:ff")
                 / ARP(op=1, hwsrc=OWN_MAC, psrc=OWN4, hwdst="00:00:00:00:00:00", pdst="0.0.0.0"))


def arp_reply(spa: str, tpa: str = OWN4, tha: str = OWN_MAC, op: int = 2, sha: str = BOX_MAC) -> bytes:
    return bytes(Ether(src=sha, dst=tha) / ARP(op=op, hwsrc=sha, psrc=spa, hwdst=tha, pdst=tpa))


def test_arp_request_equals_scapy_built_who_has():
    want = bytes(Ether(src=OWN_MAC, dst="ff:ff:ff:ff:ff:ff")
                 / ARP(op=1, hwsrc=OWN_MAC, psrc=OWN4, hwdst="00:00:00:00:00:00", pdst=TARGETS4[2]))
    assert arp_request(arp_template(), p4(TARGETS4[2])) == want


@pytest.mark.parametrize("frame, expected", [
    pytest.param(arp_reply(TARGETS4[1]), Match(1, None, BOX_MAC), id="is-at"),
    pytest.param(arp_reply(TARGETS4[1], op=1), None, id="who-has-not-is-at"),
    pytest.param(arp_reply(TARGETS4[1], tpa="198.51.100.2"), None, id="reply-to-another-address"),
    pytest.param(arp_reply(TARGETS4[1], tha="02:00:00:00:00:99"), None, id="reply-to-another-mac"),
    pytest.param(arp_reply("198.51.100.99"), None, id="not-a-target"),
    pytest.param(arp_reply(TARGETS4[1], tpa=TARGETS4[1], tha="ff:ff:ff:ff:ff:ff"), None, id="gratuitous"),
    pytest.param(arp_reply(TARGETS4[1])[:40], None, id="truncated"),
])
def test_arp_matching(frame, expected):
    matcher = ArpMatcher({p4(a): i for i, a in enumerate(TARGETS4)}, p4(OWN4), bytes.fromhex(OWN_MAC.replace(":", "")))
    assert matcher.match(frame) == expected


@pytest.mark.parametrize("mac, own", [("02:00:00:00:00:01", "198.51.100.1"), ("ff:fe:fd:fc:fb:fa", "203.0.113.254")])
def test_arp_template_is_the_scapy_built_who_has(mac, own):
    want = bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
                 / ARP(op=1, hwsrc=mac, psrc=own, hwdst="00:00:00:00:00:00", pdst="0.0.0.0"))
    assert matching.arp_template(bytes.fromhex(mac.replace(":", "")), p4(own)) == want


# ----- NDP -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mac, own, target", [("02:00:00:00:00:01", OWN6, TARGETS6[2]),
                                              ("ff:fe:fd:fc:fb:fa", "2001:db8:ffff::abcd:ef01", "2001:db8:2::1:2:3")])
def test_ndp_template_is_the_scapy_built_solicitation(mac, own, target):
    template = bytes(Ether(src=mac, dst="33:33:ff:00:00:00") / IPv6(src=own, dst="ff02::1:ff00:0", hlim=255)
                     / ICMPv6ND_NS(tgt="::") / ICMPv6NDOptSrcLLAddr(lladdr=mac))
    ours = matching.ndp_template(bytes.fromhex(mac.replace(":", "")), p6(own))
    assert ours[:54] + ours[58:] == template[:54] + template[58:]  # the template's checksum is never sent
    assert ndp_solicit(ours, p6(target)) == ndp_solicit(template, p6(target))


def test_ndp_solicit_equals_scapy_built_ns_to_the_solicited_node_group():
    template = bytes(Ether(src=OWN_MAC, dst="33:33:ff:00:00:00") / IPv6(src=OWN6, dst="ff02::1:ff00:0", hlim=255)
                     / ICMPv6ND_NS(tgt="::") / ICMPv6NDOptSrcLLAddr(lladdr=OWN_MAC))
    want = bytes(Ether(src=OWN_MAC, dst="33:33:ff:00:00:12") / IPv6(src=OWN6, dst="ff02::1:ff00:12", hlim=255)
                 / ICMPv6ND_NS(tgt=TARGETS6[2]) / ICMPv6NDOptSrcLLAddr(lladdr=OWN_MAC))
    assert ndp_solicit(template, p6(TARGETS6[2])) == want  # checksum included, as scapy computes it


def na(tgt: str, dst: str = OWN6, solicited: int = 1, hlim: int = 255, option: str | None = BOX_MAC,
       src_mac: str = "02:42:00:00:00:ee") -> bytes:
    pkt = (Ether(src=src_mac, dst=OWN_MAC) / IPv6(src=tgt, dst=dst, hlim=hlim)
           / ICMPv6ND_NA(tgt=tgt, S=solicited, O=1, R=0))
    if option:
        pkt = pkt / ICMPv6NDOptDstLLAddr(lladdr=option)
    return bytes(pkt)


@pytest.mark.parametrize("frame, expected", [
    pytest.param(na(TARGETS6[0]), Match(0, None, BOX_MAC), id="solicited-na-with-target-lladdr"),
    pytest.param(na(TARGETS6[0], option=None), Match(0, None, "02:42:00:00:00:ee"), id="no-option-use-frame-source"),
    pytest.param(na(TARGETS6[0], solicited=0), None, id="unsolicited"),
    pytest.param(na(TARGETS6[0], dst="ff02::1"), None, id="to-all-nodes-not-us"),
    pytest.param(na(TARGETS6[0], hlim=64), None, id="hop-limit-not-255"),
    pytest.param(na("2001:db8:1::99"), None, id="not-a-target"),
    pytest.param(bytes(Ether(src=BOX_MAC, dst=OWN_MAC) / IPv6(src=TARGETS6[0], dst=OWN6, hlim=255)
                       / ICMPv6ND_NS(tgt=OWN6)), None, id="solicitation-not-advert"),
])
def test_ndp_matching(frame, expected):
    matcher = NdpMatcher({p6(a): i for i, a in enumerate(TARGETS6)}, p6(OWN6))
    assert matcher.match(frame) == expected
