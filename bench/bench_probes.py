#!/usr/bin/env python3
"""Benchmark the probe sweeps against fping (ICMP), arp-scan (ARP) and curl (HTTP) on a throwaway segment (medians).

Builds its own segment: a monitor namespace with no route out and a target
namespace holding up to 2000 addresses from a free /21 of 198.18.0.0/15 on one
veth, plus a TCP listener and an HTTP server (tests/probes/services.py) bound to
all of them. Everything is removed at exit, also on Ctrl-C. Needs root, fping,
arp-scan and curl (7.66+, for --parallel).

    sudo .venv/bin/python bench/bench_probes.py [--reps 5] [--only icmp,arp,tcp,http]

The kernel's neighbour table limits (net.ipv4/ipv6.neigh.default.gc_thresh*) are
global, not per namespace: with the default gc_thresh3=1024, pinging 2000 on-link
hosts loses replies for unresolved neighbours (fping too). The bench raises
gc_thresh2/3 for its run (never lowers them); the last of overlapping runs to exit
restores the old values (kept in /run/vobox-bench-neigh-limits.json).
"""
from __future__ import annotations

import argparse
import fcntl
import ipaddress
import json
import os
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's product and lab

import probes
from agent import netns
from probes import HttpSpec, Target

HERE = Path(__file__).resolve().parent.parent

PREFIX = "vbxb"  # namespaces vbxb-m<pid>/vbxb-t<pid>, veths vbxbm<pid>/vbxbt<pid>
POOL = ipaddress.IPv4Network("198.18.0.0/15")
TCP_PORT = 18084
HTTP_PORT = 18085
SECTIONS = ("icmp", "arp", "tcp", "http")
NEIGH_STATE = Path("/run/vobox-bench-neigh-limits.json")  # original values + live holders, shared by runs
NEIGH_SYSCTLS = {f"/proc/sys/net/{fam}/neigh/default/gc_thresh{n}": want
                 for fam in ("ipv4", "ipv6") for n, want in ((2, 8192), (3, 16384))}


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _with_neigh_state(change) -> dict:
    """Run CHANGE(state) under an exclusive lock on NEIGH_STATE; save (or remove) what it leaves."""
    with open(str(NEIGH_STATE) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = json.loads(NEIGH_STATE.read_text()) if NEIGH_STATE.exists() else {"saved": {}, "holders": []}
        state["holders"] = [p for p in state["holders"] if _pid_alive(p)]
        change(state)
        if state["holders"] or state["saved"]:
            NEIGH_STATE.write_text(json.dumps(state))
        else:
            NEIGH_STATE.unlink(missing_ok=True)
        return state


def raise_neigh_limits(pid: int) -> dict[str, str]:
    """Raise the global neighbour limits for this run; {path: original} of what this call raised."""
    raised: dict[str, str] = {}

    def change(state):
        state["holders"].append(pid)
        for path, want in NEIGH_SYSCTLS.items():
            old = Path(path).read_text().strip()
            if int(old) < want:
                state["saved"].setdefault(path, old)
                raised[path] = old
                Path(path).write_text(str(want))

    _with_neigh_state(change)
    return raised


def restore_neigh_limits(pid: int) -> None:
    """Leave; the last live run out puts the original limits back (so overlapping runs never lose them mid-run)."""
    def change(state):
        state["holders"] = [p for p in state["holders"] if p != pid]
        if not state["holders"]:
            for path, old in state["saved"].items():
                Path(path).write_text(old)
            state["saved"] = {}

    _with_neigh_state(change)


def stop_group(p: subprocess.Popen | None) -> int | None:
    """SIGTERM a process group (SIGKILL after 30 s); its exit code, None when there was none."""
    if p is None:
        return None
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        except ProcessLookupError:
            pass
    return p.returncode


def run_main(main) -> None:
    """Run a bench's main(); Ctrl-C still cleans up (the ExitStacks unwind) and exits 130."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("bench: interrupted, cleaned up", file=sys.stderr)
        sys.exit(130)


def sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def kill_recorded_agent(pidfile: Path, owner_dir: Path, group: bool = False) -> None:
    """SIGKILL the agent whose pid PIDFILE holds, only if its command line names OWNER_DIR (a reused pid is
    someone else's); its process group with GROUP. Missing or stale files are ignored."""
    try:
        pid = int(pidfile.read_text())
        if str(owner_dir) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            (os.killpg if group else os.kill)(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


def cleanup_leftovers() -> None:
    """Remove namespaces of earlier bench runs whose process is gone."""
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        m = re.fullmatch(rf"{PREFIX}-[mt](\d+)", name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            sh("ip", "netns", "del", name, check=False)
            print(f"removed leftover namespace {name}", file=sys.stderr)


def used_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Every IPv4 address/prefix configured on the host and in any named namespace."""
    out = sh("ip", "-o", "-4", "addr", "show").stdout
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        out += sh("ip", "-n", name, "-o", "-4", "addr", "show", check=False).stdout
        out += sh("ip", "-n", name, "-4", "route", "show", check=False).stdout
    out += sh("ip", "-4", "route", "show").stdout
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for token in re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)\b", out):
        try:
            nets.append(ipaddress.ip_network(token, strict=False))
        except ValueError:
            pass
    return nets


def pick_subnet() -> ipaddress.IPv4Network:
    """A /21 of 198.18.0.0/15 that overlaps nothing configured anywhere on this machine."""
    used = used_networks()
    candidates = list(POOL.subnets(new_prefix=21))
    random.shuffle(candidates)
    for net in candidates:
        if not any(net.overlaps(u) for u in used):
            return net
    raise SystemExit("bench: no free /21 left in 198.18.0.0/15")


class Segment:
    """Monitor + target namespaces joined by one veth; target holds N addresses and a TCP listener."""

    def __init__(self, hosts: int, raise_neigh_limits: bool = True):
        self.raise_neigh_limits = raise_neigh_limits
        pid = os.getpid()
        self.monitor, self.target = f"{PREFIX}-m{pid}", f"{PREFIX}-t{pid}"
        self.mlink, self.tlink = f"{PREFIX}m{pid}", f"{PREFIX}t{pid}"
        self.net = pick_subnet()
        hosts_iter = self.net.hosts()
        self.monitor_ip = str(next(hosts_iter))
        self.addresses = [str(next(hosts_iter)) for _ in range(hosts)]
        self.listener: subprocess.Popen | None = None
        self.http_server: subprocess.Popen | None = None
        self.saved_sysctls: dict[str, str] = {}

    def up(self) -> None:
        sh("ip", "netns", "add", self.monitor)
        sh("ip", "netns", "add", self.target)
        sh("ip", "link", "add", self.mlink, "netns", self.monitor, "type", "veth",
           "peer", "name", self.tlink, "netns", self.target)
        batch = ["link set lo up", f"link set {self.tlink} up"]
        batch += [f"addr add {a}/{self.net.prefixlen} dev {self.tlink}" for a in self.addresses]
        sh("ip", "-n", self.target, "-batch", "-", input="\n".join(batch) + "\n")
        sh("ip", "-n", self.monitor, "-batch", "-", input=f"link set lo up\nlink set {self.mlink} up\n"
           f"addr add {self.monitor_ip}/{self.net.prefixlen} dev {self.mlink}\n")
        if self.raise_neigh_limits:
            self.saved_sysctls = raise_neigh_limits(os.getpid())
        self.listener = subprocess.Popen(["ip", "netns", "exec", self.target, sys.executable,
                                          str(HERE / "tests/probes/listener.py"), str(TCP_PORT)],
                                         stdout=subprocess.PIPE, text=True)
        assert self.listener.stdout is not None
        self.listener.stdout.readline()

    def start_http(self) -> None:
        """An HTTP server on all target addresses (asyncio, one process: the same server for us and curl)."""
        self.http_server = subprocess.Popen(["ip", "netns", "exec", self.target, sys.executable,
                                             str(HERE / "tests/probes/services.py"), f"{HTTP_PORT}:http"],
                                            stdout=subprocess.PIPE, text=True)
        assert self.http_server.stdout is not None
        self.http_server.stdout.readline()

    def down(self) -> None:
        for proc in (self.listener, self.http_server):
            if proc:
                proc.terminate()
                proc.wait(5)
        for name in (self.monitor, self.target):
            sh("ip", "netns", "del", name, check=False)
        if self.raise_neigh_limits:
            restore_neigh_limits(os.getpid())

    def flush_neighbours(self) -> None:
        for name in (self.monitor, self.target):
            sh("ip", "-n", name, "neigh", "flush", "all", check=False)


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def ours(seg: Segment, targets: list[Target], timeout_s: float) -> tuple[float, int, float]:
    """(wall s, lost, cpu s) of one sweep from the monitor namespace."""
    with netns.entered(seg.monitor):
        c0, t0 = cpu_s(), time.perf_counter()
        results = probes.sweep(targets, timeout_s)
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    return wall, sum(not r.ok for r in results), cpu


def tool(seg: Segment, argv: list[str], count_ok) -> tuple[float, int]:
    """(wall s, answered) of a reference tool run inside the monitor namespace (child inherits the thread's)."""
    with netns.entered(seg.monitor):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    return wall, count_ok(proc.stdout + proc.stderr)


def fping_ok(out: str) -> int:
    return len(re.findall(r"xmt/rcv/%loss = 1/1/", out))


def curl_ok(out: str) -> int:
    return len(re.findall(r"^code=200$", out, re.M))


def arpscan_ok(out: str) -> int:
    return len({line.split()[0] for line in out.splitlines() if re.match(r"\d+\.\d+\.\d+\.\d+\s", line)})


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per measurement (default 5)")
    parser.add_argument("--keep-neigh-limits", action="store_true",
                        help="do not raise the global neighbour table limits (shows the loss they cause)")
    parser.add_argument("--only", default=",".join(SECTIONS), metavar="KINDS",
                        help=f"comma list of sections to run, of {','.join(SECTIONS)} (default: all)")
    args = parser.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not only or only - set(SECTIONS):
        raise SystemExit(f"bench: --only takes a comma list of {', '.join(SECTIONS)}, got {args.only!r}")
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (namespaces, raw sockets)")
    for exe in ("fping", "arp-scan", "curl"):
        if not sh("sh", "-c", f"command -v {exe}", check=False).stdout:
            raise SystemExit(f"bench: {exe} not installed (scripts/setup installs it)")
    cleanup_leftovers()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    seg = Segment(2000, raise_neigh_limits=not args.keep_neigh_limits)
    with ExitStack() as stack:
        stack.callback(seg.down)
        seg.up()
        print(f"segment: monitor {seg.monitor} ({seg.monitor_ip}), target {seg.target} holding "
              f"{len(seg.addresses)} addresses of {seg.net}; reps={args.reps}; "
              f"fping {sh('fping', '-v').stdout.split()[2] if sh('fping', '-v', check=False).stdout else '?'}")
        if seg.saved_sysctls:
            print("raised (global; restored when the last bench run exits): "
                  + ", ".join(f"{p.split('/')[4]}.{p.rsplit('/', 1)[1]} {o}->{NEIGH_SYSCTLS[p]}"
                              for p, o in seg.saved_sysctls.items()))
        a500, a2000 = seg.addresses[:500], seg.addresses
        rows = []

        def compare(label, our_targets, timeout_s, ref_argv, ref_ok, target_ratio=None, limit_s=None):
            w_o, l_o, c_o, w_r, l_r = [], [], [], [], []
            for _ in range(args.reps):
                seg.flush_neighbours()
                w, lost, c = ours(seg, our_targets, timeout_s)
                w_o.append(w)
                l_o.append(lost)
                c_o.append(c)
                if ref_argv:
                    seg.flush_neighbours()
                    w, ok = tool(seg, ref_argv, ref_ok)
                    w_r.append(w)
                    l_r.append(len(our_targets) - ok)
            n = len(our_targets)
            row = (f"{label:<28} ours {med(w_o):6.3f} s  lost {max(l_o):4d}  cpu {1000 * med(c_o) / n:6.3f} s/1000"
                   + (f" | ref {med(w_r):6.3f} s  lost {max(l_r):4d} | ratio {med(w_o) / med(w_r):5.2f}"
                      if ref_argv else ""))
            verdict = []
            if target_ratio is not None and ref_argv:
                verdict.append(f"ratio<={target_ratio}: {'PASS' if med(w_o) / med(w_r) <= target_ratio else 'FAIL'}")
            if limit_s is not None:
                verdict.append(f"<={limit_s} s: {'PASS' if med(w_o) <= limit_s else 'FAIL'}")
            verdict.append(f"0 loss: {'PASS' if max(l_o) == 0 else 'FAIL'}")
            rows.append(row + "  [" + ", ".join(verdict) + "]")
            print(rows[-1], flush=True)

        if "icmp" in only:
            compare("ICMP 500 vs fping -i1", [Target(a, "icmp") for a in a500], 0.5,
                    ["fping", "-c1", "-i1", "-t500", *a500], fping_ok, target_ratio=1.5)
            compare("ICMP 2000 vs fping -i0", [Target(a, "icmp") for a in a2000], 0.5,
                    ["fping", "-c1", "-i0", "-t500", *a2000], fping_ok, limit_s=2.0)
        if "arp" in only:
            compare("ARP 500 vs arp-scan", [Target(a, "arp") for a in a500], 0.5,
                    ["arp-scan", "-I", seg.mlink, "-x", "-q", f"{a500[0]}-{a500[-1]}"], arpscan_ok, target_ratio=1.0)
            compare("ARP 2000 vs arp-scan", [Target(a, "arp") for a in a2000], 0.5,
                    ["arp-scan", "-I", seg.mlink, "-x", "-q", f"{a2000[0]}-{a2000[-1]}"], arpscan_ok)
        if "tcp" in only:
            compare("TCP 500 host:port", [Target(a, "tcp", TCP_PORT) for a in a500], 1.0, None, None, limit_s=1.0)
            compare("TCP 2000 host:port", [Target(a, "tcp", TCP_PORT) for a in a2000], 1.0, None, None)
        if "http" in only:
            seg.start_http()
            # curl's --parallel-max tops out at 300; ours has all 500 in flight (one timeout for the sweep)
            urls = [f"http://{a}:{HTTP_PORT}/ok" for a in a500]
            compare("HTTP 500 vs curl -Z", [Target(a, "http", HTTP_PORT, HttpSpec(path="/ok", body="healthy"))
                                            for a in a500], 2.0,
                    ["curl", "-s", "-Z", "--parallel-max", "300", "--max-time", "2", "-w", r"\ncode=%{http_code}\n",
                     *urls], curl_ok, target_ratio=1.5)
        print("ratio = ours / reference (median wall time; reference includes its process start); "
              "lost = worst repetition; neighbour caches flushed before every run")
    return 0


if __name__ == "__main__":
    run_main(main)
