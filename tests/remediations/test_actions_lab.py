"""Remediation actions and the engine against the real lab: Docker engine, macvlan, namespaces, packets.

Restart, reconnect (same IPv4, IPv6 and MAC) and dry run also run on Podman (engine_healthy_after)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import docker
import pytest

from remediations import (
    ActionContext,
    PlannedAction,
    RemediationPolicy,
    RemediationService,
    RemediationTarget,
    Remediator,
    default_docker_factory,
    execute,
)
from remediations.announce import announce_from_pid
from tests.remediations.conftest import box_healthy, neigh_mac, ping_ok, tcp_ok, wait_for

pytestmark = pytest.mark.lab

FAST = RemediationPolicy(cooldown_s=0, verify_s=1.0, stop_timeout_s=1, retry_deferred_s=1.0,
                         max_per_box_per_hour=3, max_per_hour=20)


def target(lab, name, **kw) -> RemediationTarget:
    b = lab.box(name)
    base = dict(box=b.name, kind=b.kind, ipv4=b.ipv4, ipv6=b.ipv6, container=b.container, network=b.network)
    base.update(kw)
    return RemediationTarget(**base)


class Collector:
    """Collects records from the service's worker thread."""

    def __init__(self):
        self.records = []
        self.lock = threading.Lock()

    def __call__(self, rec):
        with self.lock:
            self.records.append(rec)

    def final(self):
        with self.lock:
            return [r for r in self.records if not r.deferred]


def mac_memory(lab, name) -> dict[str, str]:
    """What the agent's MAC memory (agent.core.macwatch) holds for box NAME now: address -> the MAC its ARP/NDP
    answered from, read from the monitor's neighbour table after a ping of each address."""
    b = lab.box(name)
    out = {}
    for address in (b.ipv4, b.ipv6):
        if address and wait_for(lambda a=address: ping_ok(lab, a) and neigh_mac(lab, a), 5):
            out[address] = neigh_mac(lab, address)
    return out


def run_service(lab, targets, policy=FAST, docker_factory=None, known_macs=None, **svc_kw):
    """The remediation service on TARGETS; KNOWN_MACS: box -> {address: MAC}, as agent.wiring passes the MAC
    memory (build_remediation(known_macs=))."""
    rec = Collector()
    r = Remediator(policy, targets, reprobe=lambda box: box_healthy(lab, box) if lab.box(box).tcp_ports
                   else ping_ok(lab, lab.box(box).ipv4))
    svc = RemediationService(r, ActionContext(docker_factory or default_docker_factory(), policy, known_macs), rec,
                             tick_s=0.1, **svc_kw)
    svc.start()
    return svc, rec


def freeze(svc, box, layer):
    """What the remediation listener does when a freeze opens: hand it over, let the service decide."""
    svc.freeze_opened(box, layer, time.time())
    svc.tick()


def ctr_state(name):
    c = docker.from_env().containers.get(name)
    return c.attrs["State"]


def endpoint(name, network):
    c = docker.from_env().containers.get(name)
    return c.attrs["NetworkSettings"]["Networks"].get(network)


def _heal(lab) -> None:
    """Every box answers again, whatever the test did (on the lab's engine: DOCKER_HOST is set to it)."""
    from lab.faults import restore_container

    cli = docker.from_env()
    for b in lab.boxes:
        if b.container and lab.engine.name == "podman":   # its CLI, MAC included: a restart changes it
            restore_container(lab, b)
        elif b.container:
            c = cli.containers.get(b.container)
            if c.attrs["State"]["Paused"]:
                c.unpause()
            if not endpoint(b.container, b.network):
                cli.networks.get(b.network).connect(c, ipv4_address=b.ipv4, ipv6_address=b.ipv6)
        else:
            subprocess.run(["ip", "netns", "exec", b.netns, "nft", "delete", "table", "inet", "vobox_lab_l3"],
                           stderr=subprocess.DEVNULL)
    for b in lab.boxes:
        assert wait_for(lambda b=b: box_healthy(lab, b.name), 30), f"box {b.name} did not come back"


@pytest.fixture
def healthy_after(rlab):
    """Every box answers again after the test, whatever it did."""
    yield rlab
    _heal(rlab)


@pytest.fixture
def engine_healthy_after(engine_docker_host):
    """healthy_after on each engine's lab in turn (DOCKER_HOST points at it: docker.from_env() follows)."""
    yield engine_docker_host
    _heal(engine_docker_host)


def test_paused_container_is_restarted_and_answers_tcp_again(engine_healthy_after):
    lab = engine_healthy_after
    b = lab.box("ctr1")
    docker.from_env().containers.get(b.container).pause()
    assert not tcp_ok(lab, b.ipv4, b.tcp_ports[0]) and ping_ok(lab, b.ipv4)  # an l4 freeze
    svc, rec = run_service(lab, [target(lab, "ctr1", ladder=("reconnect_network", "restart_container"))])
    try:
        freeze(svc, "ctr1", "l4")
        assert wait_for(lambda: rec.final(), 30)
    finally:
        svc.stop()
    assert len(rec.final()) == 1, [(r.action, r.ok, r.recovered, r.detail) for r in rec.final()]
    r, = rec.final()
    assert (r.action, r.trigger, r.ok, r.recovered, r.dry_run) == ("restart_container", "auto", True, True, False)
    assert "unpaused" in r.detail
    state = ctr_state(b.container)
    assert state["Running"] and not state["Paused"]
    assert all(tcp_ok(lab, a, p) for a in (b.ipv4, b.ipv6) for p in b.tcp_ports)
    _assert_restart_mac(lab, b, r.detail)


def ns_mac(b) -> str:
    """The MAC of the interface carrying the box's IPv4 in its container's namespace (`ip -j addr` there): Podman
    4.3 may inspect a restarted container with an empty MacAddress."""
    pid = ctr_state(b.container)["Pid"]
    links = json.loads(subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-j", "addr", "show"],
                                      capture_output=True, text=True, check=True).stdout)
    mac, = [i["address"] for i in links if any(a.get("local") == b.ipv4 for a in i.get("addr_info", []))]
    return mac


def _assert_restart_mac(lab, b, detail):
    """dockerd keeps a container's MAC over a restart. Podman gives a new random one unless the MAC was set
    (agent.engines.podman TRAITS.restart_keeps_mac False; a box the lab restored has its MAC set and keeps it):
    a change is said to be ours and announced, and the monitor's neighbour entries hold the MAC either way."""
    mac = ns_mac(b)
    if lab.engine.name == "docker" or mac == b.mac:
        assert mac == b.mac and "MAC CHANGED" not in detail, detail
    else:
        assert f"MAC CHANGED on {b.network} {b.mac} -> {mac} by the restart (ours)" in detail, detail
        assert f"announced garp {b.ipv4}" in detail and f"na {b.ipv6}" in detail, detail
    assert neigh_mac(lab, b.ipv4) == mac and neigh_mac(lab, b.ipv6) == mac


def test_l4_then_l2_on_one_container_restart_then_reconnect(engine_healthy_after, tmp_path):
    """Issue 18.1's lab sequence: a paused container (l4: ping answers, TCP not) is restarted; the next
    freeze of the same container, a disconnect (l2), starts its own ladder at reconnect_network."""
    lab = engine_healthy_after
    b = lab.box("ctr1")
    docker.from_env().containers.get(b.container).pause()
    assert wait_for(lambda: not tcp_ok(lab, b.ipv4, b.tcp_ports[0]), 5) and ping_ok(lab, b.ipv4)
    policy = RemediationPolicy(cooldown_s=0, verify_s=1.0, stop_timeout_s=1, max_per_box_per_hour=3)
    memory = {}   # the agent's MAC memory: what ARP/NDP last answered from before each fault
    svc, rec = run_service(lab, [target(lab, "ctr1", ladder=("reconnect_network", "restart_container"))],
                           policy=policy, history_path=str(tmp_path / "history.json"),
                           known_macs=lambda box: memory.get(box, {}))
    try:
        freeze(svc, "ctr1", "l4")
        assert wait_for(lambda: len(rec.final()) == 1, 30)
        svc.freeze_closed("ctr1")
        assert wait_for(lambda: box_healthy(lab, "ctr1"), 20)
        _assert_restart_mac(lab, b, rec.final()[0].detail)
        memory["ctr1"] = mac_memory(lab, "ctr1")
        answered = ns_mac(b)
        assert memory["ctr1"] == {b.ipv4: answered, b.ipv6: answered}
        docker.from_env().networks.get(b.network).disconnect(b.container, force=True)
        assert wait_for(lambda: not ping_ok(lab, b.ipv4), 5)
        freeze(svc, "ctr1", "l2")
        assert wait_for(lambda: len(rec.final()) == 2, 30)
        svc.freeze_closed("ctr1")
    finally:
        svc.stop()
    got = [(r.action, r.outcome, r.ok, r.recovered) for r in rec.final()]
    assert got == [("restart_container", "done", True, True), ("reconnect_network", "done", True, True)], \
        [r.detail for r in rec.final()]
    assert svc.status()["ctr1"].actions_last_hour == 2 and svc.status()["ctr1"].capped is None
    # the reconnect keeps the MAC the box answered from before the disconnect, on both engines
    assert endpoint(b.container, b.network)["MacAddress"] == answered
    if lab.engine.name == "docker":
        assert endpoint(b.container, b.network)["MacAddress"] == b.mac


def test_disconnected_container_comes_back_with_same_ipv4_ipv6_and_mac(engine_healthy_after):
    lab = engine_healthy_after
    b = lab.box("ctr2")
    before = endpoint(b.container, b.network)
    memory = mac_memory(lab, "ctr2")   # the agent's MAC memory, from ARP/NDP answers before the fault
    assert memory == {b.ipv4: b.mac, b.ipv6: b.mac}
    docker.from_env().networks.get(b.network).disconnect(b.container, force=True)
    assert endpoint(b.container, b.network) is None and not ping_ok(lab, b.ipv4)  # an l2 freeze
    t = target(lab, "ctr2")
    plan = PlannedAction("ctr2", "reconnect_network", "manual", t, False, -1, time.time())
    out = execute(plan, ActionContext(default_docker_factory(), FAST, known_macs=lambda box: memory))
    assert out.ok, out.detail
    after = endpoint(b.container, b.network)
    assert (after["IPAddress"], after["GlobalIPv6Address"]) == (b.ipv4, b.ipv6)
    assert after["MacAddress"] == before["MacAddress"] == b.mac
    assert "announced garp" in out.detail and f"na {b.ipv6}" in out.detail
    assert wait_for(lambda: box_healthy(lab, "ctr2"), 10)


def test_reconnect_of_a_connected_container_keeps_its_aliases(healthy_after):
    lab = healthy_after
    b = lab.box("ctr2")
    cli = docker.from_env()
    net = cli.networks.get(b.network)
    net.disconnect(b.container, force=True)
    net.connect(b.container, ipv4_address=b.ipv4, ipv6_address=b.ipv6, aliases=["vobox-alias"])
    out = execute(PlannedAction("ctr2", "reconnect_network", "manual", target(lab, "ctr2"), False, -1, 0.0),
                  ActionContext(default_docker_factory(), FAST))
    assert out.ok, out.detail
    after = endpoint(b.container, b.network)
    assert "vobox-alias" in after["Aliases"] and f"mac unchanged {b.mac}" in out.detail
    assert (after["IPAddress"], after["GlobalIPv6Address"]) == (b.ipv4, b.ipv6)


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_announce_updates_a_stale_neighbour_entry_on_the_monitor(healthy_after, family):
    lab = healthy_after
    b = lab.box("ctr1")
    address = getattr(b, family)
    assert ping_ok(lab, address)
    bogus = "02:00:5e:00:53:99"
    subprocess.run(["ip", "-n", lab.monitor_ns, "neigh", "replace", address, "lladdr", bogus, "dev",
                    lab.monitor_link, "nud", "stale"], check=True)
    time.sleep(1.2)  # past the kernel's ARP locktime, or the update is ignored
    assert neigh_mac(lab, address) == bogus
    pid = ctr_state(b.container)["Pid"]
    sent = announce_from_pid(pid, b.mac, b.ipv4 if family == "ipv4" else None,
                             b.ipv6 if family == "ipv6" else None)
    assert sent and sent[0].startswith("garp" if family == "ipv4" else "na")
    assert wait_for(lambda: neigh_mac(lab, address) == b.mac, 5), neigh_mac(lab, address)


def _l3_freeze(lab, name):
    from lab.faults import NFT_L3
    subprocess.run(["ip", "netns", "exec", lab.box(name).netns, "nft", "-f", "-"], input=NFT_L3, text=True,
                   check=True)


def test_vm_with_l3_freeze_gets_its_command_run(healthy_after):
    lab = healthy_after
    from lab.faults import NFT_TABLE
    vm = lab.box("vm1")
    _l3_freeze(lab, "vm1")
    assert not ping_ok(lab, vm.ipv4)
    cmd = ("ip", "netns", "exec", vm.netns, "nft", "delete", "table", "inet", NFT_TABLE)
    svc, rec = run_service(lab, [target(lab, "vm1", command=cmd, ladder=("command",))])
    try:
        freeze(svc, "vm1", "l3")
        assert wait_for(lambda: rec.final(), 20)
    finally:
        svc.stop()
    r, = rec.final()
    assert (r.action, r.ok, r.recovered) == ("command", True, True), r.detail
    assert "exit 0" in r.detail
    assert ping_ok(lab, vm.ipv4)


def test_box_that_never_recovers_stops_at_the_cap(healthy_after, tmp_path):
    lab = healthy_after
    vm = lab.box("vm1")
    _l3_freeze(lab, "vm1")
    marker = tmp_path / "ran"
    cmd = (sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')", str(marker),
           "{box} {ipv4}")
    policy = RemediationPolicy(cooldown_s=0, verify_s=0.3, max_per_box_per_hour=3, max_per_hour=20)
    svc, rec = run_service(lab, [target(lab, "vm1", command=cmd, ladder=("command",))], policy=policy,
                           history_path=str(tmp_path / "history.json"))
    try:
        freeze(svc, "vm1", "l3")
        assert wait_for(lambda: svc.status()["vm1"].capped, 20)
        time.sleep(2.0)  # it must stay stopped
        status = svc.status()["vm1"]
    finally:
        svc.stop()
    assert len(json.loads((tmp_path / "history.json").read_text())["actions"]) == 3
    assert marker.read_text().splitlines() == [f"vm1 {vm.ipv4}"] * 3
    caps = [r for r in rec.final() if r.detail.startswith("cap reached")]
    assert len(caps) == 1 and caps[0].outcome == "refused" and "max_per_box_per_hour=3" in caps[0].reason
    assert [(r.ok, r.recovered) for r in rec.final() if r not in caps] == [(True, False)] * 3
    assert status.actions_last_hour == 3 and status.capped.startswith("cap reached")
    assert not ping_ok(lab, vm.ipv4)


def test_dry_run_changes_nothing(engine_healthy_after):
    lab = engine_healthy_after
    b = lab.box("ctr1")
    c = docker.from_env().containers.get(b.container)
    c.pause()
    started = ctr_state(b.container)["StartedAt"]
    svc, rec = run_service(lab, [target(lab, "ctr1", ladder=("restart_container",))],
                           policy=RemediationPolicy(dry_run=True, verify_s=0.5, cooldown_s=0))
    try:
        freeze(svc, "ctr1", "l4")
        assert wait_for(lambda: rec.final(), 10)
    finally:
        svc.stop()
    r = rec.final()[0]
    assert (r.dry_run, r.outcome, r.ok, r.recovered) == (True, "dry_run", False, False)
    assert svc.status()["ctr1"].actions_last_hour == 0
    assert r.detail.startswith("dry-run: would unpause (if paused) and restart container")
    state = ctr_state(b.container)
    assert state["Paused"] and state["StartedAt"] == started
    assert not tcp_ok(lab, b.ipv4, b.tcp_ports[0])


def test_docker_unreachable_is_deferred_then_done_when_it_is_back(healthy_after, docker_proxy):
    lab = healthy_after
    b = lab.box("ctr2")
    docker.from_env().containers.get(b.container).pause()
    docker_proxy.stop()  # "dockerd" gone for the agent; the shared engine keeps running for everyone else

    def factory():
        return docker.DockerClient(base_url=docker_proxy.base_url, version="1.41", timeout=30)

    svc, rec = run_service(lab, [target(lab, "ctr2", ladder=("restart_container",))], docker_factory=factory)
    try:
        t0 = time.monotonic()
        freeze(svc, "ctr2", "l4")
        assert time.monotonic() - t0 < 0.2  # the probe cycle never waits for Docker
        assert wait_for(lambda: any(r.deferred for r in rec.records), 10)
        deferred = next(r for r in rec.records if r.deferred)
        assert deferred.ok is False and "unreachable" in deferred.deferred_reason
        assert svc.status()["ctr2"].busy.startswith("deferred restart_container")
        assert svc.status()["ctr2"].actions_last_hour == 0
        docker_proxy.start()
        assert wait_for(lambda: rec.final(), 30)
    finally:
        svc.stop()
    r, = rec.final()
    assert (r.action, r.ok, r.recovered) == ("restart_container", True, True), r.detail
    assert not ctr_state(b.container)["Paused"]


def test_actions_refuse_boxes_without_the_named_container_or_network():
    t = RemediationTarget(box="vm9", kind="vm", ipv4="192.0.2.9")
    for action in ("reconnect_network", "restart_container", "command"):
        out = execute(PlannedAction("vm9", action, "manual", t, False, -1, 0.0),
                      ActionContext(lambda: pytest.fail("docker must not be touched"), FAST))
        assert not out.ok and "refused" in out.detail


def test_unexpected_errors_escape_execute():
    t = RemediationTarget(box="c", kind="container", container="x", network="n")

    def broken():
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        execute(PlannedAction("c", "restart_container", "manual", t, False, -1, 0.0), ActionContext(broken, FAST))
