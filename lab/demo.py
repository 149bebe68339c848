"""`vobox-lab demo`: the main job on an embedded default: a lab, InfluxDB, the agent, and freezes to heal.

It brings up the lab (container VO-Boxes on a macvlan network and VM stand-ins,
plus InfluxDB, all inside namespaces of its own), runs the real agent in the
lab's monitor namespace with remediation on, injects a fault now and then, and
shows the agent's live status. Ctrl-C (or --duration) stops the agent, prints
the events it recorded, and removes the lab.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time

SCENARIO = (  # (box, fault): one after the other, round and round
    ("ctr1", "l4"),   # service ports dropped: ping answers, TCP dead -> restart_container
    ("vm1", "l3"),    # VM drops IP: ARP answers, ping dead -> the VM hook
    ("ctr2", "l2"),   # container disconnected from its macvlan network -> reconnect_network
    ("vm2", "l4"),    # VM service dead -> the VM hook
)


class FaultWatch:
    """One injected fault, followed through the agent's status: when the box left `up`, when it was back (mono s)."""

    def __init__(self, box: str, fault: str, at_s: float, give_up_s: float = 60.0) -> None:
        self.box, self.fault, self.at_s, self.give_up_s = box, fault, at_s, give_up_s
        self.seen_s: float | None = None   # the agent first showed the box not up
        self.up_s: float | None = None     # then up again

    def observe(self, state: str | None, now_s: float) -> str | None:
        """Take the box's state now; the closing note once healed or given up, else None."""
        if state is not None and state != "up" and self.seen_s is None:
            self.seen_s = now_s
        if state == "up" and self.seen_s is not None and self.up_s is None:
            self.up_s = now_s
        if self.up_s is not None and self.seen_s is not None:  # up_s is only set after seen_s
            return (f">>> {self.box} is up again after {self.up_s - self.at_s:.0f} s "
                    f"(the agent saw it {self.seen_s - self.at_s:.0f} s after the fault)")
        if now_s - self.at_s > self.give_up_s:
            if self.seen_s is None:
                return (f">>> {self.box}: the agent did not see the {self.fault} fault in {self.give_up_s:.0f} s; "
                        "clearing it")
            return f">>> {self.box} is still {state} after {self.give_up_s:.0f} s; clearing the fault"
        return None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the demo subcommand."""
    from lab.engine import DEFAULT_ENGINE, ENGINES

    p = subparsers.add_parser("demo", help="bring up the demo lab, run the agent on it and inject freezes")
    p.add_argument("--duration", type=float, default=0.0, metavar="S", help="stop after S seconds (0: Ctrl-C)")
    p.add_argument("--interval", type=float, default=2.0, metavar="S", help="probe interval (default 2 s)")
    p.add_argument("--fault-every", type=float, default=30.0, metavar="S",
                   help="inject the next fault every S seconds (default 30; 0: none)")
    p.add_argument("--keep", action="store_true", help="leave the lab up at the end (`vobox-lab down` removes it)")
    p.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                   help=f"container engine of the container boxes (default {DEFAULT_ENGINE}; podman: the lab's own "
                        "`podman system service`, which the agent is pointed at with DOCKER_HOST)")
    p.set_defaults(func=run)


def demo_config(lab, interval_s: float) -> str:
    """The demo's agent config: every lab box, remediation on, a VM hook that 'resets' the VM via the lab."""
    agent_cmd = [sys.executable, "-m", "lab", "--run-id", lab.run_id, "clear", "{box}"]
    box_extra = {}
    for b in lab.boxes:
        if b.kind == "container":
            box_extra[b.name] = {"remediate": ["reconnect_network", "restart_container"]}
        else:  # in the lab, resetting the VM means clearing its fault (a site would use virsh/openstack here)
            box_extra[b.name] = {"remediate": ["command"], "command": agent_cmd}
    remediation = ("[remediation]\nenabled = true\ndry_run = false\ncooldown = 5\nmax_per_box_per_hour = 10\n"
                   "max_per_hour = 40\nverify = 6\n")
    return lab.agent_config(interval=interval_s, timeout=0.5, jitter=0.2, fail_cycles=2, recover_cycles=2,
                            box_extra=box_extra, extra=remediation)


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit 0 after a clean stop."""
    from agent.live import LiveView
    from agent.status import read_status_file
    from lab import Lab, cleanup_leftovers

    removed = cleanup_leftovers()
    if removed:
        print(f"removed leftovers of earlier runs: {', '.join(removed)}")
    engine = getattr(args, "engine", "docker")
    print(f"bringing up the demo lab (2 containers on {engine}, 2 VM stand-ins, InfluxDB) ...", flush=True)
    lab = Lab.create(containers=2, vms=2, persistent=args.keep, visible=True, engine=engine)
    cfg_path = os.path.join(lab.run_dir, "demo-agent.toml")
    with open(cfg_path, "w", encoding="utf-8") as fh:
        fh.write(demo_config(lab, args.interval))
    state_dir = os.path.join(lab.run_dir, "agent")
    log_path = os.path.join(lab.run_dir, "agent.log")
    log_fh = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - the agent's log, open while it runs
    agent = subprocess.Popen([sys.executable, "-m", "agent", "--netns", lab.monitor_ns, "run", "-c", cfg_path],
                             stdout=log_fh, stderr=subprocess.STDOUT, env={**os.environ, **lab.agent_env()})
    print(f"agent pid {agent.pid} probing from namespace {lab.monitor_ns}; config {cfg_path}; log {log_path}")
    stop = {"now": False}
    # A closed terminal (SIGHUP) ends the demo like Ctrl-C: the lab is removed, nothing is left behind.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.update(now=True))
    view = LiveView(title=f"vobox-lab demo {lab.run_id}").__enter__()
    started = time.monotonic()
    scenario = itertools.cycle(SCENARIO)
    next_fault = started + (args.fault_every or float("inf")) / 3
    active: FaultWatch | None = None
    try:
        while not stop["now"] and (not args.duration or time.monotonic() - started < args.duration):
            if agent.poll() is not None:
                print(f"the agent exited with {agent.returncode}; see {log_path}", file=sys.stderr)
                return 1
            now = time.monotonic()
            if active is None and now >= next_fault:
                box, fault = next(scenario)
                lab.fault(box, fault)
                active = FaultWatch(box, fault, now)
                view.note(f">>> injected {fault} into {box}; watch it freeze and heal")
            snap, why = read_status_file(os.path.join(state_dir, "status.json"), time.time())
            if active is not None and snap is not None:
                state = next((b.state for b in snap.boxes if b.name == active.box), None)
                done = active.observe(state, now)
                if done:
                    lab.clear(active.box, wait=False)  # healed by the agent (or given up): forget the fault
                    view.note(done)
                    active = None
                    next_fault = now + args.fault_every
            try:
                view.update(snap, time.time(), why)
            except OSError:  # the terminal is gone (EIO after a hang-up): stop, and clean up below
                stop["now"] = True
            time.sleep(1.0)
    finally:
        with contextlib.suppress(OSError):
            view.__exit__(None, None, None)
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            agent.kill()
        log_fh.close()
        try:
            print("\nevents recorded by the agent:", flush=True)
            subprocess.run([sys.executable, "-m", "agent", "--netns", lab.monitor_ns, "events", "-c", cfg_path,
                            "--since", "1h"], check=False, env={**os.environ, **lab.agent_env()})
        except OSError:
            pass  # no terminal any more: the events stay in InfluxDB until the lab goes
        if not args.keep:
            lab.down()
        with contextlib.suppress(OSError):
            print(f"lab {lab.run_id} left up; `vobox-lab down` removes it" if args.keep
                  else f"lab {lab.run_id} removed", flush=True)
    return 0
