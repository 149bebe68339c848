"""Pure request building and reply matching on bytes: ICMP/ICMPv6 echo, ARP, NDP. No sockets here.

A matcher is built once per sweep and answers "which of my requests does this
packet answer, and how?" with a Match, or None for anything else (strays: other
identifier, other token, other source, other protocol, garbage). Duplicates and
late replies are the exchange loop's business: it keeps the first in-time answer.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

# Echo payload after the 8-byte ICMP header: a per-sweep random token and the
# request's index in the sweep (the 16-bit sequence number wraps, the index does not).
ECHO_PAYLOAD = struct.Struct("!8sI4x")
ECHO_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
ECHO_LEN = ECHO_HEADER.size + ECHO_PAYLOAD.size

ICMP_ECHO_REPLY, ICMP_UNREACH, ICMP_ECHO, ICMP_TIME_EXCEEDED = 0, 3, 8, 11
ICMP6_UNREACH, ICMP6_TIME_EXCEEDED, ICMP6_ECHO, ICMP6_ECHO_REPLY = 1, 3, 128, 129
ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT = 135, 136
ND_OPT_SOURCE_LL, ND_OPT_TARGET_LL = 1, 2
NA_FLAG_SOLICITED = 0x40

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
_ETH_ARP = b"\x08\x06"
_ETH_IPV6 = b"\x86\xdd"


@dataclass(frozen=True, slots=True)
class Match:
    """A packet answers request INDEX: error None means success; mac is the answering MAC (ARP/NDP)."""

    index: int
    error: str | None = None
    mac: str | None = None


def format_mac(raw: bytes) -> str:
    """Six bytes as lower-case aa:bb:cc:dd:ee:ff."""
    return raw.hex(":")


def inet_checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum of DATA."""
    if len(data) % 2:
        data += b"\0"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_template(typ: int, ident: int, token: bytes, padding: bytes) -> bytes:
    """The echo request every request of a sweep is patched from: TYP (ICMP_ECHO or ICMP6_ECHO), IDENT, TOKEN.

    Layout (RFC 792, RFC 4443 4.1): type, code 0, checksum 0 (echo_request fills it in
    for ICMP; the kernel for ICMPv6), identifier, sequence 0, then ECHO_PAYLOAD
    (token, index 0) and PADDING.
    """
    return ECHO_HEADER.pack(typ, 0, 0, ident, 0) + ECHO_PAYLOAD.pack(token, 0) + padding


def echo_request(template: bytes, index: int) -> bytes:
    """An echo request for request INDEX from TEMPLATE (ICMP or ICMPv6 header + payload, see echo_template).

    Only the sequence, the index and the checksum change per request, so they are
    patched with struct instead of building each packet. ICMPv6
    checksums are filled in by the kernel (they cover the IPv6 pseudo-header),
    the ICMP (IPv4) one is computed here.
    """
    typ, code, _csum, ident, _seq = ECHO_HEADER.unpack_from(template)
    token = template[8:16]
    body = ECHO_PAYLOAD.pack(token, index) + template[ECHO_LEN:]
    packet = ECHO_HEADER.pack(typ, code, 0, ident, index & 0xFFFF) + body
    if typ == ICMP_ECHO:
        packet = packet[:2] + struct.pack("!H", inet_checksum(packet)) + packet[4:]
    return packet


class EchoMatcher:
    """Matches ICMP (IPv4, whole packets from a raw socket) or ICMPv6 (messages + source) replies of one sweep."""

    __slots__ = ("ident", "token", "addresses", "count")

    def __init__(self, ident: int, token: bytes, addresses: Sequence[bytes]):
        self.ident = ident
        self.token = token
        self.addresses = addresses  # packed target address per request index
        self.count = len(addresses)

    def _echo_index(self, icmp: bytes | memoryview, offset: int, quoted: bool = False) -> int | None:
        """Index of our echo starting at OFFSET, or None if it is not ours.

        Replies must carry the token; a request QUOTED in an ICMP error may be cut
        after identifier and sequence (RFC 792), which then have to do.
        """
        if len(icmp) < offset + 8:
            return None
        ident: int
        seq: int
        index: int
        _typ, _code, _csum, ident, seq = ECHO_HEADER.unpack_from(icmp, offset)
        if ident != self.ident:
            return None
        if len(icmp) >= offset + ECHO_LEN:
            token, index = ECHO_PAYLOAD.unpack_from(icmp, offset + 8)
            if token != self.token:
                return None
        elif quoted and self.count <= 0x10000:
            index = seq  # quoted request cut short (RFC 792 routers quote 8 bytes): identifier + sequence only
        else:
            return None
        if index >= self.count or (index & 0xFFFF) != seq:
            return None
        return index

    def match4(self, packet: bytes) -> Match | None:
        """Match an IPv4 packet (header included, as a raw ICMP socket delivers it)."""
        if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 1:
            return None
        ihl = (packet[0] & 0x0F) * 4
        typ = packet[ihl]
        if typ == ICMP_ECHO_REPLY:
            if packet[ihl + 1] != 0:
                return None
            index = self._echo_index(packet, ihl)
            if index is None or packet[12:16] != self.addresses[index]:
                return None
            return Match(index)
        if typ in (ICMP_UNREACH, ICMP_TIME_EXCEEDED):
            inner = ihl + 8  # the quoted original datagram
            if len(packet) < inner + 20 or packet[inner] >> 4 != 4 or packet[inner + 9] != 1:
                return None
            inner_icmp = inner + (packet[inner] & 0x0F) * 4
            if len(packet) < inner_icmp + 8 or packet[inner_icmp] != ICMP_ECHO:
                return None
            index = self._echo_index(packet, inner_icmp, quoted=True)
            if index is None or packet[inner + 16:inner + 20] != self.addresses[index]:
                return None
            return Match(index, "unreachable" if typ == ICMP_UNREACH else "ttl exceeded")
        return None

    def match6(self, message: bytes, source: bytes) -> Match | None:
        """Match an ICMPv6 message (a raw ICMPv6 socket strips the IPv6 header) from packed SOURCE."""
        if len(message) < 8:
            return None
        typ = message[0]
        if typ == ICMP6_ECHO_REPLY:
            if message[1] != 0:
                return None
            index = self._echo_index(message, 0)
            if index is None or source != self.addresses[index]:
                return None
            return Match(index)
        if typ in (ICMP6_UNREACH, ICMP6_TIME_EXCEEDED):
            inner = 8  # quoted IPv6 header, then (no extension headers from us) our echo request
            if len(message) < inner + 48 or message[inner] >> 4 != 6 or message[inner + 6] != 58:
                return None
            if message[inner + 40] != ICMP6_ECHO:
                return None
            index = self._echo_index(message, inner + 40, quoted=True)
            if index is None or message[inner + 24:inner + 40] != self.addresses[index]:
                return None
            return Match(index, "unreachable" if typ == ICMP6_UNREACH else "ttl exceeded")
        return None


def arp_template(own_mac: bytes, own_address: bytes) -> bytes:
    """A broadcast ARP who-has from OWN_MAC and packed IPv4 OWN_ADDRESS, target 0.0.0.0 (42 bytes, unpadded).

    Ethernet II (broadcast, EtherType 0x0806), then RFC 826: hardware type 1, protocol
    0x0800, lengths 6 and 4, op 1 (request), sender MAC and address, target MAC zero.
    """
    return (b"\xff" * 6 + own_mac + _ETH_ARP + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
            + own_mac + own_address + b"\0" * 6 + b"\0" * 4)


def arp_request(template: bytes, target: bytes) -> bytes:
    """An ARP who-has for packed IPv4 TARGET from a broadcast TEMPLATE (arp_template; target at bytes 38-42)."""
    return template[:38] + target + template[42:]


class ArpMatcher:
    """Matches ARP replies to our who-has requests: is-at, sent to our address and MAC, from a target."""

    __slots__ = ("index_by_address", "own_address", "own_mac")

    def __init__(self, index_by_address: dict[bytes, int], own_address: bytes, own_mac: bytes):
        self.index_by_address = index_by_address
        self.own_address = own_address
        self.own_mac = own_mac

    def match(self, frame: bytes) -> Match | None:
        """Match one Ethernet frame."""
        if len(frame) < 42 or frame[12:14] != _ETH_ARP or frame[20:22] != b"\x00\x02":
            return None
        if frame[18] != 6 or frame[19] != 4 or frame[38:42] != self.own_address or frame[32:38] != self.own_mac:
            return None
        index = self.index_by_address.get(frame[28:32])
        if index is None:
            return None
        return Match(index, None, format_mac(frame[22:28]))


def solicited_node(target: bytes) -> tuple[bytes, bytes]:
    """Solicited-node multicast address and its Ethernet MAC for packed IPv6 TARGET."""
    tail = target[13:16]
    return b"\xff\x02" + b"\0" * 9 + b"\x01\xff" + tail, b"\x33\x33\xff" + tail


def ndp_template(own_mac: bytes, own_address: bytes) -> bytes:
    """A neighbour solicitation from OWN_MAC and packed IPv6 OWN_ADDRESS for target ::, with a source link-layer option.

    Ethernet II (to 33:33:ff:00:00:00, EtherType 0x86DD), IPv6 (hop limit 255, to
    ff02::1:ff00:0, RFC 4861 7.1.1), NS (type 135, code 0, checksum 0: ndp_solicit fills
    in the target, the group and the checksum), option 1 of 8 bytes carrying OWN_MAC.
    """
    group, group_mac = solicited_node(bytes(16))
    message = struct.pack("!BBHI", ND_NEIGHBOR_SOLICIT, 0, 0, 0) + bytes(16) + bytes((ND_OPT_SOURCE_LL, 1)) + own_mac
    return (group_mac + own_mac + _ETH_IPV6 + struct.pack("!IHBB", 0x60000000, len(message), 58, 255)
            + own_address + group + message)


def ndp_solicit(template: bytes, target: bytes) -> bytes:
    """A neighbour solicitation for packed IPv6 TARGET from TEMPLATE (ndp_template).

    Layout: Ethernet(14) IPv6(40) NS(24: type, code, checksum, reserved, target) + options.
    The Ethernet and IPv6 destinations become TARGET's solicited-node group; the
    checksum is recomputed over the IPv6 pseudo-header.
    """
    group, group_mac = solicited_node(target)
    source = template[22:38]
    icmp = bytearray(template[54:])
    icmp[2:4] = b"\0\0"
    icmp[8:24] = target
    pseudo = source + group + struct.pack("!I3xB", len(icmp), 58)
    icmp[2:4] = struct.pack("!H", inet_checksum(pseudo + bytes(icmp)))
    return group_mac + template[6:38] + group + bytes(icmp)


class NdpMatcher:
    """Matches solicited neighbour advertisements for our targets, sent to our address."""

    __slots__ = ("index_by_address", "own_address")

    def __init__(self, index_by_address: dict[bytes, int], own_address: bytes):
        self.index_by_address = index_by_address
        self.own_address = own_address

    def match(self, frame: bytes) -> Match | None:
        """Match one Ethernet frame; the MAC is the target link-layer option, else the frame's source."""
        if len(frame) < 78 or frame[12:14] != _ETH_IPV6 or frame[20] != 58 or frame[21] != 255:
            return None
        if frame[54] != ND_NEIGHBOR_ADVERT or frame[55] != 0 or not frame[58] & NA_FLAG_SOLICITED:
            return None
        if frame[38:54] != self.own_address:
            return None
        index = self.index_by_address.get(frame[62:78])
        if index is None:
            return None
        mac = frame[6:12]
        offset = 78
        while offset + 8 <= len(frame):
            opt_type, opt_len = frame[offset], frame[offset + 1] * 8
            if opt_len == 0:
                break
            if opt_type == ND_OPT_TARGET_LL and opt_len >= 8:
                mac = frame[offset + 2:offset + 8]
                break
            offset += opt_len
        return Match(index, None, format_mac(mac))
