"""Evidence bundles with injected edges: layout, summary, failures noted not raised, close, retention."""
from __future__ import annotations

import json
import os
from pathlib import Path

from scapy.utils import rdpcap

from agent.forensics import evidence
from agent.forensics.evidence import BoxRef, EvidenceCollector, bundle_dir, read_summary
from agent.forensics.recorder import FlightRecorder
from probes.types import ProbeResult
from tests.agent.forensics import frames as F

A = "192.0.2.10"
MAC = "02:42:c0:00:02:0a"
T0 = 1795821300.0  # 2026-11-27T23:15:00Z


def _recorder(reply_cycles=1, silent_cycles=3):
    rec = FlightRecorder({"ctr1": [A]}, cycles=10)
    t = T0 - 10 * reply_cycles
    for _ in range(reply_cycles):
        rec.record(t, "out", "arp", A, F.arp_request(A), 1)
        rec.record(t + .001, "in", "arp", A, F.arp_reply(A, MAC), 1)
        rec.end_cycle()
        t += 10
    for _ in range(silent_cycles):
        rec.record(t, "out", "arp", A, F.arp_request(A), 1)
        rec.record(t + .002, "out", "icmp", A, F.echo_request(A), 101)
        rec.end_cycle()
        t += 10
    return rec


class FakeRun:
    """Stands in for `ip`: neighbour and link JSON, and a route toward the box."""

    def __init__(self, fail=()):
        self.calls = []
        self.fail = fail

    def __call__(self, argv, timeout_s):
        self.calls.append(list(argv))
        if any(word in argv for word in self.fail):
            raise evidence.CollectorError(f"{' '.join(argv)}: exit 1: boom")
        if "route" in argv:
            return json.dumps([{"dst": A, "dev": "mon0"}])
        if "neigh" in argv:
            return json.dumps([{"dst": A, "dev": "mon0", "state": ["FAILED"]}])
        return json.dumps([{"ifname": "mon0", "stats64": {"rx": {"errors": 0, "dropped": 3}}}])


class BrokenDocker:
    @property
    def api(self):
        raise RuntimeError("docker daemon unreachable")


BOX = BoxRef(name="ctr1", kind="container", addresses=(A,), container="vobox1", network="docknet", site="CERN")
RESULTS = [ProbeResult(A, "arp", None, False, None, "timeout", None, T0 + 21),
           ProbeResult(A, "icmp", None, False, None, "timeout", None, T0 + 21),
           ProbeResult(A, "tcp", 1093, False, None, "timeout", None, T0 + 21)]


def test_bundle_layout_summary_and_failed_collectors_noted(tmp_path):
    run = FakeRun(fail=("-s",))
    ec = EvidenceCollector(str(tmp_path), _recorder(), docker_client=BrokenDocker(), run=run, clock=lambda: T0 + 30)
    path = ec.freeze_opened(BOX, T0, "l2", RESULTS, known_macs={A: MAC})
    assert path == bundle_dir(str(tmp_path), "ctr1", T0) == str(tmp_path / "evidence" / "ctr1" / "20261127T231500Z")
    assert ec.wait(10)
    s = read_summary(path)
    assert s["open"] is True and s["layer"] == "l2" and s["start"] == "2026-11-27T23:15:00.000Z"
    assert s["headline"].startswith("ARP 192.0.2.10: no ARP reply: requests left, nothing came back (3 requests")
    assert s["collectors"]["monitor_neigh"]["ok"] is True
    assert "boom" in s["collectors"]["monitor_link"]["error"]
    assert "docker daemon unreachable" in s["collectors"]["docker_inspect"]["error"]
    txt = (tmp_path / path / "summary.txt").read_text()
    assert "seen: ARP 192.0.2.10: no ARP reply" in txt and "TCP 192.0.2.10 port 1093: no SYN-ACK (timeout)" in txt
    assert json.loads(Path(path, "monitor_neigh.json").read_text())[A][0]["state"] == ["FAILED"]
    pkts = rdpcap(os.path.join(path, "onset.pcap"))
    assert len(pkts) == 2 + 3 * 2
    ec.close()


def test_docker_comes_from_the_caller(tmp_path):
    """Without a client the Docker collectors say so; a factory given instead is called once, on first use."""
    ec = EvidenceCollector(str(tmp_path / "none"), _recorder(), run=FakeRun(), clock=lambda: T0 + 30)
    path = ec.freeze_opened(BOX, T0, "l2", RESULTS)
    assert ec.wait(10)
    s = read_summary(path)
    for name in ("docker_inspect", "container_net", "docker_events"):
        assert "no Docker client was given" in s["collectors"][name]["error"], s["collectors"][name]
    ec.close()
    made = []

    def factory():
        made.append(1)
        return BrokenDocker()

    ec = EvidenceCollector(str(tmp_path / "factory"), _recorder(), docker_client=factory, run=FakeRun(),
                           clock=lambda: T0 + 30)
    path = ec.freeze_opened(BOX, T0, "l2", RESULTS)
    assert ec.wait(10)
    s = read_summary(path)
    assert made == [1] and "docker daemon unreachable" in s["collectors"]["docker_inspect"]["error"]
    ec.close()


def test_vm_skips_container_collectors_and_close_adds_recovery(tmp_path):
    rec = _recorder(reply_cycles=1, silent_cycles=2)
    vm = BoxRef(name="ctr1", kind="vm", addresses=(A,))
    ec = EvidenceCollector(str(tmp_path), rec, run=FakeRun(), clock=lambda: T0 + 30, monitor_netns="mon-x")
    path = ec.freeze_opened(vm, T0, "l2", RESULTS)
    assert ec.wait(10)
    s = read_summary(path)
    assert s["collectors"]["docker_inspect"] == {"ok": False, "error": "skipped: not a container"}
    # Recovery: the box answers again, with a new MAC.
    rec.record(T0 + 60, "out", "arp", A, F.arp_request(A), 1)
    rec.record(T0 + 60.001, "in", "arp", A, F.arp_reply(A, "02:42:c0:00:02:99"), 1)
    rec.end_cycle()
    assert ec.freeze_closed(vm, T0, T0 + 60) == path
    assert ec.wait(10)
    s = read_summary(path)
    assert s["open"] is False and s["duration_s"] == 60.0
    assert s["recovery"]["headline"] == ("ARP answered with a different MAC than before for 192.0.2.10 "
                                         "(02:42:c0:00:02:0a -> 02:42:c0:00:02:99)")
    assert os.path.exists(os.path.join(path, "recovery.pcap"))
    assert "state: closed at" in Path(path, "summary.txt").read_text()
    ec.close()


def test_monitor_netns_is_passed_to_ip(tmp_path):
    run = FakeRun()
    ec = EvidenceCollector(str(tmp_path), None, run=run, monitor_netns="mon-x")
    ec.freeze_opened(BoxRef("v", "vm", (A,)), T0)
    assert ec.wait(10)
    assert all(c[:3] == ["ip", "-n", "mon-x"] for c in run.calls)
    ec.close()


def test_a_crashing_collector_does_not_cost_the_bundle(tmp_path):
    def crash(ctx):
        raise ZeroDivisionError("bug")

    ec = EvidenceCollector(str(tmp_path), _recorder(), run=FakeRun(), collectors={"crash": crash})
    path = ec.freeze_opened(BOX, T0, "l2", RESULTS)
    assert ec.wait(10)
    s = read_summary(path)
    assert s["collectors"]["crash"] == {"ok": False, "error": "failed: ZeroDivisionError: bug"}
    assert s["findings"]
    ec.close()


def test_freeze_opened_never_raises(tmp_path):
    class BadRecorder:
        def snapshot(self):
            raise MemoryError("nope")

    ec = EvidenceCollector(str(tmp_path), BadRecorder(), run=FakeRun())
    assert ec.freeze_opened(BOX, T0).endswith("20261127T231500Z")


def test_retention_applies_after_each_bundle_but_keeps_open_ones(tmp_path):
    ec = EvidenceCollector(str(tmp_path), _recorder(), run=FakeRun(), collectors={}, max_bundles=2)
    paths = [ec.freeze_opened(BoxRef(f"b{i}", "vm", (A,)), T0 + i) for i in range(4)]
    assert ec.wait(10)
    # All four are open freezes: none is removed while its freeze is open.
    assert all(os.path.isdir(p) for p in paths)
    for i in range(3):
        ec.freeze_closed(BoxRef(f"b{i}", "vm", (A,)), T0 + i, T0 + 100)
    assert ec.wait(10)
    assert [os.path.isdir(p) for p in paths] == [False, False, True, True]
    ec.close()


def test_cli_lists_and_shows(tmp_path, capsys):
    from agent.cli import main

    ec = EvidenceCollector(str(tmp_path), _recorder(), run=FakeRun(), collectors={})
    path = ec.freeze_opened(BOX, T0, "l2", RESULTS)
    ec.freeze_opened(BoxRef("other", "vm", ("192.0.2.99",)), T0 + 5, "l3")
    assert ec.wait(10)
    from agent.commands import evidence as cmd

    capsys.readouterr()
    assert cmd.list_bundles(str(tmp_path), "ctr1", 3600, False, now_s=T0 + 60) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0].startswith("2026-11-27 23:15:00Z  ctr1") and "no ARP reply" in out[0] and out[0].endswith(path)
    assert main(["evidence", "--state-dir", str(tmp_path), "--since", "100000d", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["box"] for r in rows] == ["ctr1", "other"]
    assert main(["evidence", "show", "--packets", "3", path]) == 0
    out = capsys.readouterr().out
    assert "... 1 earlier packet(s)" in out and "... 4 later packet(s)" in out and out.count("s  Ether") == 3
    assert main(["evidence", "show", path]) == 0
    out = capsys.readouterr().out
    assert "seen: ARP 192.0.2.10: no ARP reply" in out
    assert "onset.pcap: decoded exchange (Ethernet frames), times relative to the freeze start:" in out
    assert "-10.000s  Ether / ARP who has 192.0.2.10 says 192.0.2.1" in out
    assert "+20.002s  Ether / IP / ICMP 192.0.2.1 > 192.0.2.10 echo-request 0" in out
    assert main(["evidence", "show"]) == 2
    assert main(["evidence", "show", str(tmp_path)]) == 1
    assert main(["evidence", "--since", "soon", "--state-dir", str(tmp_path)]) == 2
    ec.close()


def test_open_bundles_of_a_previous_run_are_kept_and_close_updates_layer(tmp_path):
    ec = EvidenceCollector(str(tmp_path), _recorder(), run=FakeRun(), collectors={})
    old = ec.freeze_opened(BoxRef("old", "vm", (A,)), T0 - 100, "l2")
    assert ec.wait(10)
    ec.close()
    # A new agent process: the old freeze is still open, so retention must not take it.
    ec2 = EvidenceCollector(str(tmp_path), _recorder(), run=FakeRun(), collectors={}, max_bundles=1)
    new = ec2.freeze_opened(BoxRef("new", "vm", (A,)), T0, "l3")
    assert ec2.wait(10)
    assert os.path.isdir(old) and os.path.isdir(new)
    ec2.freeze_closed(BoxRef("old", "vm", (A,)), T0 - 100, T0 - 50, layer="l3")
    assert ec2.wait(10)
    ec2.freeze_closed(BoxRef("new", "vm", (A,)), T0, T0 + 5)
    assert ec2.wait(10)
    assert not os.path.isdir(old) and os.path.isdir(new)
    ec2.close()


def test_cli_reads_state_dir_from_config(tmp_path, capsys):
    from agent.cli import main

    ec = EvidenceCollector(str(tmp_path), _recorder(), run=FakeRun(), collectors={})
    ec.freeze_opened(BOX, T0, "l2", RESULTS)
    assert ec.wait(10)
    ec.close()
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path}"\n\n[[box]]\nname = "v"\nkind = "vm"\nipv4 = "192.0.2.5"\n')
    capsys.readouterr()
    assert main(["evidence", "ctr1", "-c", str(cfg), "--since", "100000d"]) == 0
    assert "no ARP reply" in capsys.readouterr().out
    assert main(["evidence", "-c", str(tmp_path / "missing.toml")]) == 2
