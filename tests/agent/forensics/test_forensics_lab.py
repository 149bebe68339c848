"""Lab: real probes with the flight recorder against boxes with real faults -> bundles that name what happened."""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP
from scapy.layers.l2 import ARP
from scapy.utils import rdpcap

from agent import netns
from agent.core.correlation import CorrelationSettings, Correlator, Membership
from agent.core.macwatch import MacWatch
from agent.forensics.evidence import BoxRef, EvidenceCollector, read_summary
from agent.forensics.recorder import FlightRecorder
from remediations import default_docker_factory

pytestmark = pytest.mark.lab

TIMEOUT_S = 0.4


def targets_of(box):
    """What the agent probes for a box: icmp + arp on ipv4, icmp6 + ndp on ipv6, tcp on each port (ipv4)."""
    from probes import Target

    t = [Target(box.ipv4, "icmp"), Target(box.ipv4, "arp")]
    if box.ipv6:
        t += [Target(box.ipv6, "icmp6"), Target(box.ipv6, "ndp")]
    t += [Target(box.ipv4, "tcp", p) for p in box.tcp_ports]
    return t


def cycle(lab, boxes, recorder):
    """One probe cycle from the monitor namespace, recorded; returns {box name: results}."""
    import probes

    targets = [t for b in boxes for t in targets_of(b)]
    with netns.entered(lab.monitor_ns):
        results = probes.sweep(targets, TIMEOUT_S, interface=lab.monitor_link, recorder=recorder.record)
    recorder.end_cycle()
    by_box = {b.name: [] for b in boxes}
    owner = {}
    for b in boxes:
        owner[b.ipv4] = b.name
        if b.ipv6:
            owner[b.ipv6] = b.name
    for r in results:
        by_box[owner[r.target]].append(r)
    return by_box


def box_ref(b):
    return BoxRef(name=b.name, kind=b.kind, addresses=tuple(a for a in (b.ipv4, b.ipv6) if a),
                  container=b.container, network=b.network, site="lab")


def freeze_bundle(lab, tmp_path, name, fault, failing_cycles=2):
    """Healthy cycle, fault, failing cycles, bundle at detection; returns (summary, path, start_s, collector)."""
    b = lab.box(name)
    rec = FlightRecorder({b.name: [b.ipv4, b.ipv6]})
    watch = MacWatch()
    healthy = cycle(lab, [b], rec)[name]
    assert all(r.ok for r in healthy), healthy
    watch.observe(name, healthy)
    lab.fault(name, fault)
    start_s = time.time()
    for _ in range(failing_cycles):
        results = cycle(lab, [b], rec)[name]
    assert not all(r.ok for r in results)
    ec = EvidenceCollector(str(tmp_path), rec, docker_client=default_docker_factory(), monitor_netns=lab.monitor_ns)
    path = ec.freeze_opened(box_ref(b), start_s, fault, results, known_macs=watch.last(name))
    assert ec.wait(60)
    return read_summary(path), path, start_s, ec, rec


def packets_after(path, start_s):
    return [p for p in rdpcap(os.path.join(path, "onset.pcap")) if float(p.time) >= start_s]


def test_l2_container_bundle_names_no_arp_reply_and_holds_the_evidence(clean_lab, tmp_path):
    lab = clean_lab
    b = lab.box("ctr1")
    s, path, start_s, ec, rec = freeze_bundle(lab, tmp_path, "ctr1", "l2")
    assert "no ARP reply" in s["headline"], s["headline"]
    codes = [f["code"] for f in s["findings"]]
    assert {"arp_no_reply", "ndp_no_reply", "tcp_no_synack"} <= set(codes), codes
    # The capture: who-has left after the onset, no is-at came back; before it the box answered.
    after = packets_after(path, start_s)
    assert any(ARP in p and p[ARP].op == 1 and p[ARP].pdst == b.ipv4 for p in after)
    assert not any(ARP in p and p[ARP].op == 2 for p in after)
    before = [p for p in rdpcap(os.path.join(path, "onset.pcap")) if float(p.time) < start_s]
    assert any(ARP in p and p[ARP].op == 2 and p[ARP].hwsrc == b.mac for p in before)
    # Every collector ran for a container; the disconnect is in the Docker events.
    failed = {k: v for k, v in s["collectors"].items() if not v["ok"]}
    assert failed == {}, failed
    assert any("network disconnect" in line for line in s["docker_events"]), s["docker_events"]
    neigh = json.loads(Path(path, "monitor_neigh.json").read_text())
    assert set(neigh) == {b.ipv4, b.ipv6}
    link = json.loads(Path(path, "monitor_link.json").read_text())
    assert lab.monitor_link in link and "stats64" in link[lab.monitor_link][0]
    inspect = json.loads(Path(path, "docker_inspect.json").read_text())
    assert inspect["container"]["Name"] == "/" + b.container and inspect["network"]["Driver"] == "macvlan"
    routes = json.loads(Path(path, "container_routes.json").read_text())
    assert "ipv4" in routes
    # Recovery: cleared, a healthy cycle, closed with recovery.pcap.
    lab.clear("ctr1")
    cycle(lab, [b], rec)
    end_s = time.time()
    ec.freeze_closed(box_ref(b), start_s, end_s)
    assert ec.wait(30)
    s = read_summary(path)
    assert s["open"] is False and s["recovery"]["headline"] == "all probes answered again"
    assert any("network connect" in line for line in s["recovery"].get("docker_events", [])), (s["recovery"], s["collectors"])
    assert any(ARP in p and p[ARP].op == 2 for p in rdpcap(os.path.join(path, "recovery.pcap")))
    ec.close()


def test_l4_container_bundle_says_ping_answered_tcp_dead(clean_lab, tmp_path):
    s, path, start_s, ec, _ = freeze_bundle(clean_lab, tmp_path, "ctr2", "l4")
    assert s["headline"].startswith("ping answered, TCP dead: TCP "), s["headline"]
    assert "no SYN-ACK (timeout)" in s["headline"]
    # The capture holds the part of the exchange that still works: echo replies after the onset.
    assert any(ICMP in p and p[ICMP].type == 0 for p in packets_after(path, start_s))
    assert s["collectors"]["container_net"]["ok"], s["collectors"]["container_net"]
    ec.close()


def test_l4_vm_bundle_says_rst(clean_lab, tmp_path):
    s, _path, _start_s, ec, _ = freeze_bundle(clean_lab, tmp_path, "vm1", "l4")
    assert s["headline"].startswith("ping answered, TCP dead"), s["headline"]
    assert "RST (refused)" in s["headline"], s["headline"]
    assert s["collectors"]["docker_inspect"]["error"] == "skipped: not a container"
    assert s["collectors"]["monitor_link"]["ok"]
    ec.close()


def test_l3_container_bundle_says_arp_answered_ping_dead(clean_lab, tmp_path):
    s, path, start_s, ec, _ = freeze_bundle(clean_lab, tmp_path, "ctr1", "l3")
    assert s["headline"].startswith("ARP answered, ping dead: ICMP "), s["headline"]
    after = packets_after(path, start_s)
    assert any(ARP in p and p[ARP].op == 2 for p in after)
    assert any(ICMP in p and p[ICMP].type == 8 for p in after)
    assert not any(ICMP in p and p[ICMP].type == 0 for p in after)
    ec.close()


def test_mac_change_after_container_recreated_with_another_mac(clean_lab, tmp_path):
    from lab.image import ensure_image

    lab = clean_lab
    ipv4 = lab.ipv4_subnet.rsplit(".", 1)[0] + ".77"
    name = f"vbl-{lab.run_id}-fx-{uuid.uuid4().hex[:6]}"
    image = ensure_image()
    macs = ("02:42:aa:00:00:01", "02:42:aa:00:00:02")
    from types import SimpleNamespace

    box = SimpleNamespace(name="fxbox", kind="container", ipv4=ipv4, ipv6=None, tcp_ports=(), container=name,
                          network=lab.network)
    rec = FlightRecorder({"fxbox": [ipv4]})
    watch = MacWatch()
    changes = []
    import docker

    api = docker.from_env(timeout=60).api  # API 1.41: a container-level MAC is used on its network
    try:
        for mac in macs:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
            ctr = api.create_container(
                image, command=["1093"], name=name, mac_address=mac, labels={"vobox-lab": lab.run_id},
                host_config=api.create_host_config(network_mode=lab.network),
                networking_config=api.create_networking_config(
                    {lab.network: api.create_endpoint_config(ipv4_address=ipv4)}))
            api.start(ctr["Id"])
            for _ in range(20):
                results = cycle(lab, [box], rec)["fxbox"]
                if all(r.ok for r in results):
                    break
            assert [r.mac for r in results if r.probe == "arp"] == [mac]
            changes += watch.observe("fxbox", results)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
    assert [(c.box, c.address, c.old, c.new) for c in changes] == [("fxbox", ipv4, macs[0], macs[1])]
    # The capture shows it too.
    from agent.forensics.summary import analyze

    analysis = analyze(rec.snapshot().for_addresses([ipv4]), results)
    assert analysis.findings[0].code == "mac_changed"
    assert f"({macs[0]} -> {macs[1]})" in analysis.headline


def test_segment_down_is_one_segment_freeze_that_holds_remediation(clean_lab):
    lab = clean_lab
    boxes = list(lab.boxes)
    members = {b.name: Membership(segment="lab-l2", site="lab") for b in boxes}
    corr = Correlator(CorrelationSettings(min_boxes=3, min_share=0.5, window_s=60.0), members)
    rec = FlightRecorder({b.name: [b.ipv4, b.ipv6] for b in boxes})
    lab.segment_down()
    start_s = time.time()
    opened = []
    for name, results in cycle(lab, boxes, rec).items():
        assert not any(r.ok for r in results if r.probe in ("arp", "ndp")), (name, results)
        opened += corr.freeze_started(name, start_s, "l2")
    # Opened once the share is reached, then grown: one segment freeze (same segment and start: one point).
    assert {(sf.segment, sf.start_s) for sf in opened} == {("lab-l2", start_s)}
    (sf,) = corr.open_freezes()
    assert (sorted(sf.boxes), sf.layer, sf.open) == (sorted(b.name for b in boxes), "l2", True)
    assert all(corr.holds(b.name) for b in boxes)
    lab.segment_up()
    lab.wait_ready()
    closed = []
    for name, results in cycle(lab, boxes, rec).items():
        assert all(r.ok for r in results), (name, results)
        closed += corr.freeze_ended(name, time.time())
    assert len(closed) == 1 and closed[0].open is False and closed[0].duration_s > 0
    assert not any(corr.holds(b.name) for b in boxes)
