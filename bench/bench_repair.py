#!/usr/bin/env python3
"""Benchmark time to repair in the lab at interval 2 s: fault onset -> box healthy again, per fault/ladder case.

    sudo .venv/bin/python bench/bench_repair.py [--reps 5 | --quick] [--interval 2] [--cases l4-restart,...]

All real: a lab (lab: 2 macvlan containers + 1 VM stand-in, dockerd, influxd in the monitor namespace)
and `vobox-agent --netns MON run -c FILE` as a subprocess with remediation enabled. Cases:
  l4-restart    container paused (lab fault l4), ladder ["restart_container"]
  l2-reconnect  container disconnected from its network (lab fault l2), ladder ["reconnect_network"]
  l3-command    VM stand-in with an nft drop table (lab fault l3), ladder ["command"], the command
                `ip netns exec <vm ns> nft delete table inet vobox_lab_l3`
Time to repair = from just before the fault is injected (so it is an upper bound by the injection time,
printed too) to the first moment the bench's own probing from the monitor namespace (TCP connect every
100 ms, then every port over IPv4 and IPv6) sees the box answer again. The agent-side breakdown comes from
InfluxDB: the open `freeze` point readable (detection), and the `remediation` point (action start, duration).

Config deviations from the defaults, needed to repeat faults on one box within minutes (none of them changes
how fast a single repair goes): [remediation] cooldown = 0, max_per_box_per_hour = 1000, max_per_hour = 1000,
verify = 4 (the ladder step's verification window; it ends before the next repetition starts).
Everything is removed at exit, also on Ctrl-C/SIGTERM; leftovers of a crashed run are removed at start.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's product and lab
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_probes  # shared bench helpers; bench/ is not a package

from lab import Lab, cleanup_leftovers as lab_cleanup_leftovers
from lab.faults import NFT_TABLE

HERE = Path(__file__).resolve().parent.parent

TMP_PREFIX = "vbxr-"
TARGET_S = 15.0
POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class Case:
    """One repair case: which box, which fault, which ladder."""

    name: str
    box: str
    fault: str
    ladder: tuple[str, ...]
    target_s: float | None


@dataclass(frozen=True, slots=True)
class Repair:
    """One repetition's timeline, seconds after the fault was injected (None: not seen)."""

    case: str
    inject_s: float
    repaired_s: float | None       # box healthy again (own probing)
    detected_s: float | None       # open freeze point readable in InfluxDB
    action_start_s: float | None   # remediation point time (action start)
    action_s: float | None         # remediation point duration_s
    action: str | None
    action_ok: int | None
    detail: str


def cleanup_leftovers() -> None:
    """Kill the agent and remove the temp dir of a crashed earlier run; labs whose owner is gone are removed."""
    for d in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*"):
        m = re.match(rf"{TMP_PREFIX}(\d+)-", d.name)
        if not m or Path(f"/proc/{m.group(1)}").exists():
            continue
        bench_probes.kill_recorded_agent(d / "agent.pid", d)
        shutil.rmtree(d, ignore_errors=True)
        print(f"removed leftovers of an earlier run: {d}", file=sys.stderr)
    for removed in lab_cleanup_leftovers():
        print(f"removed leftover lab: {removed}", file=sys.stderr)


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


class RepairBench:
    """The lab, the agent subprocess and the per-repetition measurement."""

    def __init__(self, args: argparse.Namespace, stack: ExitStack) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-"))
        stack.callback(shutil.rmtree, self.tmp, True)
        t0 = time.monotonic()
        self.lab = Lab.create(containers=2, vms=1, influx=True)
        stack.callback(self.lab.down)
        self.lab_s = time.monotonic() - t0
        ctr1, ctr2, vm1 = (b.name for b in self.lab.boxes)
        vm = self.lab.box(vm1)
        self.cases = {
            "l4-restart": Case("l4-restart", ctr1, "l4", ("restart_container",), TARGET_S),
            "l2-reconnect": Case("l2-reconnect", ctr2, "l2", ("reconnect_network",), TARGET_S),
            "l3-command": Case("l3-command", vm1, "l3", ("command",), None),
        }
        self.command = ["ip", "netns", "exec", vm.vm_netns, "nft", "delete", "table", "inet", NFT_TABLE]
        self.agent: subprocess.Popen | None = None
        stack.callback(self.stop_agent)
        self.status_path = Path(self.lab.run_dir) / "agent" / "status.json"

    def config(self) -> str:
        text = self.lab.agent_config(interval=self.args.interval)
        extra = {c.box: {"remediate": list(c.ladder)} for c in self.cases.values()}
        extra[self.cases["l3-command"].box]["command"] = self.command
        out = []
        for line in text.splitlines():
            out.append(line)
            m = re.fullmatch(r'name = "(.+)"', line)
            if m and m.group(1) in extra:
                for key, value in extra[m.group(1)].items():
                    out.append(f"{key} = {json.dumps(value)}")
        out += ["", "[remediation]", "enabled = true", "cooldown = 0", "max_per_box_per_hour = 1000",
                "max_per_hour = 1000", "verify = 4"]
        return "\n".join(out) + "\n"

    def start_agent(self) -> None:
        cfg = self.tmp / "agent.toml"
        cfg.write_text(self.config())
        exe = HERE / ".venv/bin/vobox-agent"
        cli = ["--netns", self.lab.monitor_ns, "run", "-c", str(cfg)]
        argv = [str(exe), *cli] if exe.exists() else [sys.executable, "-m", "agent", *cli]
        self.log_path = self.tmp / "agent.log"
        with open(self.log_path, "wb") as logf:
            self.agent = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                          start_new_session=True, cwd=str(HERE))
        (self.tmp / "agent.pid").write_text(str(self.agent.pid))

    def stop_agent(self) -> None:
        p, self.agent = self.agent, None
        bench_probes.stop_group(p)

    def query(self, q: str) -> list[dict]:
        res = self.lab._influx_server().query(q, db=self.lab.influx_database)
        rows: list[dict] = []
        for r in res.get("results", []):
            for s in r.get("series", []) or []:
                rows += [dict(zip(s["columns"], v, strict=True)) for v in s["values"]]
        return rows

    def box_status(self, box: str) -> dict:
        try:
            return json.loads(self.status_path.read_text())["boxes"][box]
        except (OSError, ValueError, KeyError):
            return {}

    def wait_settled(self, box: str, timeout_s: float) -> bool:
        """Until the agent sees the box up and its remediation idle (no action running or verifying)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.agent is None or self.agent.poll() is not None:
                raise RuntimeError(f"agent exited with {self.agent.returncode if self.agent else '?'}; "
                                   f"log tail:\n{self.log_tail()}")
            st = self.box_status(box)
            rem = st.get("remediation") or {}
            if st.get("state") == "up" and not rem.get("reason"):
                return True
            time.sleep(0.2)
        return False

    def healthy(self, box: str) -> bool:
        b = self.lab.box(box)
        if not self.lab.tcp_ok(b.ipv4, b.tcp_ports[0], 0.1):
            return False
        return self.lab.box_answers(box, 0.5)

    def repetition(self, case: Case) -> Repair:
        t0 = time.time()
        self.lab.fault(case.box, case.fault)
        inject_s = time.time() - t0
        onset_ns = int((t0 - 1) * 1e9)
        repaired = detected = None
        deadline = t0 + self.args.rep_timeout
        while time.time() < deadline:
            now = time.time()
            if detected is None:
                rows = self.query(f"SELECT \"open\" FROM freeze WHERE box = '{case.box}' AND time >= {onset_ns}")
                if any(r.get("open") == 1 for r in rows):
                    detected = time.time() - t0
            if self.healthy(case.box):
                repaired = now - t0
                break
            time.sleep(max(0.0, POLL_S - (time.time() - now)))
        action_rows: list[dict] = []
        end = time.time() + 30
        while repaired is not None and time.time() < end:
            action_rows = self.query(f"SELECT action, ok, duration_s, detail FROM remediation "
                                     f"WHERE box = '{case.box}' AND time >= {onset_ns}")
            if action_rows:
                break
            time.sleep(0.5)
        self.lab.clear(case.box, wait=True, timeout_s=60)   # the lab's bookkeeping; the box is healed already
        a = action_rows[0] if action_rows else {}
        if not self.wait_settled(case.box, 90):
            print(f"  warning: box {case.box} not back to up/idle in the agent within 90 s", flush=True)
        return Repair(case.name, inject_s, repaired, detected,
                      _epoch(a["time"]) - t0 if a else None, a.get("duration_s"), a.get("action"), a.get("ok"),
                      f"{len(action_rows)} action(s)" + (f": {a.get('detail')}" if a else ""))

    def log_tail(self) -> str:
        try:
            return "".join(self.log_path.read_text(errors="replace").splitlines(True)[-20:])
        except OSError:
            return ""


def fmt(x: float | None) -> str:
    return f"{x:6.2f}" if x is not None else "     -"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions per case (default 5)")
    ap.add_argument("--quick", action="store_true", help="2 repetitions per case")
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--cases", default="l4-restart,l2-reconnect,l3-command")
    ap.add_argument("--rep-timeout", type=float, default=90.0, help="give up on one repetition after this long")
    args = ap.parse_args()
    if args.quick:
        args.reps = 2
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (lab: namespaces, Docker)")
    cleanup_leftovers()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    results: list[Repair] = []
    with ExitStack() as stack:
        b = RepairBench(args, stack)
        wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in b.cases]
        if unknown:
            raise SystemExit(f"bench: unknown case(s) {', '.join(unknown)}; valid: {', '.join(b.cases)}")
        print(f"lab {b.lab.run_id} up in {b.lab_s:.1f} s: {', '.join(f'{x.name} ({x.kind})' for x in b.lab.boxes)}; "
              f"monitor ns {b.lab.monitor_ns}; interval {args.interval:g} s, fail_cycles 3, recover_cycles 2, "
              f"timeout 1 s, jitter 0.5 s; {args.reps} reps per case; {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
        b.start_agent()
        for c in b.cases.values():
            if not b.wait_settled(c.box, 60):
                raise SystemExit(f"bench: agent does not report box {c.box} up; log tail:\n{b.log_tail()}")
        print("  t = seconds after the fault was injected; detect = open freeze point readable in InfluxDB; "
              "action = remediation point (start + duration)", flush=True)
        for name in wanted:
            case = b.cases[name]
            for i in range(args.reps):
                r = b.repetition(case)
                results.append(r)
                print(f"  {name:<13} rep {i + 1}: inject {r.inject_s:5.2f}  detect {fmt(r.detected_s)}  "
                      f"action {r.action or '-'} at {fmt(r.action_start_s)} took {fmt(r.action_s)} "
                      f"ok={r.action_ok}  healthy {fmt(r.repaired_s)}   [{r.detail[:110]}]", flush=True)
                time.sleep(1.0)
    print()
    print(f"{'case':<14}{'box fault -> ladder':<42}{'n':>3}{'median s':>10}{'max s':>8}{'target':>9}  verdict")
    ok_all = True
    for name in wanted:
        case = b.cases[name]
        xs = [r.repaired_s for r in results if r.case == name and r.repaired_s is not None]
        n = sum(1 for r in results if r.case == name)
        missed = n - len(xs)
        med = statistics.median(xs) if xs else None
        mx = max(xs) if xs else None
        verdict = "-"
        if case.target_s is not None:
            good = mx is not None and not missed and mx <= case.target_s  # mx: None when nothing was repaired
            ok_all &= good
            verdict = "PASS" if good else "FAIL"
        what = f"{case.box} {case.fault} -> {','.join(case.ladder)}"
        print(f"{name:<14}{what:<42}{n:>3}{fmt(med):>10}{fmt(mx):>8}"
              f"{f'<= {case.target_s:g}' if case.target_s else '':>9}  {verdict}"
              + (f" ({missed} not repaired)" if missed else ""))
        det = [r.detected_s for r in results if r.case == name and r.detected_s is not None]
        act = [r.action_start_s for r in results if r.case == name and r.action_start_s is not None]
        dur = [r.action_s for r in results if r.case == name and r.action_s is not None]
        if det and act and dur:
            print(f"{'':<14}  median detect {statistics.median(det):.2f} s, action start "
                  f"{statistics.median(act):.2f} s, action duration {statistics.median(dur):.2f} s")
    print("time to repair = fault injected (upper bound: includes the injection time) -> the bench's own TCP "
          "probing from the monitor namespace sees every port answer over IPv4 and IPv6")
    return 0 if ok_all else 1


if __name__ == "__main__":
    bench_probes.run_main(main)
