#!/usr/bin/env python3
"""Faults at every layer on a Podman lab, repaired by the agent: fault -> repair time and MAC before/after.

    sudo .venv/bin/python bench/bench_podman_lab.py [--engine podman|docker] [--interval 1] [--rep-timeout 60]

All real: a lab whose container boxes run on rootful Podman (lab.engine: the lab's own `podman system
service`, which the agent reaches through DOCKER_HOST), five container boxes and influxd in the monitor namespace,
and `vobox-agent --netns MON run -c FILE` with remediation on. One row per fault:
  l2  ctr1: network disconnect
  l3  ctr2: nft drop of IP in its namespace
  l4  ctr3: nft drop of its service ports
  l7  ctr4: paused (cgroup freezer)
  l7  ctr5: services hung (SIGSTOP)
each box with the ladder reconnect_network, exec (SIGCONT the services; tried for l4/l7 only), restart_container.
For each: detected = the agent's status shows the box frozen (and the layer it named), repaired = the
status shows it up again, both in seconds after the fault was injected; the action(s) from the agent's
`remediation` points; MAC before the fault, MAC the engine reports after the repair, and the MAC the
monitor's neighbour table holds for the box after the repair (what a LAN switch/router would use).
Config deviations from the defaults: interval 1 s, fail_cycles 2, [remediation] cooldown 0, verify 6 s.
Everything is removed at exit; leftovers of a crashed run are removed at start.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's product and lab

from agent import netns
from agent.storage import influx
from lab import Lab, cleanup_leftovers

LADDER = ["reconnect_network", "exec", "restart_container"]   # exec only for l4/l7 freezes
VERIFY_S = 6
RESUME = ["/bin/sh", "-c", "kill -CONT $(pidof httpd openssl)"]   # the lab's "restart the service"
DB = "bench_podman"


@dataclass(frozen=True, slots=True)
class Case:
    """One fault: on which box, which lab fault, the layer it stands for."""

    layer: str
    box: str
    fault: str


# One fresh box per fault: a box the lab restored once keeps its MAC on Podman (lab.faults.restore_mac pins it),
# so each row starts from a container as `podman run` made it.
CASES = (Case("l2", "ctr1", "l2"), Case("l3", "ctr2", "l3"), Case("l4", "ctr3", "l4"), Case("l7", "ctr4", "pause"),
         Case("l7", "ctr5", "hang"))


def status(path: Path) -> dict:
    """The agent's status.json ({} before the first cycle)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def neigh_mac(lab: Lab, address: str) -> str | None:
    """The MAC the monitor namespace's neighbour table holds for ADDRESS."""
    out = subprocess.run(["ip", "-n", lab.monitor_ns, "neigh", "show", address], capture_output=True,
                         text=True).stdout.split()
    return out[out.index("lladdr") + 1].lower() if "lladdr" in out else None


def remediations(lab: Lab, box: str, since_s: float) -> list[dict]:
    """The agent's remediation points for BOX after SINCE_S (epoch s)."""
    assert lab.influx_url is not None   # the bench's lab has InfluxDB
    with netns.entered(lab.monitor_ns):
        rows = influx.query(lab.influx_url, f"SELECT action, outcome, ok, recovered, detail FROM remediation WHERE box = "
                                            f"'{box}' AND time >= {int(since_s * 1e9)}", db=DB, epoch="ms")
    return rows


def run_case(lab: Lab, case: Case, status_path: Path, timeout_s: float) -> dict:
    """Inject one fault, follow the agent's status until the box is up again; the row of the table."""
    b = lab.box(case.box)
    mac_before = lab.container_mac(b.container_name)
    t0 = time.time()
    lab.fault(case.box, case.fault)
    detected_s = repaired_s = None
    layer = None
    while time.time() - t0 < timeout_s:
        box = status(status_path).get("boxes", {}).get(case.box, {})
        if detected_s is None and box.get("state") == "frozen":
            detected_s, layer = time.time() - t0, box.get("layer")
        if detected_s is not None and box.get("state") == "up":
            repaired_s = time.time() - t0
            break
        time.sleep(0.1)
    mac_after = lab.container_mac(b.container_name)
    arp_after = neigh_mac(lab, b.ipv4)
    # The remediation point is written once its verification window is over: wait for the one that recovered it.
    rows: list[dict] = []
    deadline = time.time() + VERIFY_S + 10.0
    while time.time() < deadline:
        rows = remediations(lab, case.box, t0)
        if any(r.get("recovered") for r in rows):
            break
        time.sleep(0.5)
    actions = [f"{r['action']}:{'ok' if r['ok'] else 'failed'}" for r in rows if r["outcome"] == "done"]
    lab.clear(case.box, wait=True, timeout_s=60)   # the lab forgets the fault (and restores its MAC on Podman)
    time.sleep(2.0)
    return {"layer": case.layer, "box": case.box, "fault": case.fault, "detected_layer": layer,
            "detected_s": detected_s, "repaired_s": repaired_s, "actions": actions, "mac_before": mac_before,
            "mac_after": mac_after, "arp_after": arp_after}


def fmt(x: float | None) -> str:
    return f"{x:6.1f}" if x is not None else "     -"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="podman", choices=("podman", "docker"))
    ap.add_argument("--interval", type=float, default=1.0, help="probe interval, s (default 1)")
    ap.add_argument("--rep-timeout", type=float, default=60.0, help="give up on one fault after this long, s")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (lab: namespaces, the engine)")
    for removed in cleanup_leftovers():
        print(f"removed leftover lab: {removed}", file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    rows = []
    with ExitStack() as stack:
        t0 = time.monotonic()
        lab = Lab.create(containers=len(CASES), vms=0, influx=True, engine=args.engine)
        stack.callback(lab.down)
        print(f"lab {lab.run_id} on {args.engine} up in {time.monotonic() - t0:.1f} s; agent DOCKER_HOST "
              f"{lab.docker_host}; interval {args.interval:g} s, fail_cycles 2; {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
        tmp = Path(tempfile.mkdtemp(prefix="vbxp-"))
        box_extra = {b.name: {"remediate": LADDER, "exec": RESUME} for b in lab.boxes if b.kind == "container"}
        for b in lab.boxes:
            if b.kind == "container":
                lab.set_proxy(b.name, 30)
        cfg = lab.agent_config(interval=args.interval, timeout=0.5, jitter=0, fail_cycles=2, recover_cycles=2,
                               state_dir=str(tmp / "state"), database=DB,
                               box_extra=box_extra, extra="[remediation]\nenabled = true\ndry_run = false\n"
                                                          "cooldown = 0\nmax_per_box_per_hour = 100\n"
                                                          f"max_per_hour = 100\nverify = {VERIFY_S}\n")
        (tmp / "agent.toml").write_text(cfg)
        log = open(tmp / "agent.log", "wb")  # noqa: SIM115 - the agent's log while it runs
        agent = subprocess.Popen([sys.executable, "-m", "agent", "--netns", lab.monitor_ns, "run", "-c",
                                  str(tmp / "agent.toml")], stdout=log, stderr=subprocess.STDOUT,
                                 env={**os.environ, **lab.agent_env()}, start_new_session=True)

        def stop_agent() -> None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
            log.close()
        stack.callback(stop_agent)
        status_path = tmp / "state" / "status.json"
        deadline = time.monotonic() + 60
        while not all(status(status_path).get("boxes", {}).get(c.box, {}).get("state") == "up" for c in CASES):
            if time.monotonic() > deadline or agent.poll() is not None:
                raise SystemExit(f"bench: the agent does not report every box up; log {tmp / 'agent.log'}")
            time.sleep(0.2)
        for case in CASES:
            row = run_case(lab, case, status_path, args.rep_timeout)
            rows.append(row)
            print(f"  {case.layer} {case.box} {case.fault:<6} detected {fmt(row['detected_s'])} s as "
                  f"{row['detected_layer'] or '-':<3} repaired {fmt(row['repaired_s'])} s by "
                  f"{','.join(row['actions']) or '-'}", flush=True)
        print(f"agent log {tmp / 'agent.log'} (removed at exit)")
    print()
    print(f"{'layer':<6}{'box':<5}{'fault':<7}{'seen as':<8}{'detect s':>9}{'repair s':>9}  {'MAC before':<18} "
          f"{'MAC after':<18} {'neigh after':<18} action(s)")
    for r in rows:
        same = "same" if r["mac_after"] == r["mac_before"] else "NEW"
        print(f"{r['layer']:<6}{r['box']:<5}{r['fault']:<7}{r['detected_layer'] or '-':<8}{fmt(r['detected_s']):>9}"
              f"{fmt(r['repaired_s']):>9}  {r['mac_before'] or '-':<18} {r['mac_after'] or '-':<18} "
              f"{r['arp_after'] or '-':<18} {','.join(r['actions']) or '-'} ({same} MAC)")
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0 if all(r["repaired_s"] is not None for r in rows) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
