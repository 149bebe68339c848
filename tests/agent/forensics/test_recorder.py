"""Flight recorder: ring bounds, per-box selection, pcap files that scapy and tcpdump read."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether
from scapy.utils import rdpcap

from agent.forensics.recorder import FlightRecorder, as_ethernet, write_pcap
from tests.agent.forensics import frames as F

BOX_A = "192.0.2.10"
BOX_B = "192.0.2.11"


def _cycle(rec: FlightRecorder, t: float, address: str = BOX_A, reply: bool = True) -> None:
    rec.record(t, "out", "arp", address, F.arp_request(address), 1)
    if reply:
        rec.record(t + 0.001, "in", "arp", address, F.arp_reply(address, "02:42:c0:00:02:0a"), 1)
    rec.record(t + 0.002, "out", "icmp", address, F.echo_request(address), 101)
    rec.end_cycle()


def test_ring_keeps_last_k_cycles():
    rec = FlightRecorder({"a": [BOX_A]}, cycles=3)
    for i in range(10):
        _cycle(rec, 1000.0 + i)
    times = sorted({int(r[0]) for r in rec.records("a")})
    assert times == [1007, 1008, 1009]


def test_ring_bounded_in_bytes_drops_oldest_cycles():
    rec = FlightRecorder({"a": [BOX_A]}, cycles=100, max_bytes=400)
    for i in range(10):
        _cycle(rec, 1000.0 + i)
    assert rec.held_bytes <= 400
    times = sorted({int(r[0]) for r in rec.records("a")})
    assert times[-1] == 1009 and times[0] > 1000


def test_per_box_byte_bound_keeps_newest():
    rec = FlightRecorder({"a": [BOX_A]}, cycles=10, max_bytes_per_box=150)
    for i in range(5):
        _cycle(rec, 1000.0 + i)
    records = rec.records("a")
    assert sum(len(r[4]) for r in records) <= 150
    assert records[-1][0] == pytest.approx(1004.002)


def test_records_are_picked_per_box_and_ipv6_spelling_does_not_matter():
    rec = FlightRecorder({"a": [BOX_A], "b": [BOX_B, "2001:db8:1::b"]})
    _cycle(rec, 1.0, BOX_A)
    _cycle(rec, 2.0, BOX_B)
    rec.record(3.0, "out", "ndp", "2001:0db8:0001:0000:0000:0000:0000:000b", F.ns("2001:db8:1::b"), 1)
    assert {r[3] for r in rec.records("a")} == {BOX_A}
    assert len(rec.records("b")) == 4  # 3 of its cycle + the unsealed NDP record
    with pytest.raises(KeyError, match="unknown box 'zz'.*known: a, b"):
        rec.records("zz")


def test_missing_end_cycle_cannot_grow_memory():
    rec = FlightRecorder({"a": [BOX_A]}, max_records_per_cycle=50)
    for i in range(1000):
        rec.record(float(i), "out", "icmp", BOX_A, b"x", 101)
    assert len(rec.records("a")) == 50


def test_raw_ip_gets_fake_ethernet_header_and_unknown_linktype_is_skipped():
    ip = F.echo_request(BOX_A)
    eth = as_ethernet(ip, 101)
    assert eth[:12] == bytes(12) and eth[12:14] == b"\x08\x00" and eth[14:] == ip
    assert as_ethernet(F.echo6_request("2001:db8::1"), 101)[12:14] == b"\x86\xdd"
    assert as_ethernet(b"junk", 147) is None


def test_dump_writes_a_pcap_scapy_reads(tmp_path):
    rec = FlightRecorder({"a": [BOX_A]})
    _cycle(rec, 1764284100.25)
    rec.record(1764284101.0, "in", "x", BOX_A, b"whatever", 147)
    result = rec.dump("a", str(tmp_path / "onset.pcap"))
    assert (result.packets, result.skipped) == (3, 1)
    pkts = rdpcap(str(tmp_path / "onset.pcap"))
    assert len(pkts) == 3
    assert pkts[0][ARP].pdst == BOX_A and pkts[0][ARP].op == 1
    assert pkts[1][ARP].op == 2 and pkts[1][ARP].hwsrc == "02:42:c0:00:02:0a"
    assert pkts[2][Ether].src == "00:00:00:00:00:00" and pkts[2][IP].dst == BOX_A and pkts[2][ICMP].type == 8
    assert float(pkts[0].time) == pytest.approx(1764284100.25, abs=1e-6)


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
def test_tcpdump_reads_the_dump(tmp_path):
    rec = FlightRecorder({"a": [BOX_A]})
    _cycle(rec, 1764284100.0, reply=False)
    path = str(tmp_path / "x.pcap")
    rec.dump("a", path)
    out = subprocess.run(["tcpdump", "-nn", "-r", path], capture_output=True, text=True, check=True).stdout
    assert f"Request who-has {BOX_A}" in out
    assert f"192.0.2.1 > {BOX_A}: ICMP echo request" in out


def test_write_pcap_empty_is_still_a_valid_file(tmp_path):
    result = write_pcap(str(tmp_path / "e.pcap"), [])
    assert result.packets == 0 and result.bytes_written == 24
    assert len(rdpcap(str(tmp_path / "e.pcap"))) == 0


def test_snapshot_while_another_thread_records():
    import threading

    rec = FlightRecorder({"a": [BOX_A]})
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            rec.record(1.0, "out", "icmp", BOX_A, b"x", 101)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        for _ in range(200):
            rec.snapshot()
            rec.end_cycle()
    finally:
        stop.set()
        t.join()
    assert len(rec.snapshot().cycles) <= rec.cycles + 1
