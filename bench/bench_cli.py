#!/usr/bin/env python3
"""Benchmark `vobox-agent` as an admin runs it: whole process, wall-clock medians, against fping and arp-scan.

Each figure is the wall time of one `vobox-agent ...` process from fork to exit
(interpreter start, imports, parsing, the work, printing), median of --reps runs:

    --version, --help                  target <= 0.15 s
    status -c FILE (fresh status.json) target <= 0.3 s    (50 boxes; no InfluxDB is asked)
    probe 500 ICMP                     target <= 0.5x  `fping -q -c1 -i1 -t500` (same run, same targets)
    probe 500 ARP                      target <= 0.3x  `arp-scan` with its defaults (bandwidth, retries)
    probe 500 TCP host:port            target <= 0.25 s
    probe 2000 ICMP                    target <= 0.2x  `fping -q -c1 -i1 -t500`

The targets sit in a throwaway target namespace, probed from a monitor namespace
with no route out: the segment of bench/bench_probes.py (its `Segment`), and the
processes are started from a thread inside the monitor namespace, as that bench
starts fping. Needs root, fping and arp-scan for the probe rows; --only
version,help,status runs without them.

    sudo .venv/bin/python bench/bench_cli.py [--reps 5] [--only version,help,status,probe] [--exe PATH]
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's product
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared bench helpers; bench/ is not a package

from bench_probes import TCP_PORT, Segment, arpscan_ok, cleanup_leftovers, fping_ok, med, run_main, sh

from agent import atomic, netns

HERE = Path(__file__).resolve().parent.parent

SECTIONS = ("version", "help", "status", "probe")
STATUS_BOXES = 50
PROBE_TIMEOUT_S = 0.5   # ours as fping's -t500
TCP_TIMEOUT_S = 1.0


def timed(argv: list[str], namespace: str | None = None) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s of the child, the process) of one run of ARGV, started inside NAMESPACE when given."""
    with netns.entered(namespace) if namespace else nullcontext():
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc


def answered_rows(out: str) -> int:
    """Rows of `vobox-agent probe`'s table whose OK column says yes."""
    return len(re.findall(r"^\S+\s+\S+\s+\d*\s*yes\b", out, re.M))


def status_config(directory: Path, boxes: int) -> Path:
    """A config of BOXES vm boxes and a fresh status.json for it, written by the agent's own StatusListener."""
    from agent.listeners.status import StatusListener

    state_dir = directory / "state"
    state_dir.mkdir()
    lines = ["[agent]", "interval = 10", f'state_dir = "{state_dir}"', 'site = "bench"', "",
             "[influxdb]", 'url = "http://127.0.0.1:9"', 'database = "vobox"', ""]
    for i in range(boxes):
        lines += ["[[box]]", f'name = "vm-{i}"', 'kind = "vm"', f'ipv4 = "192.0.2.{i + 1}"', ""]
    path = directory / "agent.toml"
    path.write_text("\n".join(lines))
    listener = StatusListener(str(state_dir), {f"vm-{i}": "vm" for i in range(boxes)}, site="bench",
                              interval_s=10, budget_per_hour=3)
    atomic.write_json(listener.path, listener.status(time.time()))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per measurement (default 5)")
    parser.add_argument("--only", default=",".join(SECTIONS), metavar="SECTIONS",
                        help=f"comma list of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--exe", default=str(Path(sys.executable).parent / "vobox-agent"),
                        help="the vobox-agent to time (default: the one next to this Python)")
    args = parser.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not only or only - set(SECTIONS):
        raise SystemExit(f"bench: --only takes a comma list of {', '.join(SECTIONS)}, got {args.only!r}")
    if args.reps < 1:
        raise SystemExit(f"bench: --reps must be >= 1, got {args.reps}")
    exe = args.exe
    if not os.access(exe, os.X_OK):
        raise SystemExit(f"bench: {exe} is not an executable vobox-agent (--exe)")
    print(f"vobox-agent: {exe}; reps={args.reps}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    def row(label: str, argv: list[str], *, limit_s: float | None = None, namespace: str | None = None,
            before=None, ok=None) -> tuple[float, float]:
        walls, cpus = [], []
        for _ in range(args.reps):
            if before:
                before()
            wall, cpu, proc = timed(argv, namespace)
            if ok is not None and proc.returncode != 0:
                print(f"  {label}: exit {proc.returncode}: {proc.stderr.strip()[:300]}", file=sys.stderr)
            walls.append(wall)
            cpus.append(cpu)
        text = f"{label:<34} {med(walls):6.3f} s  cpu {med(cpus):6.3f} s"
        if limit_s is not None:
            text += f"  [<= {limit_s} s: {'PASS' if med(walls) <= limit_s else 'FAIL'}]"
        print(text, flush=True)
        return med(walls), med(cpus)

    if "version" in only:
        row("vobox-agent --version", [exe, "--version"], limit_s=0.15, ok=True)
    if "help" in only:
        row("vobox-agent --help", [exe, "--help"], limit_s=0.15, ok=True)
        row("vobox-agent probe --help", [exe, "probe", "--help"], limit_s=0.15, ok=True)
    if "status" in only:
        with tempfile.TemporaryDirectory(prefix="vobox-bench-cli-") as tmp:
            config = status_config(Path(tmp), STATUS_BOXES)
            row(f"status ({STATUS_BOXES} boxes, status.json)", [exe, "status", "-c", str(config)], limit_s=0.3, ok=True)
    if "probe" not in only:
        return 0

    if os.geteuid() != 0:
        raise SystemExit("bench: the probe rows need root (namespaces, raw sockets)")
    for tool in ("fping", "arp-scan"):
        if not sh("sh", "-c", f"command -v {tool}", check=False).stdout:
            raise SystemExit(f"bench: {tool} not installed (scripts/setup installs it)")
    cleanup_leftovers()
    seg = Segment(2000)
    with ExitStack() as stack:
        stack.callback(seg.down)
        seg.up()
        print(f"segment: monitor {seg.monitor} ({seg.monitor_ip}), target {seg.target} holding "
              f"{len(seg.addresses)} addresses of {seg.net}")
        a500, a2000 = seg.addresses[:500], seg.addresses

        def compare(label: str, ours: list[str], ref: list[str] | None, ref_ok, n: int, *,
                    ratio: float | None = None, limit_s: float | None = None) -> None:
            w_o, c_o, lost_o, w_r, lost_r = [], [], [], [], []
            for _ in range(args.reps):
                seg.flush_neighbours()
                wall, cpu, proc = timed(ours, seg.monitor)
                w_o.append(wall)
                c_o.append(cpu)
                lost_o.append(n - answered_rows(proc.stdout))
                if proc.returncode not in (0, 1):
                    print(f"  {label}: exit {proc.returncode}: {proc.stderr.strip()[:300]}", file=sys.stderr)
                if ref:
                    seg.flush_neighbours()
                    wall, _cpu, proc = timed(ref, seg.monitor)
                    w_r.append(wall)
                    lost_r.append(n - ref_ok(proc.stdout + proc.stderr))
            text = f"{label:<34} {med(w_o):6.3f} s  cpu {med(c_o):6.3f} s  lost {max(lost_o):4d}"
            verdict = []
            if ref:
                text += f" | ref {med(w_r):6.3f} s  lost {max(lost_r):4d} | ratio {med(w_o) / med(w_r):5.2f}"
                if ratio is not None:
                    verdict.append(f"ratio <= {ratio}: {'PASS' if med(w_o) / med(w_r) <= ratio else 'FAIL'}")
            if limit_s is not None:
                verdict.append(f"<= {limit_s} s: {'PASS' if med(w_o) <= limit_s else 'FAIL'}")
            verdict.append(f"0 loss: {'PASS' if max(lost_o) == 0 else 'FAIL'}")
            print(text + "  [" + ", ".join(verdict) + "]", flush=True)

        def fping(addresses: list[str]) -> list[str]:
            return ["fping", "-q", "-c1", "-i1", f"-t{int(PROBE_TIMEOUT_S * 1000)}", *addresses]

        def probe(kind: str, addresses: list[str], timeout_s: float, *extra: str) -> list[str]:
            return [exe, "probe", "--probe", kind, "--timeout", f"{timeout_s:g}", *extra, *addresses]

        compare("probe 500 ICMP vs fping", probe("icmp", a500, PROBE_TIMEOUT_S), fping(a500), fping_ok, 500,
                ratio=0.5)
        compare("probe 500 ARP vs arp-scan", probe("arp", a500, PROBE_TIMEOUT_S),
                ["arp-scan", "-I", seg.mlink, "-x", "-q", f"{a500[0]}-{a500[-1]}"], arpscan_ok, 500, ratio=0.3)
        compare("probe 500 TCP", probe("tcp", a500, TCP_TIMEOUT_S, "--port", str(TCP_PORT)), None, None, 500,
                limit_s=0.25)
        compare("probe 2000 ICMP vs fping", probe("icmp", a2000, PROBE_TIMEOUT_S), fping(a2000), fping_ok, 2000,
                ratio=0.2)
        print("whole process, median wall time; cpu = the process's user+system time; ratio = ours / reference; "
              "lost = worst repetition; neighbour caches flushed before every run")
    return 0


if __name__ == "__main__":
    run_main(main)
