"""Real sweeps in throwaway namespaces: every kind, errors, recorder, overlapping sweeps, no CAP_NET_RAW."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

import probes
from agent import netns
from probes import ProbeResult, Target
from tests.probes.conftest import run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def targets_for(seg, addresses4, addresses6, ports):
    out = []
    for a in addresses4:
        out += [Target(a, "icmp"), Target(a, "arp")] + [Target(a, "tcp", p) for p in ports]
    for a in addresses6:
        out += [Target(a, "icmp6"), Target(a, "ndp")] + [Target(a, "tcp", p) for p in ports]
    return out


def summary(results: list[ProbeResult]) -> list[tuple]:
    return [(r.target, r.probe, r.port, r.ok, r.error, r.mac) for r in results]


def test_every_kind_answers_and_absent_addresses_time_out(segment):
    seg = segment
    targets = targets_for(seg, [seg.ipv4[0], seg.absent_ipv4], [seg.ipv6[1], seg.absent_ipv6], [seg.port])
    targets.append(Target(seg.ipv4[2], "tcp", seg.closed_port))
    with netns.entered(seg.monitor):
        start = time.time()
        results = probes.sweep(targets, 0.5)
        elapsed = time.time() - start
    mac = seg.target_mac
    assert summary(results) == [
        (seg.ipv4[0], "icmp", None, True, None, None),
        (seg.ipv4[0], "arp", None, True, None, mac),
        (seg.ipv4[0], "tcp", seg.port, True, None, None),
        (seg.absent_ipv4, "icmp", None, False, "timeout", None),
        (seg.absent_ipv4, "arp", None, False, "timeout", None),
        (seg.absent_ipv4, "tcp", seg.port, False, "timeout", None),
        (seg.ipv6[1], "icmp6", None, True, None, None),
        (seg.ipv6[1], "ndp", None, True, None, mac),
        (seg.ipv6[1], "tcp", seg.port, True, None, None),
        (seg.absent_ipv6, "icmp6", None, False, "timeout", None),
        (seg.absent_ipv6, "ndp", None, False, "timeout", None),
        (seg.absent_ipv6, "tcp", seg.port, False, "timeout", None),
        (seg.ipv4[2], "tcp", seg.closed_port, False, "refused", None),
    ]
    assert elapsed < 0.5 + 0.5  # kinds ran concurrently: about one timeout, not five
    for r in results:
        assert (r.rtt_ms is not None and 0 <= r.rtt_ms < 500) == r.ok
        assert start - 1 < r.time_s < start + elapsed + 1


def test_interface_option_and_not_on_link(segment):
    seg = segment
    with netns.entered(seg.monitor):
        run("ip", "-n", seg.monitor, "route", "add", "203.0.113.0/24", "via", seg.ipv4[3])
        try:
            results = probes.sweep([Target(seg.ipv4[1], "arp"), Target(seg.ipv4[1], "icmp"),
                                    Target("203.0.113.9", "arp")], 0.5)
            forced = probes.sweep([Target(seg.ipv4[1], "arp"), Target(seg.ipv6[2], "ndp"),
                                   Target(seg.ipv4[1], "icmp"), Target(seg.ipv6[2], "tcp", seg.port)], 0.5,
                                  interface=seg.monitor_link)
        finally:
            run("ip", "-n", seg.monitor, "route", "del", "203.0.113.0/24")
    assert [r.ok for r in results[:2]] == [True, True]
    assert (results[2].ok, results[2].error) == (False, f"not on-link (routed via {seg.ipv4[3]} on {seg.monitor_link})")
    assert [r.ok for r in forced] == [True] * 4


def test_icmp_unreachable_from_a_router_is_reported(segment):
    """The target namespace routes 203.0.113.0/24 to 'unreachable': pings there get an ICMP error back."""
    seg = segment
    run("ip", "netns", "exec", seg.target, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    run("ip", "-n", seg.target, "route", "add", "unreachable", "203.0.113.0/24")
    run("ip", "-n", seg.monitor, "route", "add", "203.0.113.0/24", "via", seg.ipv4[0])
    try:
        with netns.entered(seg.monitor):
            results = probes.sweep([Target("203.0.113.7", "icmp"), Target(seg.ipv4[1], "icmp")], 1.0)
    finally:
        run("ip", "-n", seg.monitor, "route", "del", "203.0.113.0/24", check=False)
        run("ip", "-n", seg.target, "route", "del", "unreachable", "203.0.113.0/24", check=False)
    assert [(r.ok, r.error) for r in results] == [(False, "unreachable"), (True, None)]
    assert results[0].time_s - time.time() < 0.5


def test_recorder_sees_requests_and_replies_as_frames(segment):
    seg = segment
    records = []
    with netns.entered(seg.monitor):
        probes.sweep([Target(seg.ipv4[0], "icmp"), Target(seg.ipv4[0], "arp"), Target(seg.ipv6[0], "icmp6"),
                      Target(seg.ipv6[0], "ndp"), Target(seg.absent_ipv4, "icmp")], 0.3,
                     recorder=lambda *args: records.append(args))
    seen = {(probe, address, direction): (frame, linktype) for _t, direction, probe, address, frame, linktype
            in records}
    frame, linktype = seen[("icmp", seg.ipv4[0], "out")]
    assert linktype == 101 and IP(frame).src == seg.monitor_ipv4 and IP(frame).dst == seg.ipv4[0]
    frame, linktype = seen[("icmp", seg.ipv4[0], "in")]
    assert linktype == 101 and IP(frame).src == seg.ipv4[0] and IP(frame)["ICMP"].type == 0
    frame, linktype = seen[("arp", seg.ipv4[0], "in")]
    assert linktype == 1 and Ether(frame)[ARP].hwsrc == seg.target_mac
    frame, linktype = seen[("icmp6", seg.ipv6[0], "in")]
    assert linktype == 101 and IPv6(frame).src == seg.ipv6[0] and IPv6(frame).dst == seg.monitor_ipv6
    assert ("ndp", seg.ipv6[0], "out") in seen and ("ndp", seg.ipv6[0], "in") in seen
    assert ("icmp", seg.absent_ipv4, "out") in seen and ("icmp", seg.absent_ipv4, "in") not in seen
    assert all(isinstance(r[0], float) for r in records)


def test_two_overlapping_sweeps_both_get_all_their_replies(segment):
    """Two threads sweep the same targets at the same time, twice over: nobody loses a reply."""
    seg = segment
    targets = targets_for(seg, seg.ipv4, seg.ipv6, [])
    outcomes: list[list[ProbeResult]] = []
    barrier = threading.Barrier(2)

    def one():
        with netns.entered(seg.monitor):
            barrier.wait()
            for _ in range(2):
                outcomes.append(probes.sweep(targets, 1.0))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 4
    for results in outcomes:
        assert [(r.target, r.probe, r.ok) for r in results] == [(t.address, t.probe, True) for t in targets]


def test_two_processes_sweeping_at_once_do_not_steal_replies(segment):
    """Two agents on one host: separate processes, same targets, overlapping in time."""
    seg = segment
    code = ("import json, probes; from probes import Target;"
            f"r = probes.sweep([Target(a, k) for a in {seg.ipv4!r} for k in ('icmp', 'arp')]"
            f" + [Target(a, k) for a in {seg.ipv6!r} for k in ('icmp6', 'ndp')], 1.0);"
            "print(json.dumps([x.ok for x in r]))")
    procs = [subprocess.Popen(["ip", "netns", "exec", seg.monitor, sys.executable, "-c", code], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert json.loads(out) == [True] * 16


def no_net_raw(seg, *argv: str) -> subprocess.CompletedProcess:
    """Run ARGV in the monitor namespace with CAP_NET_RAW dropped (bounding, inheritable and ambient sets)."""
    return subprocess.run(["ip", "netns", "exec", seg.monitor, "setpriv", "--inh-caps=-net_raw",
                           "--ambient-caps=-net_raw", "--bounding-set=-net_raw", "--", *argv],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed")
def test_without_cap_net_raw_raw_kinds_say_so_in_one_line_and_tcp_still_works(segment):
    seg = segment
    code = ("import json, probes; from probes import Target\n"
            "try:\n"
            f"    probes.sweep([Target({seg.ipv4[0]!r}, 'icmp'), Target({seg.ipv4[0]!r}, 'tcp', {seg.port})], 1.0)\n"
            "    print('no error')\n"
            "except probes.PrivilegeError as exc:\n"
            "    print('PrivilegeError:', exc)\n"
            f"r = probes.sweep([Target({seg.ipv4[0]!r}, 'tcp', {seg.port}), Target({seg.ipv6[0]!r}, 'tcp', {seg.port}),"
            f" Target({seg.ipv4[0]!r}, 'tcp', {seg.closed_port})], 1.0)\n"
            "print(json.dumps([[x.ok, x.error] for x in r]))\n")
    proc = no_net_raw(seg, sys.executable, "-c", code)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first.startswith("PrivilegeError: raw sockets need CAP_NET_RAW: run as root or grant it")
    assert "setcap cap_net_raw+ep" in first
    assert json.loads(second) == [[True, None], [True, None], [False, "refused"]]

    cli = no_net_raw(seg, sys.executable, "-m", "agent", "probe", "--probe", "icmp", seg.ipv4[0])
    assert cli.returncode == 2
    assert cli.stderr.strip().count("\n") == 0 and "cap_net_raw" in cli.stderr
    cli = no_net_raw(seg, sys.executable, "-m", "agent", "probe", "--json", "--probe", "tcp", "--port",
                     str(seg.port), seg.ipv4[0])
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)[0]["ok"] is True


def test_probe_command_from_the_global_netns_flag(segment):
    seg = segment
    proc = subprocess.run([sys.executable, "-m", "agent", "--netns", seg.monitor, "probe", "--json", "--port",
                           str(seg.port), seg.ipv4[0], seg.ipv6[0]], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = [(o["target"], o["probe"], o["port"], o["ok"], o["mac"]) for o in json.loads(proc.stdout)]
    assert got == [(seg.ipv4[0], "icmp", None, True, None), (seg.ipv4[0], "arp", None, True, seg.target_mac),
                   (seg.ipv4[0], "tcp", seg.port, True, None), (seg.ipv6[0], "icmp6", None, True, None),
                   (seg.ipv6[0], "ndp", None, True, seg.target_mac), (seg.ipv6[0], "tcp", seg.port, True, None)]
