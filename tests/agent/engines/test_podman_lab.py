"""Every container feature the engine package gives, on a real rootful Podman 4.3 (its Docker-compatible API).

The set-up is tests/agent/engines/podman_lab.py (lab-owned CONTAINERS_CONF, service socket, veth + macvlan).
"""
from __future__ import annotations

import threading
import time

import docker
import pytest

from agent.engines import identify_client
from agent.engines.watcher import ContainerStates, DockerEventWatcher
from remediations import ActionContext, PlannedAction, RemediationPolicy, RemediationTarget, execute
from tests.agent.engines import podman_lab

pytestmark = pytest.mark.lab


def wait_for(cond, timeout_s=30.0, step_s=0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(step_s)
    return cond()


@pytest.fixture(scope="module")
def plab():
    why = podman_lab.missing()
    if why:
        pytest.skip(why)
    with podman_lab.podman_lab() as lab:
        yield lab


def client(lab):
    return docker.DockerClient(base_url=lab.url, timeout=60)


def mac_of(lab, name):
    ep = client(lab).api.inspect_container(name)["NetworkSettings"]["Networks"][lab.network]
    return ep["MacAddress"].lower(), ep["IPAddress"], ep["GlobalIPv6Address"]


def target(lab, n, name, **kw):
    ipv4, ipv6 = lab.address(n)
    return RemediationTarget(box=f"b{n}", kind="container", ipv4=ipv4, ipv6=ipv6, container=name,
                             network=lab.network, **kw)


def act(lab, action, t, known_macs=None):
    return execute(PlannedAction(t.box, action, "manual", t, False, -1, 0.0),
                   ActionContext(lambda: client(lab), RemediationPolicy(), known_macs))


def arp_mac(lab, ipv4):
    """The MAC the monitor namespace's neighbour table holds for IPV4 after a ping (what the LAN's caches see)."""
    lab.ns("ping", "-c", "1", "-W", "1", ipv4)
    out = lab.ns("ip", "neigh", "show", ipv4).stdout.split()
    return out[out.index("lladdr") + 1].lower() if "lladdr" in out else None


def test_the_engine_is_identified_as_podman(plab):
    got = identify_client(client(plab))
    assert got.engine == "podman" and got.version.startswith("4.") and got.api == "1.41"


def test_reconnect_keeps_ipv4_ipv6_and_mac(plab):
    name = plab.run_box(10)
    t = target(plab, 10, name)
    before = mac_of(plab, name)
    assert arp_mac(plab, t.ipv4) == before[0]
    # still connected (a freeze inside the namespace): the MAC comes from its endpoint
    out = act(plab, "reconnect_network", t)
    assert out.ok, out.detail
    assert mac_of(plab, name) == before
    assert f"mac unchanged {before[0]} (passed on connect, verified; from its endpoint)" in out.detail
    # disconnected (the L2 freeze): the MAC comes from the agent's MAC memory (what ARP answered before)
    client(plab).networks.get(plab.network).disconnect(name, force=True)
    out = act(plab, "reconnect_network", t, known_macs=lambda box: {t.ipv4: before[0].upper()} if box == "b10" else {})
    assert out.ok, out.detail
    after = mac_of(plab, name)
    assert after == before
    assert f"mac unchanged {before[0]} (passed on connect, verified; from the MAC last seen answering ARP/NDP)" \
        in out.detail
    assert "announced garp" in out.detail
    assert arp_mac(plab, t.ipv4) == before[0]
    # IPv6 answers once the container's duplicate address detection has passed (about a second)
    assert wait_for(lambda: plab.ns("ping", "-6", "-c", "1", "-W", "1", t.ipv6).returncode == 0, 15)


def test_restart_changes_the_mac_on_podman_and_says_so_and_announces_it(plab):
    name = plab.run_box(11)
    t = target(plab, 11, name)
    old = mac_of(plab, name)[0]
    assert arp_mac(plab, t.ipv4) == old
    out = act(plab, "restart_container", t)
    assert out.ok, out.detail
    new = mac_of(plab, name)[0]
    assert new != old   # netavark: a new random MAC at every start
    assert f"MAC CHANGED on {plab.network} {old} -> {new} by the restart (ours)" in out.detail
    assert "announced garp" in out.detail and "na " in out.detail
    # the gratuitous ARP updated the LAN side's cache without it asking
    got = plab.ns("ip", "neigh", "show", t.ipv4).stdout.lower()
    assert new in got, got


def test_exec_step_runs_inside_the_container(plab):
    name = plab.run_box(12)
    t = target(plab, 12, name, exec=("/bin/busybox", "sh", "-c", "echo hello-{box}"))
    out = act(plab, "exec", t)
    assert out.ok and "hello-b12" in out.detail, out.detail


def test_checks_run_in_the_container_through_nsenter(plab):
    from agent.checks import Check
    from agent.checks.runner import BoxChecks, CheckRunner, ContainerPids

    name = plab.run_box(13)
    plab.podman("exec", name, "/bin/busybox", "touch", "/ok")
    pids = ContainerPids(lambda: client(plab))
    runner = CheckRunner([BoxChecks("b13", name, (Check("path", "/ok"), Check("path", "/missing")))], pids, 5.0)
    try:
        got = runner.run(["b13"])["b13"]
    finally:
        runner.close()
    assert [r.ok for r in got] == [True, False], got
    # the PID Podman reports is the container's PID 1 on the host (its cgroup names the container)
    cid = client(plab).api.inspect_container(name)["Id"]
    with open(f"/proc/{pids.pid(name)}/cgroup") as fh:
        assert cid in fh.read()


def test_events_are_decoded_and_a_service_restart_is_one_resync(plab):
    """Pause and disconnect/connect reach the state cache and are recorded (Podman's network events name no
    network); a restart of the Podman service leaves the containers running (conmon) and is one stream gap: one
    `resync` record per box, no failures; the stream is followed again after it."""
    name = plab.run_box(14)
    t = target(plab, 14, name)
    records = []
    states = ContainerStates()
    w = DockerEventWatcher([t], lambda: client(plab), records.append, retry_s=0.5, states=states)
    w.start()
    try:
        assert w.connected.wait(30) and w.identity is not None and w.identity.engine == "podman"
        c = client(plab)
        c.containers.get(name).pause()
        assert wait_for(lambda: states.snapshot()["b14"].state == "paused")
        c.containers.get(name).unpause()
        c.networks.get(plab.network).disconnect(name, force=True)
        assert wait_for(lambda: any(r.event == "network_disconnect" and r.box == "b14" for r in records))
        c.networks.get(plab.network).connect(name, ipv4_address=t.ipv4, ipv6_address=t.ipv6)
        assert wait_for(lambda: any(r.event == "network_connect" and r.box == "b14" for r in records))
        assert states.snapshot()["b14"].state == "running"
        # the service restarts: a gap, then one resync
        n = len(records)
        plab.stop_service()
        assert wait_for(lambda: not w.connected.is_set(), 15)
        plab.start_service()
        assert wait_for(lambda: w.connected.is_set(), 30)
        time.sleep(1.0)
        after = records[n:]
        assert [r.event for r in after] == ["resync"], [(r.event, r.detail) for r in after]
        assert after[0].container_state == "running" and not after[0].operator
        assert states.snapshot()["b14"].state == "running"
        # the stream still follows after the gap: a stop reaches the cache
        plab.podman("stop", "-t", "1", name)
        assert wait_for(lambda: states.snapshot()["b14"].state == "exited")
    finally:
        w.stop()


def test_health_is_read_from_inspect_where_podman_sends_no_health_events(plab):
    name = plab.run_box(15, "--health-cmd", '["/bin/busybox","test","-e","/ok"]', "--health-retries", "1",
                        "--health-interval", "disable")
    t = target(plab, 15, name)
    records = []
    states = ContainerStates()
    w = DockerEventWatcher([t], lambda: client(plab), records.append, retry_s=0.5, states=states,
                           health_poll_s=0.2)
    w.start()
    try:
        assert w.connected.wait(30)
        assert states.snapshot()["b15"].health == "starting"
        plab.podman("healthcheck", "run", name, check=False)   # no /ok: unhealthy (the lab drives the HEALTHCHECK)
        assert wait_for(lambda: states.snapshot()["b15"].health == "unhealthy", 15)
        plab.podman("exec", name, "/bin/busybox", "touch", "/ok")
        plab.podman("healthcheck", "run", name)
        assert wait_for(lambda: states.snapshot()["b15"].health == "healthy", 15)
        assert [r.detail for r in records if r.event == "health_status"]
    finally:
        w.stop()


def test_discovery_by_label_and_network(plab):
    from agent.core import config
    from agent.discovery import DockerDiscovery

    plab.run_box(16, "--label", "vobox.monitor=true")
    cfg = config.loads(f'[influxdb]\nurl = "http://127.0.0.1:9"\n[discovery]\ndocker = true\n'
                       f'networks = ["{plab.network}"]\n')
    found = DockerDiscovery(cfg)
    records: list = []
    w = DockerEventWatcher([], lambda: client(plab), records.append, retry_s=0.5, follow=found.follow)
    found.set_targets = w.set_targets
    w.start()
    try:
        assert found.synced.wait(30)
        names = {b.container for b in found.boxes()[1]}
        assert f"{plab.tag}-c16" in names
        late = plab.run_box(17)   # no label, on the network: a box by network, live
        assert wait_for(lambda: late in {b.container for b in found.boxes()[1]})
        box = next(b for b in found.boxes()[1] if b.container == late)
        assert (box.ipv4, box.network) == (plab.address(17)[0], plab.network)
        plab.podman("rm", "-f", "-t", "0", late)
        assert wait_for(lambda: late not in {b.container for b in found.boxes()[1]})
    finally:
        w.stop()


def test_decoder_reads_a_live_podman_stream(plab):
    """The same kinds the captured stream gives (tests/data/podman-4.3-events.jsonl), live."""
    from agent.engines import ENGINES

    c = client(plab)
    got = []
    stream = c.api.events(since=f"{time.time():.3f}", filters={"type": ["container", "network"]}, decode=True)
    reader = threading.Thread(target=lambda: [got.append(e) for e in stream], daemon=True)
    reader.start()
    time.sleep(0.3)
    name = plab.run_box(18)
    plab.podman("restart", "-t", "0", name)
    plab.podman("rm", "-f", "-t", "0", name)
    time.sleep(1.0)
    stream.close()
    kinds = [e.kind for e in (ENGINES["podman"].decode(r) for r in got) if e is not None and e.name == name]
    assert kinds[:2] == ["create", "start"] and kinds[-1] == "destroy", kinds
    assert "restart" in kinds and "die" in kinds



def test_a_resync_reads_an_exit_from_podmans_history(plab):
    """An exit while the agent was away is read at the resync with the engine's history around it (Podman's
    `until` returns nothing: a `since` stream read for a moment): the `podman kill` before it names it operator
    intent. (`podman stop` is not used: 4.3 often emits no `stop` event, see the operator guide.)"""
    name = plab.run_box(19)
    plab.podman("kill", name)
    t = target(plab, 19, name)
    states = ContainerStates()
    w = DockerEventWatcher([t], lambda: client(plab), lambda _r: None, retry_s=0.5, states=states)
    w.start()
    try:
        assert w.connected.wait(30)
        st = states.snapshot()["b19"]
        assert st.state == "exited" and st.operator_stopped, st
        assert st.reason.startswith("stopped by operator: podman kill (signal not reported by the engine) at "), \
            st.reason
    finally:
        w.stop()
