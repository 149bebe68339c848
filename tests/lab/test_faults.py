"""Each fault gives its symptom, seen with plain tools from the monitor namespace, and clear() restores the box
(on each engine: dockerd and Podman)."""
from __future__ import annotations

import subprocess

import pytest

from tests.lab_fixtures import arp_answers, box_symptoms, ndp_answer, ping_ok, tcp_ok

pytestmark = pytest.mark.lab

HEALTHY = dict(arp=True, ndp=True, ping4=True, ping6=True, tcp4=True, tcp6=True)
SYMPTOMS = {
    "l2": dict(arp=False, ndp=False, ping4=False, ping6=False, tcp4=False, tcp6=False),
    "l3": dict(arp=True, ndp=True, ping4=False, ping6=False, tcp4=False, tcp6=False),
    "l4": dict(arp=True, ndp=True, ping4=True, ping6=True, tcp4=False, tcp6=False),
    "stop": dict(arp=False, ndp=False, ping4=False, ping6=False, tcp4=False, tcp6=False),
}


def _docker_state(lab, container: str) -> str:
    return subprocess.run(lab.engine.cmd("inspect", "-f", "{{.State.Status}}", container),
                          capture_output=True, text=True).stdout.strip()


def test_every_box_is_healthy_from_the_monitor(clean_engine_lab):
    for b in clean_engine_lab.boxes:
        assert box_symptoms(clean_engine_lab, b.name) == HEALTHY, b.name


def test_ndp_and_arp_give_the_recorded_macs(clean_engine_lab):
    for b in clean_engine_lab.boxes:
        assert ndp_answer(clean_engine_lab, b.ipv6) == b.mac, b.name
        assert arp_answers(clean_engine_lab, b.ipv4), b.name


@pytest.mark.parametrize("box", ["ctr1", "vm1"])
@pytest.mark.parametrize("kind", list(SYMPTOMS))
def test_fault_gives_its_symptom_and_clear_restores(clean_engine_lab, box, kind):
    lab = clean_engine_lab
    lab.fault(box, kind)
    assert lab.faults() == {box: kind}
    seen = box_symptoms(lab, box)
    assert seen == SYMPTOMS[kind], f"{box} {kind}: saw {seen}"
    other = "ctr2"
    assert box_symptoms(lab, other) == HEALTHY, f"fault on {box} leaked to {other}"
    lab.clear(box)
    assert lab.faults() == {}
    assert box_symptoms(lab, box) == HEALTHY
    assert lab.status()["boxes"][[b.name for b in lab.boxes].index(box)]["fault"] is None


@pytest.mark.parametrize("kind, docker_state", [("l4", "running"), ("pause", "paused"), ("hang", "running"),
                                                ("stop", "exited"), ("l2", "running")])
def test_container_fault_mechanism(clean_engine_lab, kind, docker_state):
    b = clean_engine_lab.box("ctr2")
    clean_engine_lab.fault("ctr2", kind)
    assert _docker_state(clean_engine_lab, b.container) == docker_state
    clean_engine_lab.clear("ctr2")
    assert _docker_state(clean_engine_lab, b.container) == "running"


@pytest.mark.parametrize("kind", ["l2", "stop"])
def test_container_comes_back_with_the_same_mac(clean_engine_lab, kind):
    b = clean_engine_lab.box("ctr1")
    clean_engine_lab.fault("ctr1", kind)
    clean_engine_lab.clear("ctr1")
    assert ndp_answer(clean_engine_lab, b.ipv6) == b.mac
    assert clean_engine_lab.status()["boxes"][0]["mac_now"] == b.mac


def test_a_second_fault_replaces_the_first(clean_engine_lab):
    b = clean_engine_lab.box("vm1")
    clean_engine_lab.fault("vm1", "l2")
    clean_engine_lab.fault("vm1", "l4")
    assert clean_engine_lab.faults() == {"vm1": "l4"}
    assert arp_answers(clean_engine_lab, b.ipv4) and ping_ok(clean_engine_lab, b.ipv6)
    assert not tcp_ok(clean_engine_lab, b.ipv4, b.tcp_ports[0])


def test_segment_down_freezes_every_box_and_up_restores(clean_engine_lab):
    lab = clean_engine_lab
    lab.segment_down()
    for b in lab.boxes:
        assert not arp_answers(lab, b.ipv4), b.name
        assert not tcp_ok(lab, b.ipv6, b.tcp_ports[0], 0.5), b.name
    lab.segment_up()
    lab.wait_ready(timeout_s=20)
    for b in lab.boxes:
        assert box_symptoms(lab, b.name) == HEALTHY, b.name


def test_unknown_box_and_fault_are_errors_naming_the_valid_ones(lab):
    from lab import LabError, UnknownBoxError

    with pytest.raises(UnknownBoxError, match="boxes: ctr1, ctr2, vm1"):
        lab.fault("nope", "l2")
    with pytest.raises(LabError, match="valid: l2, l3, l4, stop, pause, hang, cvmfs-hang, cvmfs-error"):
        lab.fault("ctr1", "l7")
    for kind in ("pause", "cvmfs-hang", "cvmfs-error"):
        with pytest.raises(LabError, match=f"fault '{kind}' is not made for vm boxes; valid for them: l2, l3, l4, "
                                           f"stop, hang"):
            lab.fault("vm1", kind)
    assert lab.faults() == {}


def test_clear_tolerates_a_box_healed_meanwhile(clean_engine_lab):
    """A remediation may heal a box behind the lab's back; clear() must still succeed and leave it healthy."""
    b = clean_engine_lab.box("ctr2")
    clean_engine_lab.fault("ctr2", "l2")
    subprocess.run(clean_engine_lab.engine.cmd("network", "connect", "--ip", b.ipv4, "--ip6", b.ipv6, b.network,
                                               b.container), check=True, capture_output=True)
    clean_engine_lab.clear("ctr2")
    for kind in ("pause", "l4", "hang"):
        clean_engine_lab.fault("ctr2", kind)
        subprocess.run(clean_engine_lab.engine.cmd("unpause", b.container), capture_output=True)  # only pause
        subprocess.run(clean_engine_lab.engine.cmd("restart", "-t", "1", b.container), check=True,
                       capture_output=True)
        clean_engine_lab.clear("ctr2")
        assert box_symptoms(clean_engine_lab, "ctr2") == HEALTHY, kind
