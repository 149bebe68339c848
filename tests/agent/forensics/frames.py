"""Crafted probe frames and records for the forensics tests."""
from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

MON_MAC = "02:00:00:00:00:01"
MON_IP = "192.0.2.1"
MON_IP6 = "2001:db8:1::1"


def arp_request(address: str) -> bytes:
    return bytes(Ether(src=MON_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=MON_MAC, psrc=MON_IP, pdst=address))


def arp_reply(address: str, mac: str) -> bytes:
    return bytes(Ether(src=mac, dst=MON_MAC) / ARP(op=2, hwsrc=mac, psrc=address, hwdst=MON_MAC, pdst=MON_IP))


def ns(address: str) -> bytes:
    # dst given: without it scapy solicits the address's MAC itself (1 s timeout, then broadcast, these bytes)
    return bytes(Ether(src=MON_MAC, dst="ff:ff:ff:ff:ff:ff") / IPv6(src=MON_IP6, dst=address) / ICMPv6ND_NS(tgt=address))


def na(address: str, mac: str) -> bytes:
    return bytes(Ether(src=mac, dst=MON_MAC) / IPv6(src=address, dst=MON_IP6)
                 / ICMPv6ND_NA(tgt=address, S=1) / ICMPv6NDOptDstLLAddr(lladdr=mac))


def echo_request(address: str, seq: int = 1) -> bytes:
    return bytes(IP(src=MON_IP, dst=address) / ICMP(type=8, id=7, seq=seq))


def echo_reply(address: str, seq: int = 1) -> bytes:
    return bytes(IP(src=address, dst=MON_IP) / ICMP(type=0, id=7, seq=seq))


def unreachable(address: str) -> bytes:
    return bytes(IP(src=MON_IP, dst=MON_IP) / ICMP(type=3, code=1) / IP(src=MON_IP, dst=address) / ICMP(type=8))


def echo6_request(address: str) -> bytes:
    return bytes(IPv6(src=MON_IP6, dst=address) / ICMPv6EchoRequest(id=7, seq=1))


def echo6_reply(address: str) -> bytes:
    return bytes(IPv6(src=address, dst=MON_IP6) / ICMPv6EchoReply(id=7, seq=1))


def tcp_syn(address: str, port: int) -> bytes:
    return bytes(IP(src=MON_IP, dst=address) / TCP(sport=40000, dport=port, flags="S"))


def tcp_rst(address: str, port: int) -> bytes:
    return bytes(IP(src=address, dst=MON_IP) / TCP(sport=port, dport=40000, flags="RA"))


def rec(t: float, direction: str, probe: str, address: str, frame: bytes, linktype: int | None = None):
    """A recorder record; link type 1 for Ethernet frames (ARP/NDP), 101 for raw IP."""
    if linktype is None:
        linktype = 1 if probe in ("arp", "ndp") else 101
    return (t, direction, probe, address, frame, linktype)


class Result:
    """A ProbeResult stand-in (the probes package's own dataclass has the same attributes)."""

    def __init__(self, target, probe, ok, error=None, mac=None, port=None, time_s=0.0, rtt_ms=None):
        self.target, self.probe, self.ok, self.error, self.mac = target, probe, ok, error, mac
        self.port, self.time_s, self.rtt_ms = port, time_s, rtt_ms
