"""The lab matrix: fault (none, l2, l3, l4, stop) x probe kind, for a container and a VM stand-in box."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import probes
from agent import netns
from probes import Target

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
KINDS = ("arp", "ndp", "icmp", "icmp6", "tcp")
# fault -> the kinds that still answer
ANSWERING = {
    "none": set(KINDS),
    "l2": set(),
    "l3": {"arp", "ndp"},
    "l4": {"arp", "ndp", "icmp", "icmp6"},
    "stop": set(),
}


def box_targets(box) -> list[Target]:
    return ([Target(box.ipv4, "arp"), Target(box.ipv6, "ndp"), Target(box.ipv4, "icmp"), Target(box.ipv6, "icmp6")]
            + [Target(a, "tcp", p) for a in (box.ipv4, box.ipv6) for p in box.tcp_ports])


@pytest.mark.parametrize("box_kind", ["container", "vm"])
@pytest.mark.parametrize("fault", list(ANSWERING))
def test_fault_matrix(clean_lab, box_kind, fault):
    lab = clean_lab
    box = next(b for b in lab.boxes if b.kind == box_kind)
    if fault != "none":
        lab.fault(box.name, fault)
    with netns.entered(lab.monitor_ns):
        results = probes.sweep(box_targets(box), 1.0)
    got = {(r.probe, r.target, r.port): r.ok for r in results}
    want = {(t.probe, t.address, t.port): t.probe in ANSWERING[fault] for t in box_targets(box)}
    assert got == want, [(r.probe, r.target, r.port, r.ok, r.error) for r in results]
    for r in results:
        if r.ok and r.probe in ("arp", "ndp"):
            assert r.mac == box.mac.lower()


def test_probe_command_with_the_lab_config(clean_lab, tmp_path):
    """`vobox-agent --netns MONITOR probe -c CONFIG --json`: every configured box, every probe, all answered."""
    lab = clean_lab
    config = tmp_path / "agent.toml"
    config.write_text(lab.agent_config())
    proc = subprocess.run([sys.executable, "-m", "agent", "--netns", lab.monitor_ns, "probe", "-c", str(config),
                           "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    addresses = {o["target"] for o in out}
    assert addresses == {a for b in lab.boxes for a in (b.ipv4, b.ipv6)}
    assert {o["probe"] for o in out} == set(KINDS) and all(o["ok"] for o in out)
