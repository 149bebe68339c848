"""agent.forensics.render: captures decoded by their own link type (in a fresh process); the TCP line of summary.txt."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.utils import wrpcap

from agent.forensics import analyze
from agent.forensics.recorder import write_pcap
from agent.forensics.render import decode_pcap, render_text

A = "192.0.2.10"


def _decode_in_a_fresh_process(path) -> list:
    """decode_pcap as `evidence show` runs it: nothing of scapy's layers imported beforehand."""
    code = ("import json, sys; from agent.forensics.render import decode_pcap; "
            "print(json.dumps(decode_pcap(sys.argv[1], None, 10)))")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Using Raw" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


def test_the_recorders_ethernet_pcap_decodes_to_arp_and_icmp(tmp_path):
    arp = bytes(Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="192.0.2.1", pdst=A))
    icmp = bytes(IP(src="192.0.2.1", dst=A) / ICMP())
    path = tmp_path / "onset.pcap"
    write_pcap(str(path), [(100.0, "out", "arp", A, arp, 1), (100.5, "out", "icmp", A, icmp, 101)])
    name, lines = _decode_in_a_fresh_process(path)
    assert name == "Ethernet"
    assert lines == ["     +0.000s  Ether / ARP who has 192.0.2.10 says 192.0.2.1",
                     "     +0.500s  Ether / IP / ICMP 192.0.2.1 > 192.0.2.10 echo-request 0"]


@pytest.mark.parametrize("linktype, name", [pytest.param(101, "raw IP", id="raw-101"),
                                            pytest.param(228, "raw IPv4", id="ipv4-228")])
def test_a_raw_ip_pcap_decodes_as_ip_not_raw(tmp_path, linktype, name):
    path = tmp_path / "raw.pcap"
    pkts = [IP(src="192.0.2.1", dst=A) / TCP(dport=443, flags="S")]
    if linktype == 101:
        pkts.append(IPv6(src="2001:db8::1", dst="2001:db8::10") / ICMPv6EchoRequest())
    wrpcap(str(path), pkts, linktype=linktype)
    got_name, lines = _decode_in_a_fresh_process(path)
    assert got_name == name
    assert lines[0].endswith("IP / TCP 192.0.2.1:ftp_data > 192.0.2.10:https S")
    if linktype == 101:
        assert lines[1].endswith("IPv6 / ICMPv6 Echo Request (id: 0x0 seq: 0x0)"), lines
    assert not any(line.strip().endswith("Raw") for line in lines)


def test_an_unknown_link_type_is_named(tmp_path):
    path = tmp_path / "odd.pcap"
    wrpcap(str(path), [Ether() / IP()], linktype=147)
    with pytest.raises(ValueError, match="link type 147"):
        decode_pcap(str(path), None, 10)


def _summary(results, cycles=()) -> dict:
    a = analyze(list(cycles), results).to_dict()
    return {"box": "ctr1", "kind": "container", "start": "2026-11-27T23:15:00Z", "layer": "l4", "open": True,
            "collectors": {}, **a}


@pytest.mark.parametrize("error, seen", [
    pytest.param("timeout", "no SYN-ACK (timeout)", id="timeout"),
    pytest.param("refused", "RST (refused)", id="rst"),
])
def test_summary_names_what_the_tcp_probe_saw_when_the_capture_has_no_tcp(error, seen):
    # MACs given: an Ether() without dst has scapy ARP for it (getmacbyip, a 1 s timeout for each frame)
    box, agent = "02:00:00:00:00:10", "02:00:00:00:00:01"
    icmp_out = (1.0, "out", "icmp", A, bytes(Ether(src=agent, dst=box) / IP(src="192.0.2.1", dst=A) / ICMP()), 1)
    icmp_in = (1.001, "in", "icmp", A, bytes(Ether(src=box, dst=agent) / IP(src=A, dst="192.0.2.1") / ICMP(type=0)), 1)
    results = [{"target": A, "probe": "icmp", "ok": True},
               {"target": A, "probe": "tcp", "port": 8443, "ok": False, "error": error}]
    text = render_text(_summary(results, [[icmp_out, icmp_in]]))
    assert "TCP: not in the capture (the probe connects through the kernel); the TCP probe saw:" in text
    assert f"  - TCP {A} port 8443: {seen}" in text.split("TCP: not in the capture")[1]


def test_no_tcp_line_when_tcp_answered():
    results = [{"target": A, "probe": "tcp", "port": 8443, "ok": True}]
    assert "TCP: not in the capture" not in render_text(_summary(results))
