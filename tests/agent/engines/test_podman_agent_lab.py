"""The whole agent (`vobox-agent --netns MONITOR run`) on a real Podman 4.3: a fault at every layer, detected at
its layer and repaired by the ladder, with the box's MAC before and after each repair.

Faults, each inside the box's own network namespace (nsenter with the host's nft) or through the engine:
l7 `podman pause`; l4 an nft rule dropping TCP to the service port; l2 `podman network disconnect`; l3 an
nft table dropping everything but ARP/NDP. Ladder: reconnect_network, restart_container. Run with -s to see
the figures (fault -> freeze -> repaired, in seconds, and the MACs).
"""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import time

import docker
import pytest

from tests.agent.agent_proc import AGENT_BIN, AgentProc
from tests.agent.engines import podman_lab

pytestmark = pytest.mark.lab

BOX = "pbox"


@pytest.fixture(scope="module")
def plab():
    why = podman_lab.missing()
    if why:
        pytest.skip(why)
    with podman_lab.podman_lab() as lab:
        yield lab


def _config(lab, directory, name, n=20, remediation="") -> str:
    ipv4, ipv6 = lab.address(n)
    text = f"""[agent]
interval = 1
timeout = 0.5
jitter = 0
state_dir = "{directory}/state"

[freeze]
fail_cycles = 2
recover_cycles = 2

[influxdb]
url = "http://127.0.0.1:9"

[engine]
socket = "{lab.url}"

[remediation]
enabled = true
cooldown = 0
verify = 4
max_per_box_per_hour = 30
max_per_hour = 60
stop_timeout = 1
{remediation}
[[box]]
name = "{BOX}"
kind = "container"
ipv4 = "{ipv4}"
ipv6 = "{ipv6}"
tcp_ports = [80]
container = "{name}"
network = "{lab.network}"
remediate = ["reconnect_network", "restart_container"]
"""
    path = f"{directory}/agent.toml"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def _mac(lab, name):
    c = docker.DockerClient(base_url=lab.url, timeout=30)
    nets = c.api.inspect_container(name)["NetworkSettings"]["Networks"]
    return (nets.get(lab.network) or {}).get("MacAddress")


def _pid(lab, name):
    return docker.DockerClient(base_url=lab.url, timeout=30).api.inspect_container(name)["State"]["Pid"]


def _nft(lab, name, *rules):
    pid = str(_pid(lab, name))
    for rule in rules:
        podman_lab._run("nsenter", "-t", pid, "-n", "nft", *rule)


FAULTS = {   # restarts first: until a reconnect passes the MAC (then static), every Podman start picks a new one
    "l7": lambda lab, name: lab.podman("pause", name),
    "l4": lambda lab, name: _nft(lab, name, ("add", "table", "inet", "vbf"),
                                 ("add", "chain", "inet", "vbf", "in", "{ type filter hook input priority 0; }"),
                                 ("add", "rule", "inet", "vbf", "in", "tcp", "dport", "80", "drop")),
    "l2": lambda lab, name: lab.podman("network", "disconnect", "-f", lab.network, name),
    "l3": lambda lab, name: _nft(lab, name, ("add", "table", "inet", "vbf"),
                                 ("add", "chain", "inet", "vbf", "in", "{ type filter hook input priority 0; }"),
                                 ("add", "rule", "inet", "vbf", "in", "icmpv6", "type",
                                  "{ nd-neighbor-solicit, nd-neighbor-advert }", "accept"),
                                 ("add", "rule", "inet", "vbf", "in", "drop")),
}


def test_a_fault_at_every_layer_is_detected_and_repaired_on_podman(plab, tmp_path):
    name = plab.run_box(20)
    agent = AgentProc(plab, _config(plab, str(tmp_path), name), str(tmp_path / "agent.log"))
    figures = []
    try:
        agent.wait_state(BOX, "up", 60)
        for layer, fault in FAULTS.items():
            agent.wait_until("settled", lambda st: st["boxes"][BOX]["state"] == "up"
                             and not (st["boxes"][BOX].get("remediation") or {}).get("reason"), 60)
            mac_before = _mac(plab, name)
            log_from = len(agent.log_text())
            t0 = time.monotonic()
            fault(plab, name)
            st = agent.wait_until(f"{layer} freeze", lambda st: st["boxes"][BOX]["state"] == "frozen", 60)
            t_frozen = time.monotonic() - t0
            assert st["boxes"][BOX]["layer"] == layer, st["boxes"][BOX]
            agent.wait_state(BOX, "up", 90)
            t_up = time.monotonic() - t0
            mac_after = _mac(plab, name)
            done = re.findall(r"action (\w+) done: (.*)", agent.log_text()[log_from:])
            assert done, agent.log_text()[log_from:][-2000:]
            figures.append((layer, round(t_frozen, 1), round(t_up, 1), [a for a, _ in done], mac_before, mac_after,
                            done[-1][1][:200]))
            if layer == "l2":
                assert done[0][0] == "reconnect_network" and mac_after == mac_before, done
            elif layer in ("l7", "l4"):   # a Podman restart gave a new MAC: said as ours, announced
                assert done[-1][0] == "restart_container" and mac_after != mac_before, done
                assert f"MAC CHANGED on {plab.network} {mac_before} -> {mac_after} by the restart (ours)" \
                    in done[-1][1] and "announced garp" in done[-1][1], done
            else:   # after the reconnect passed it, the MAC is the container's static MAC: restarts keep it
                assert done[-1][0] == "restart_container" and mac_after == mac_before, done
    finally:
        agent.stop()
        for f in figures:
            print("FIGURE", *f)
    assert [f[0] for f in figures] == ["l7", "l4", "l2", "l3"]


def test_maintenance_and_the_webhook_path_on_podman(plab, tmp_path):
    """A box in maintenance is not judged; once it ends, the paused container is an l7 freeze that an alert (the
    webhook, Alertmanager's payload) repairs with restart_container on Podman; automatic remediation is off."""
    from tests.remediations.test_webhook_lab import TOKEN, Client, alertmanager

    name = plab.run_box(21)
    token = tmp_path / "token"
    token.write_text(TOKEN)
    os.chmod(token, 0o600)
    port = random.randint(20000, 60000)
    cfg = _config(plab, str(tmp_path), name, n=21, remediation=f'auto = false\nwebhook_listen = "127.0.0.1:{port}"\n'
                                                              f'webhook_token_file = "{token}"\n')
    agent = AgentProc(plab, cfg, str(tmp_path / "agent.log"))
    try:
        agent.wait_state(BOX, "up", 60)
        subprocess.run([AGENT_BIN, "maintenance", "start", "-c", cfg, BOX, "--for", "10m", "--reason", "podman lab"],
                       check=True, capture_output=True, timeout=60)
        agent.wait_state(BOX, "maintenance", 30)
        plab.podman("pause", name)
        agent.wait_cycles(4)
        assert agent.wait_state(BOX, "maintenance", 5)["boxes"][BOX]["maintenance"]["reason"] == "podman lab"
        subprocess.run([AGENT_BIN, "maintenance", "end", "-c", cfg, BOX], check=True, capture_output=True,
                       timeout=60)
        st = agent.wait_state(BOX, "frozen", 60)
        assert st["boxes"][BOX]["layer"] == "l7" and st["boxes"][BOX]["container"]["state"] == "paused"
        agent.wait_cycles(3)
        assert "action restart_container done" not in agent.log_text()   # auto is off: nothing acts on its own
        code, body = Client(plab, port).post(alertmanager(BOX, action="restart_container"))
        assert (code, body["queued"]) == (202, [{"box": BOX, "action": "restart_container", "outcome": "queued"}]), \
            json.dumps(body)
        agent.wait_until("the alert's restart done", lambda _st: re.search(
            r"action restart_container done: unpaused; restarted", agent.log_text()) is not None, 60)
        agent.wait_state(BOX, "up", 60)
    finally:
        agent.stop()
