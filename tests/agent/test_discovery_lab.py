"""Lab test of discovery: a real agent process, the real engine, real containers on the lab's macvlan network.

A labelled container started after the agent is probed within two cycles; removed, it leaves
the box set; unlabelled containers (on the lab's network and on another network) never become
boxes; `vobox-agent discover` prints what the engine reports and that passes check-config.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.agent.agent_proc import AGENT_BIN, AgentProc, errors_in_log, query, read_status, write_config

# subnet, an address in it: never the same bridge subnet on both engines
OTHER_SUBNETS = {"docker": ("198.18.0.0/26", "198.18.0.5"), "podman": ("198.18.0.64/26", "198.18.0.69")}


def _other_network(lab):
    """An internal bridge network that is not the lab's (in 198.18.0.0/24: the lab leaves it alone)."""
    name = f"vbl-{lab.run_id}-other"
    subprocess.run(lab.engine.cmd("network", "create", "--internal", "--subnet", OTHER_SUBNETS[lab.engine.name][0],
                                  "--label", f"vobox-lab={lab.run_id}", name), check=True, capture_output=True,
                   timeout=60)
    yield name
    subprocess.run(lab.engine.cmd("network", "rm", name), capture_output=True, timeout=60)


@pytest.fixture
def other_network(lab):
    """_other_network on the dockerd lab."""
    yield from _other_network(lab)


@pytest.fixture
def engine_other_network(engine_lab):
    """_other_network on each engine's lab."""
    yield from _other_network(engine_lab)


def _run(lab, index: int, network: str, labels: dict[str, str], ip: tuple[str, str | None]) -> str:
    """docker run the lab's box image as vbl-RUN-ctrINDEX (so the lab's cleanup removes it too); its name."""
    from lab.image import ensure_image

    name = f"vbl-{lab.run_id}-ctr{index}"
    args = [*lab.engine.cmd("run"), "-d", "--name", name, "--network", network, "--ip", ip[0], "--restart", "no",
            "--label", f"vobox-lab={lab.run_id}"]
    if ip[1]:
        args += ["--ip6", ip[1], "--sysctl", "net.ipv6.conf.all.accept_dad=0"]
    for k, v in labels.items():
        args += ["--label", f"{k}={v}"]
    subprocess.run([*args, ensure_image(lab.engine), "1093", "8084"], check=True, capture_output=True, timeout=120)
    return name


def _rm(lab, name: str) -> None:
    subprocess.run(lab.engine.rm_force(name), capture_output=True, timeout=60)


def test_a_labelled_container_started_later_is_probed_within_two_cycles_and_leaves_when_removed(
        clean_engine_lab, agents, engine_other_network, tmp_path):
    other_network = engine_other_network
    lab = clean_engine_lab
    db = f"t_discovery_lab_{lab.engine.name}"
    label = f"vobox.monitor={lab.run_id}"   # this lab's own label: other labs on the machine are never seen
    cfg = write_config(lab, str(tmp_path), database=db,
                       sections={"discovery": {"docker": True, "label": label, "tcp_ports": [1093],
                                               "remediate": ["reconnect_network"]}})
    prefix4, prefix6 = lab.ipv4_subnet.rsplit(".", 1)[0], lab.ipv6_subnet.split("/")[0]
    new4, new6 = f"{prefix4}.80", f"{prefix6}80"
    names: list[str] = []
    a = AgentProc(lab, cfg, os.path.join(str(tmp_path), "agent.log"))
    agents.append(a)
    try:
        configured = set(lab.box_names())
        a.wait_until("configured boxes up", lambda st: all(st["boxes"].get(b, {}).get("state") == "up"
                                                           for b in configured), 30)
        # outside the filter: unlabelled on the lab's macvlan network, and unlabelled on another network
        names.append(_run(lab, 81, lab.network, {"vobox.ports": "1093"}, (f"{prefix4}.81", None)))
        names.append(_run(lab, 82, other_network, {"vobox.monitor": "true"}, (OTHER_SUBNETS[lab.engine.name][1],
                                                                              None)))
        labelled = _run(lab, 80, lab.network, {"vobox.monitor": lab.run_id, "vobox.ports": "1093,8084"},
                        (new4, new6))
        names.append(labelled)
        # Discovery's latency counts from when the container can answer: on Podman its IPv6 address stays
        # tentative (RFC 4862 5.4 DAD: netavark sets the address up before --sysctl accept_dad=0 applies) for
        # 1-2 s, during which it answers no NDP, and the agent rightly sees it silent; dockerd sets IFA_F_NODAD.
        from remediations.announce import wait_ipv6_usable
        pid = int(subprocess.run([*lab.engine.cmd("inspect"), "-f", "{{.State.Pid}}", labelled], capture_output=True,
                                 text=True, check=True, timeout=30).stdout)
        dad = wait_ipv6_usable(pid, new6, timeout_s=5.0)
        t0 = time.time()
        cycles: list[float] = []

        def judged(st: dict) -> bool:
            if st["updated_s"] > t0 and (not cycles or st["updated_s"] != cycles[-1]):
                cycles.append(st["updated_s"])
            b = st["boxes"].get(labelled)
            return bool(b and b["judged_s"] and b["judged_s"] > t0 and b["state"] == "up")
        st = a.wait_until("the labelled container probed", judged, 20)
        b = st["boxes"][labelled]
        starts = [c for c in cycles if c <= b["judged_s"]]
        print(f"discovered container judged up {b['judged_s'] - t0:.2f} s after `docker run` returned and {dad}, "
              f"in cycle {len(starts)} after it")
        assert len(starts) <= 2, f"judged in cycle {len(starts)} after the container started: {cycles}"
        assert b["kind"] == "container" and {"icmp", "arp", "tcp"} <= set(b["rtt_ms"]), b
        assert b["container"]["state"] == "running", b
        # `discover` sees it with the engine's addresses; its TOML passes check-config
        proc = subprocess.run([AGENT_BIN, "discover", "-c", cfg], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert f'name = "{labelled}"' in proc.stdout and f'ipv4 = "{new4}"' in proc.stdout, proc.stdout
        assert f'ipv6 = "{new6}"' in proc.stdout and "tcp_ports = [1093, 8084]" in proc.stdout, proc.stdout
        mac = subprocess.run([*lab.engine.cmd("inspect"), "-f", f"{{{{(index .NetworkSettings.Networks \"{lab.network}\")"
                              ".MacAddress}}", labelled], capture_output=True, text=True, check=True).stdout.strip()
        assert f"mac {mac}" in proc.stdout and names[0] not in proc.stdout and names[1] not in proc.stdout
        fixed = tmp_path / "fixed.toml"
        fixed.write_text(lab.agent_config(state_dir=str(tmp_path / "fixed")) + "\n" + proc.stdout)
        check = subprocess.run([sys.executable, "-m", "agent", "check-config", "-c", str(fixed)],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
        # removed: leaves the box set
        _rm(lab, labelled)
        t_rm = time.time()
        a.wait_until("the removed container gone", lambda st: labelled not in st["boxes"] and st["updated_s"] > t_rm,
                     20)
        a.wait_cycles(2)
        st = read_status(a.state_dir)
        assert set(st["boxes"]) == configured, st["boxes"].keys()   # never the unlabelled ones
        rows = query(lab, f"SELECT \"detail\", \"event\" FROM container_event WHERE box = '{labelled}'", db)
        ours = [r["event"] for r in rows if r["event"] in ("discovered", "forgotten")]
        assert ours == ["discovered", "forgotten"], rows   # besides the container's own Docker events
        probed = query(lab, "SELECT count(\"ok\") FROM probe WHERE box =~ /ctr8[12]$/", db)
        assert probed == [], probed   # the containers outside the filter were never probed
        assert not errors_in_log(a.log_text()), a.log_text()[-3000:]
        assert "discovery: box" in a.log_text() and f"{labelled} left" in a.log_text()
    finally:
        for n in names:
            _rm(lab, n)


def test_inherited_image_labels_and_a_second_network_keep_the_box_live_and_across_a_restart(
        clean_lab, agents, other_network, tmp_path):
    """Issue 28: a container whose IMAGE carries its own vobox.* labels (inherited, cannot be removed) is a box,
    with one warning naming the ignored labels; connected to a second network while it runs it stays the same
    box (one warning naming vobox.network), and a restarted agent finds the same box."""
    from lab.image import ensure_image

    lab = clean_lab
    db = "t_discovery_inherited"
    label = f"vobox.monitor={lab.run_id}"
    image = f"vbl-{lab.run_id}-inherit:1"
    build = tmp_path / "build"
    build.mkdir()
    (build / "Dockerfile").write_text(f"FROM {ensure_image()}\nLABEL vobox.version=2.3.1 "
                                      f"vobox.maintainer=alice-vobox@example.org vobox-lab={lab.run_id}\n")
    subprocess.run(["docker", "build", "-q", "-t", image, str(build)], check=True, capture_output=True, timeout=300)
    cfg = write_config(lab, str(tmp_path), database=db,
                       sections={"discovery": {"docker": True, "label": label, "tcp_ports": [1093],
                                               "remediate": ["reconnect_network"]}})
    prefix4 = lab.ipv4_subnet.rsplit(".", 1)[0]
    name = f"vbl-{lab.run_id}-ctr83"
    agent_ok = False
    try:
        subprocess.run(["docker", "run", "-d", "--name", name, "--network", lab.network, "--ip", f"{prefix4}.83",
                        "--restart", "no", "--label", label, image, "1093"], check=True, capture_output=True,
                       timeout=120)
        a = AgentProc(lab, cfg, os.path.join(str(tmp_path), "agent.log"))
        agents.append(a)
        st = a.wait_until("the inherited-label container up", lambda s: s["boxes"].get(name, {}).get("state") == "up",
                          30)
        assert st["boxes"][name]["kind"] == "container"
        subprocess.run(["docker", "network", "connect", other_network, name], check=True, capture_output=True,
                       timeout=60)
        a.wait_cycles(4)
        st = read_status(a.state_dir)
        assert st["boxes"][name]["state"] == "up", st["boxes"][name]   # still the same box, still probed
        assert a.stop() == 0
        log1 = a.log_text()
        ignored = [x for x in log1.splitlines() if "labels vobox.maintainer, vobox.version ignored" in x]
        assert len(ignored) == 1 and name in ignored[0], ignored
        assert not [x for x in log1.splitlines() if "not monitored" in x and name in x], log1[-2000:]
        # A restarted agent with this engine state: the same box, on the network it was created on.
        b = AgentProc(lab, cfg, os.path.join(str(tmp_path), "agent2.log"))
        agents.append(b)
        t_b = time.time()
        b.wait_until("the same box after a restart", lambda s: s["updated_s"] > t_b
                     and s["boxes"].get(name, {}).get("state") == "up", 30)
        b.wait_cycles(2)
        assert b.stop() == 0
        log2 = b.log_text()
        picked = [x for x in log2.splitlines() if "on several networks" in x and name in x]
        assert len(picked) == 1 and f"probing {lab.network}" in picked[0] and "vobox.network" in picked[0], picked
        assert not errors_in_log(log1) and not errors_in_log(log2)
        agent_ok = True
    finally:
        _rm(lab, name)
        subprocess.run(["docker", "rmi", image], capture_output=True, timeout=60)
    assert agent_ok
