"""The engine going away and coming back, on a dockerd of the test's OWN (the shared one is never stopped).

Its own `-H unix://` socket, `--data-root`, `--exec-root`, `--pidfile`, `--bridge=none`,
`--iptables=false`, and its own macvlan parent: one end of a veth pair whose other end sits in the
test's monitor namespace (names under the session lab's run id, so the lab's cleanup removes a crashed
run's leftovers). Two container boxes run on it without live-restore. Stopping that dockerd stops
them through the same path as `docker stop`; the agent must hold them ("engine down", one event, no
actions) and, when the engine returns, judge each box still down alone (a failure: no one can be
named for the stop) and repair it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.agent.agent_proc import AgentProc, errors_in_log

pytestmark = pytest.mark.lab

SUBNET4, GW4 = "203.0.113.0/24", "203.0.113.1"
BOXES = {"eng1": "203.0.113.11", "eng2": "203.0.113.12"}


class OwnDockerd:
    """A second dockerd with its own socket, roots, pidfile and no bridge/iptables; start() and stop() at will."""

    def __init__(self, base: str, netns: str | None = None) -> None:
        self.base = base
        self.netns = netns
        self.sock = os.path.join(base, "docker.sock")
        self.host = f"unix://{self.sock}"
        self.proc: subprocess.Popen | None = None
        with open(os.path.join(base, "daemon.json"), "w") as fh:
            json.dump({}, fh)

    def argv(self) -> list[str]:
        b = self.base
        # In a network namespace of its own: a dockerd without a bridge deletes any `docker0` it sees at start
        # (moby's removeDefaultBridgeInterface), which in the root namespace is the shared engine's bridge.
        netns = [] if self.netns is None else ["nsenter", f"--net=/run/netns/{self.netns}"]
        return [*netns, "dockerd", "-H", self.host, "--data-root", os.path.join(b, "data"), "--exec-root",
                os.path.join(b, "exec"), "--pidfile", os.path.join(b, "docker.pid"), "--bridge=none",
                "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--config-file",
                os.path.join(b, "daemon.json"), "--log-level", "warn"]

    def docker(self, *argv: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "-H", self.host, *argv], capture_output=True, text=True, **kw)

    def start(self) -> None:
        self.log = open(os.path.join(self.base, "dockerd.log"), "ab")  # noqa: SIM115 - dockerd's log, closed by stop()
        self.proc = subprocess.Popen(self.argv(), stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.docker("version", timeout=10).returncode == 0:
                return
            assert self.proc.poll() is None, Path(self.base, "dockerd.log").read_text(errors="replace")[-2000:]
            time.sleep(0.3)
        raise AssertionError("own dockerd did not come up in 60 s")

    def stop(self) -> float:
        """SIGTERM our dockerd (by its pid) and wait for it; the time it took."""
        t0 = time.monotonic()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        return time.monotonic() - t0


@pytest.fixture
def own_engine(lab, tmp_path_factory):
    """Own dockerd + own segment (veth: the parent in the own dockerd's namespace, the other end in an own monitor
    ns); the shared engine's namespace, bridge and containers are never touched."""
    from lab.image import ensure_image

    rid = lab.run_id
    ns, dns, parent, mon = f"vbl-{rid}-eng", f"vbl-{rid}-engd", f"vbl{rid}e", f"vbl{rid}f"
    base = f"/tmp/vbl-{rid}-dockerd"   # short: the exec-root holds unix sockets (108-byte path limit)

    def teardown(d: OwnDockerd | None) -> None:
        if d is not None:
            for name in BOXES:
                d.docker("rm", "-f", name, timeout=60)
            d.stop()
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        subprocess.run(["ip", "netns", "delete", dns], capture_output=True)
        subprocess.run(["ip", "link", "delete", parent], capture_output=True)   # an earlier layout's leftover
        subprocess.run(["umount", "-R", os.path.join(base, "exec")], capture_output=True)
        subprocess.run(["rm", "-rf", base], capture_output=True)

    teardown(None)   # a crashed earlier run's leftovers of this lab
    os.makedirs(base, mode=0o700)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "netns", "add", dns], check=True)
    subprocess.run(["ip", "-n", dns, "link", "add", parent, "type", "veth", "peer", "name", mon], check=True)
    subprocess.run(["ip", "-n", dns, "link", "set", mon, "netns", ns], check=True)
    subprocess.run(["ip", "-n", ns, "addr", "add", f"{GW4}/24", "dev", mon], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", mon, "up"], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "-n", dns, "link", "set", parent, "up"], check=True)
    subprocess.run(["ip", "-n", dns, "link", "set", "lo", "up"], check=True)
    d = OwnDockerd(base, dns)
    try:
        d.start()
        image = ensure_image()
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        load = subprocess.run(["docker", "-H", d.host, "load"], stdin=save.stdout, capture_output=True, timeout=300)
        save.wait(60)
        assert load.returncode == 0, load.stderr
        r = d.docker("network", "create", "-d", "macvlan", "--subnet", SUBNET4, "--gateway", GW4, "-o",
                     f"parent={parent}", "ownnet", timeout=60)
        assert r.returncode == 0, r.stderr
        for name, ip in BOXES.items():
            r = d.docker("run", "-d", "--name", name, "--network", "ownnet", "--ip", ip, "--restart", "no", image,
                         "1093", timeout=120)
            assert r.returncode == 0, r.stderr
        yield d, ns
    finally:
        teardown(d)


def _config(directory: str) -> str:
    text = f"""[agent]
interval = 1
timeout = 0.5
jitter = 0
state_dir = "{directory}/state"
site = "eng"

[freeze]
fail_cycles = 2
recover_cycles = 2

[influxdb]
url = "http://127.0.0.1:9"
database = "vobox"

[remediation]
enabled = true
cooldown = 1
verify = 2
stop_timeout = 2
"""
    for name, ip in BOXES.items():
        text += f"""
[[box]]
name = "{name}"
kind = "container"
ipv4 = "{ip}"
tcp_ports = [1093]
container = "{name}"
network = "ownnet"
remediate = ["restart_container"]
"""
    path = os.path.join(directory, "agent.toml")
    with open(path, "w") as fh:
        fh.write(text)
    return path


def test_an_engine_restart_holds_its_boxes_as_one_event_then_each_is_judged_alone_and_repaired(
        own_engine, agents, tmp_path, monkeypatch):
    d, ns = own_engine
    monkeypatch.setenv("DOCKER_HOST", d.host)

    class Where:
        monitor_ns = ns

    a = AgentProc(Where(), _config(str(tmp_path)), str(tmp_path / "agent.log"))
    agents.append(a)
    a.wait_until("both boxes up", lambda st: all(st["boxes"][b]["state"] == "up" for b in BOXES), 40)
    a.wait_cycles(2)
    stop_s = d.stop()   # no live-restore: dockerd stops every container on its way out
    held = a.wait_until("both boxes held: engine down",
                        lambda st: all((st["boxes"][b].get("held") or {}).get("kind") == "engine_down"
                                       for b in BOXES), 30)
    for b in BOXES:
        assert held["boxes"][b]["state"] == "frozen", held["boxes"][b]
        assert held["boxes"][b]["held"]["reason"].startswith("engine down: "), held["boxes"][b]
    a.wait_cycles(4)   # held: nothing is tried while the engine is away
    assert "remediation restart_container" not in a.log_text() or "held" in a.log_text()
    t_back = time.time()
    d.start()
    st = a.wait_until("both boxes repaired", lambda s: all(s["boxes"][b]["state"] == "up" for b in BOXES), 60)
    back_s = time.time() - t_back
    for b in BOXES:
        assert st["boxes"][b]["container"]["state"] == "running"
        assert d.docker("inspect", "-f", "{{.State.Status}}", b).stdout.strip() == "running"
    a.wait_cycles(4)
    assert a.stop() == 0
    log = a.log_text()
    print(f"\nown dockerd stopped in {stop_s:.1f} s; both boxes repaired {back_s:.1f} s after it was started again")
    # One engine-down event each way, however many boxes.
    assert log.count("container engine down since") == 1 and log.count("container engine back after") == 1, log[-3000:]
    # At the return each exit was judged from the gap: no stop request in the (restarted) engine's history.
    for b in BOXES:
        judged = [x for x in log.splitlines() if f"box {b}: container {b} exited:" in x]
        assert judged and "failed:" in judged[-1] and "engine stop or restart?" in judged[-1], judged
    assert "automatic remediation deferred: engine down" in log
    assert not [x for x in errors_in_log(log) if "InfluxDB" not in x and "influx" not in x], errors_in_log(log)
