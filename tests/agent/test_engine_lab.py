"""Containers as the real engine reports them: a box's container replaced by a new one of the same name.

A real agent process, the real engine, plain docker commands (what docker-compose v1 and admins do):
- compose v1 recreate: stop the old container, rename it to `<id>_<name>`, run the new one, remove the old;
- rename, run, remove later: rename the running container to `<name>.bak`, stop it, run the new one, and
  remove the old one a while later.
Each is followed by a pause of the NEW container, which must be detected (a freeze) and repaired (the
box's ladder, `restart_container`), and the old container's later events must never change the box.
"""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.agent.agent_proc import (
    AgentProc,
    errors_in_log,
    query,
    read_status,
    write_config,
)

pytestmark = pytest.mark.lab

FAIL_CYCLES = 2


def _docker(*argv: str) -> str:
    return subprocess.run(["docker", *argv], check=True, capture_output=True, text=True).stdout.strip()


def _id(container: str) -> str:
    return _docker("inspect", "-f", "{{.Id}}", container)


def _restore(lab, box: str, leftovers: list[str]) -> None:
    """Whatever happened: the lab's container for BOX runs under its name, the old ones are gone."""
    ctr = lab.box(box).container
    for old in leftovers:
        subprocess.run(["docker", "rm", "-f", old], capture_output=True)
    state = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", ctr], capture_output=True, text=True)
    if state.returncode != 0:
        lab.run_replacement(box)
    elif state.stdout.strip() == "paused":
        _docker("unpause", ctr)
    elif state.stdout.strip() != "running":
        _docker("start", ctr)
    lab.wait_box(box, timeout_s=30)


@pytest.mark.parametrize("how", ["compose-v1-recreate", "rename-run-rm"])
def test_replaced_container_is_the_box_and_its_pause_is_detected_and_repaired(clean_lab, agents, tmp_path,
                                                                             request, how):
    lab, box = clean_lab, "ctr1"
    db = "t_engine_" + how.replace("-", "_")
    ctr = lab.box(box).container
    cfg = write_config(lab, str(tmp_path), database=db, fail_cycles=FAIL_CYCLES,
                       sections={"remediation": {"enabled": True, "cooldown": 1, "verify": 2, "stop_timeout": 2}},
                       box_keys={box: {"remediate": ["restart_container"]}})
    a = AgentProc(lab, cfg, os.path.join(str(tmp_path), "agent.log"))
    agents.append(a)
    old_id = _id(ctr)
    leftovers: list[str] = []
    try:
        a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 30)
        a.wait_cycles(2)
        if how == "compose-v1-recreate":
            _docker("stop", "-t", "1", ctr)
            a.wait_state(box, "stopped", timeout_s=15)     # the old one still holds the name: an operator stop
            leftovers.append(f"{old_id[:12]}_{ctr}")
            _docker("rename", ctr, leftovers[0])
            t_new = time.time()
            new_id = lab.run_replacement(box)
            _docker("rm", leftovers[0])                    # compose removes the old one right away
        else:
            leftovers.append(f"{ctr}.bak")
            _docker("rename", ctr, leftovers[0])           # renamed away: no container holds the name
            st = a.wait_state(box, "stopped", timeout_s=15)
            assert "renamed by operator" in (st["boxes"][box]["container"]["reason"] or ""), st["boxes"][box]
            t_new = time.time()
            _docker("stop", "-t", "1", leftovers[0])       # the old one's events: not the box's
            new_id = lab.run_replacement(box)
        assert new_id and new_id != old_id
        st = a.wait_state(box, "up", timeout_s=30)
        assert st["boxes"][box]["container"]["state"] == "running"
        if how == "rename-run-rm":
            a.wait_cycles(2)
            _docker("rm", leftovers[0])                    # "later": the box must not notice
            a.wait_cycles(3)
            assert read_status(a.state_dir)["boxes"][box]["state"] == "up"
        # A pause of the NEW container: detected and repaired by the ladder, no help from the test.
        a.wait_cycles(2)
        t_pause = time.time()
        _docker("pause", ctr)
        st = a.wait_state(box, "frozen", timeout_s=20)
        assert st["boxes"][box]["container"]["state"] == "paused", st["boxes"][box]
        detect_s = time.time() - t_pause
        a.wait_state(box, "up", timeout_s=40)
        repair_s = time.time() - t_pause
        assert _docker("inspect", "-f", "{{.State.Status}}", ctr) == "running"
        print(f"\n{how}: pause of the new container detected in {detect_s:.1f} s, repaired in {repair_s:.1f} s")
        a.wait_cycles(4)   # the action's verify wait (2 s) ends before the agent stops
        assert a.stop() == 0
    finally:
        _restore(lab, box, leftovers)
    assert errors_in_log(a.log_text()) == []
    rem = query(lab, "SELECT * FROM remediation", db)
    assert [(r["box"], r["action"], r["ok"], r["recovered"]) for r in rem] == [(box, "restart_container", 1, 1)], rem
    events = query(lab, f"SELECT * FROM container_event WHERE box = '{box}'", db)
    assert not [e for e in events if e["event"] == "destroy"], events   # the old one's removal is not the box's
    starts = [e for e in events if e["event"] == "start"]
    assert starts and f"(id {new_id[:12]})" in starts[0]["detail"], starts
    # Once the new container holds the name, no event of the old one (its stop, its removal) reaches the box.
    late_old = [e for e in events if e["time"] >= t_new * 1000 - 1 and f"(id {old_id[:12]})" in e["detail"]]
    assert not late_old, late_old


class Impostor:
    """A second namespace with a macvlan on the lab's segment (the same parent) holding a box's addresses:
    another host answering ARP/NDP for them. Named so the lab's cleanup removes a crashed run's leftover."""

    def __init__(self, lab, box) -> None:
        self.ns, self.link = f"vbl-{lab.run_id}-imp", f"vbl{lab.run_id}i"
        self.mac = "06:00:5e:00:53:28"   # locally administered, unicast
        self.lab, self.box = lab, box

    def __enter__(self) -> Impostor:
        self.__exit__()
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        subprocess.run(["ip", "link", "add", self.link, "link", self.lab.parent_link, "address", self.mac,
                        "type", "macvlan", "mode", "bridge"], check=True)
        subprocess.run(["ip", "link", "set", self.link, "netns", self.ns], check=True)
        subprocess.run(["ip", "netns", "exec", self.ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0",
                        "net.ipv6.conf.default.accept_dad=0"], check=True)
        self.lab.vm_addresses(self.ns, self.link, self.box.ipv4, self.box.ipv6)
        subprocess.run(["ip", "-n", self.ns, "link", "set", self.link, "up"], check=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "delete", self.ns], capture_output=True)   # takes its macvlan with it


def test_a_second_host_holding_a_boxs_address_is_an_address_conflict_not_remediated(clean_lab, agents, tmp_path):
    """The ARP and NDP probes keep every reply: the box's container and the impostor both answer. The agent
    stores an open conflict with both MACs, remediates nothing while it lasts, and closes it when the
    impostor goes."""
    import probes
    from agent.netns import entered
    from probes.types import Target

    lab, box = clean_lab, "ctr1"
    b = lab.box(box)
    ctr_mac = _docker("inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{b.network}\").MacAddress}}}}",
                      b.container).lower()
    db = "t_engine_conflict"
    cfg = write_config(lab, str(tmp_path), database=db, fail_cycles=FAIL_CYCLES,
                       sections={"remediation": {"enabled": True, "cooldown": 1, "verify": 2, "stop_timeout": 2}},
                       box_keys={box: {"remediate": ["reconnect_network", "restart_container"]}})
    a = AgentProc(lab, cfg, os.path.join(str(tmp_path), "agent.log"))
    agents.append(a)
    a.wait_until("all boxes up", lambda st: all(x["state"] == "up" for x in st["boxes"].values()), 30)
    with Impostor(lab, b) as imp:
        with entered(lab.monitor_ns):
            got = probes.sweep([Target(b.ipv4, "arp"), Target(b.ipv6, "ndp")], 1.0)
        for r in got:
            assert r.ok and set(r.macs) == {ctr_mac, imp.mac}, (r, ctr_mac, imp.mac)
        t_in = time.time()
        a.wait_until("conflict stored", lambda st: len(query(lab, "SELECT * FROM address_conflict WHERE open = 1",
                                                              db)) >= 2, 20)
        a.wait_cycles(6)   # long enough for fail_cycles + a ladder step if anything were remediated
        rem = query(lab, "SELECT * FROM remediation", db)
        assert [r for r in rem if r.get("outcome") == "done"] == [], rem
    t_out = time.time()
    a.wait_until("conflict closed", lambda st: len(query(lab, "SELECT * FROM address_conflict WHERE open = 0",
                                                          db)) >= 2, 20)
    a.wait_state(box, "up", timeout_s=30)
    assert a.stop() == 0
    rows = query(lab, "SELECT * FROM address_conflict", db)
    opened = [r for r in rows if r["open"] == 1]
    assert {r["address"] for r in opened} == {b.ipv4, b.ipv6}, rows
    assert all(set(r["macs"].split(",")) == {ctr_mac, imp.mac} for r in opened), rows
    assert all(t_in * 1000 - 1 <= r["time"] for r in opened) and \
        all(r["time"] >= t_out * 1000 - 1 for r in rows if r["open"] == 0), rows
    assert query(lab, "SELECT * FROM mac_change", db) == []   # a conflict is not a MAC change
    assert errors_in_log(a.log_text()) == []
    print(f"\naddress conflict: {len(opened)} addresses, MACs {ctr_mac} and {imp.mac}")
