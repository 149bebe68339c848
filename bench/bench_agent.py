#!/usr/bin/env python3
"""Benchmark the real agent: 500 boxes (icmp + arp + one tcp port) at interval 10 s; CPU, RSS, cycle time, detection.

    sudo .venv/bin/python bench/bench_agent.py [--duration 180 | --quick] [--boxes 500] [--mode both|with|without]
                                               [--profile] [--http]

What runs, all real:
- the segment of bench/bench_probes.py (imported, not copied): a monitor namespace with no route out and a
  target namespace holding N addresses of a free /21 of 198.18.0.0/15 plus a TCP listener on all of them;
  IPv4 only (icmp + arp + tcp per box: 3 probes per box);
- a throwaway influxd (lab.influx.InfluxServer) in the monitor namespace;
- `vobox-agent --netns MON run -c FILE` as a subprocess, killed after --duration.

Figures: average CPU (% of one core, utime+stime from /proc/PID/stat; steady = from the end of the first cycle
to the end of the run, whole = from process start incl. imports), peak RSS (VmHWM), cycle wall time from the
`agent` points' cycle_s (sweep, judging and the write of its points) and, from status.json, the full cycle incl. the
InfluxDB write and state save; detection latency = fault onset -> the open `freeze` point readable in InfluxDB
(polled every 100 ms). A fault removes a box's address from the target namespace (an l2-like freeze: no ARP,
no ping, no TCP); faults are spread over different phases of the cycle.

--http adds one `http` service probe per box ([[box.probe]] kind = "http", GET /ok, body "healthy") against an
asyncio HTTP server on every target address (tests/probes/services.py): run with and without it to see its cost.

"with" / "without" recorder: the same config, once with `[forensics] enabled = false` (no packet ring, no
evidence bundles). bench/bench_recorder.py --real measures the recorder's share in-process.

--profile adds a third run with py-spy (`--py-spy PATH`, default: py-spy on PATH) sampling the agent and prints
the top functions by own and total time; that run's CPU figures include the sampler's effect, so it is not
in the table.

Everything is removed at exit, also on Ctrl-C/SIGTERM; leftovers of a crashed run are removed at start.
"""
from __future__ import annotations

import argparse
import collections
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
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's product and lab
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_probes  # the segment builder; bench/ is not a package

from lab.influx import InfluxServer, kill_stale

HERE = Path(__file__).resolve().parent.parent

TMP_PREFIX = "vbxa-"          # /tmp/vbxa-<pid>-XXXX: influx data, configs, state dirs, logs
CLK_TCK = os.sysconf("SC_CLK_TCK")
INFLUX_PORT = 8086            # inside our own monitor namespace: nobody else listens there
def cleanup_leftovers() -> None:
    """Remove what a crashed earlier run left: its agent, its influxd, its temp dir, its namespaces."""
    for d in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*"):
        m = re.match(rf"{TMP_PREFIX}(\d+)-", d.name)
        if not m or Path(f"/proc/{m.group(1)}").exists():
            continue
        for pidfile in d.glob("*/agent.pid"):
            bench_probes.kill_recorded_agent(pidfile, d)
        kill_stale(str(d / "influx"))
        shutil.rmtree(d, ignore_errors=True)
        print(f"removed leftovers of an earlier run: {d}", file=sys.stderr)
    bench_probes.cleanup_leftovers()


def proc_cpu_s(pid: int) -> tuple[float, float]:
    """(own utime+stime, waited-for children's) of a process, in seconds."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17
    own = int(fields[11]) + int(fields[12])
    children = int(fields[13]) + int(fields[14])
    return own / CLK_TCK, children / CLK_TCK


def proc_status_kb(pid: int, key: str) -> int | None:
    """A `key: N kB` line of /proc/PID/status."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


@dataclass
class Fault:
    """One injected fault: box, address, onset, and when the open freeze point became readable."""

    box: str
    address: str
    planned_s: float            # seconds after the first cycle
    onset_s: float | None = None
    detected_s: float | None = None
    freeze_start_s: float | None = None
    layer: str | None = None
    restored: bool = False


@dataclass
class RunResult:
    """Figures of one agent run."""

    label: str
    wall_s: float = 0.0
    steady_s: float = 0.0
    cpu_whole_pct: float = 0.0
    cpu_steady_pct: float = 0.0
    children_cpu_s: float = 0.0
    vmhwm_mb: float = 0.0
    vmrss_mb: float = 0.0
    cycle_s: list[float] = field(default_factory=list)
    full_cycle_s: list[float] = field(default_factory=list)
    misfires: int = 0
    write_errors: int = 0
    probe_points: int = 0
    segment_freezes: int = 0
    faults: list[Fault] = field(default_factory=list)
    exit_code: int | None = None
    log_tail: str = ""


class Bench:
    """The segment, influxd and temp dir shared by the runs."""

    def __init__(self, args: argparse.Namespace, stack: ExitStack) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-"))
        stack.callback(shutil.rmtree, self.tmp, True)
        self.seg = bench_probes.Segment(args.boxes)
        stack.callback(self.seg.down)
        self.seg.up()
        if args.http:
            self.seg.start_http()
        self.influx = InfluxServer(str(self.tmp / "influx"), netns=self.seg.monitor, http_port=INFLUX_PORT)
        stack.callback(self.influx.stop)
        self.influx.start()
        self.boxes = [(f"bx{i:04d}", a) for i, a in enumerate(self.seg.addresses)]
        self.agent: subprocess.Popen | None = None
        self.last_exit: int | None = None
        stack.callback(self.kill_agent)
        self.removed: set[str] = set()
        stack.callback(self.restore_all)

    # --- pieces ---

    def config(self, database: str, state_dir: Path, recorder: bool = True) -> str:
        a = self.args
        lines = ["[agent]", f"interval = {a.interval!r}", f"timeout = {a.timeout!r}", f"jitter = {a.jitter!r}",
                 f'state_dir = "{state_dir}"', f'interface = "{self.seg.mlink}"', 'site = "bench"',
                 "", "[freeze]", f"fail_cycles = {a.fail_cycles}", "recover_cycles = 2",
                 "", "[influxdb]", f'url = "{self.influx.url}"', 'api = "v1"', f'database = "{database}"',
                 "", "[forensics]", f"enabled = {'true' if recorder else 'false'}"]
        for name, addr in self.boxes:
            lines += ["", "[[box]]", f'name = "{name}"', 'kind = "vm"', f'ipv4 = "{addr}"',
                      f"tcp_ports = [{bench_probes.TCP_PORT}]"]
            if a.http:
                lines += ["[[box.probe]]", 'kind = "http"', f"port = {bench_probes.HTTP_PORT}", 'path = "/ok"',
                          'body = "healthy"']
        return "\n".join(lines) + "\n"

    def remove_address(self, addr: str) -> None:
        bench_probes.sh("ip", "-n", self.seg.target, "addr", "del", f"{addr}/{self.seg.net.prefixlen}",
                        "dev", self.seg.tlink)
        self.removed.add(addr)

    def restore_address(self, addr: str) -> None:
        if addr in self.removed:
            bench_probes.sh("ip", "-n", self.seg.target, "addr", "add", f"{addr}/{self.seg.net.prefixlen}",
                            "dev", self.seg.tlink, check=False)
            self.removed.discard(addr)

    def restore_all(self) -> None:
        for addr in list(self.removed):
            self.restore_address(addr)

    def kill_agent(self) -> None:
        p, self.agent = self.agent, None
        if p is not None:
            self.last_exit = bench_probes.stop_group(p)

    def query(self, q: str, db: str) -> list[dict]:
        """Rows of the first series of an InfluxQL query, as dicts."""
        res = self.influx.query(q, db=db)
        rows: list[dict] = []
        for r in res.get("results", []):
            for s in r.get("series", []) or []:
                rows += [dict(zip(s["columns"], v, strict=True)) for v in s["values"]]
        return rows

    # --- one run ---

    def run(self, label: str, recorder: bool, profile_out: Path | None = None) -> RunResult:
        a = self.args
        res = RunResult(label)
        db = f"bench_{label.replace('-', '_')}"
        self.influx.create_database(db)
        run_dir = self.tmp / label
        run_dir.mkdir()
        cfg_path = run_dir / "agent.toml"
        cfg_path.write_text(self.config(db, run_dir / "state", recorder))
        self.seg.flush_neighbours()
        exe = HERE / ".venv/bin/vobox-agent"
        cli = ["--netns", self.seg.monitor, "run", "-c", str(cfg_path)]
        argv = [str(exe), *cli] if exe.exists() else [sys.executable, "-m", "agent", *cli]
        log_path = run_dir / "agent.log"
        status_path = run_dir / "state" / "status.json"
        with open(log_path, "wb") as logf:
            t_start = time.time()
            self.agent = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                          start_new_session=True, cwd=str(HERE))
        pid = self.agent.pid
        (run_dir / "agent.pid").write_text(str(pid))
        sampler = None
        if profile_out is not None:
            sampler = subprocess.Popen([a.py_spy, "record", "--nonblocking", "--threads", "-r", "100",
                                        "--format", "raw", "-o", str(profile_out), "-p", str(pid)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Fault schedule (seconds after the first cycle): spread over the cycle's phases.
        faults = []
        spacing = a.interval * 1.37
        picks = [len(self.boxes) * (k + 1) // (a.faults + 1) for k in range(a.faults)]
        for k, i in enumerate(picks):
            planned = a.warmup + k * spacing
            if planned + (a.fail_cycles + 1) * a.interval + 2 < a.duration:
                faults.append(Fault(self.boxes[i][0], self.boxes[i][1], planned))
        res.faults = faults
        first_cycle_at = None
        cpu_first = 0.0
        last_status_mtime = 0.0
        hwm = 0
        deadline = t_start + a.duration
        try:
            while time.time() < deadline:
                if self.agent.poll() is not None:
                    raise RuntimeError(f"agent exited early with {self.agent.returncode}")
                now = time.time()
                try:
                    mtime = status_path.stat().st_mtime
                except FileNotFoundError:
                    mtime = 0.0
                if mtime and mtime != last_status_mtime:
                    last_status_mtime = mtime
                    try:
                        updated = json.loads(status_path.read_text())["updated_s"]
                        if first_cycle_at is not None:
                            res.full_cycle_s.append(mtime - updated)
                    except (OSError, ValueError, KeyError):
                        pass
                    if first_cycle_at is None:
                        first_cycle_at = now
                        cpu_first = sum(proc_cpu_s(pid)[:1])
                hwm = max(hwm, proc_status_kb(pid, "VmHWM") or 0)
                if first_cycle_at is not None:
                    for f in faults:
                        if f.onset_s is None and now >= first_cycle_at + f.planned_s:
                            self.remove_address(f.address)
                            f.onset_s = time.time()
                        elif f.onset_s is not None and f.detected_s is None:
                            rows = self.query(f"SELECT \"open\", layer FROM freeze WHERE box = '{f.box}' "
                                              f"AND time >= {int((f.onset_s - 120) * 1e9)}", db)
                            if any(r.get("open") == 1 for r in rows):
                                f.detected_s = time.time()
                                f.freeze_start_s = _epoch(rows[0]["time"])
                                f.layer = next((r.get("layer") for r in rows if r.get("open") == 1), None)
                                self.restore_address(f.address)
                                f.restored = True
                time.sleep(0.1)
            res.wall_s = time.time() - t_start
            own, children = proc_cpu_s(pid)
            res.children_cpu_s = children
            res.cpu_whole_pct = 100 * own / res.wall_s
            if first_cycle_at is not None:
                res.steady_s = time.time() - first_cycle_at
                res.cpu_steady_pct = 100 * (own - cpu_first) / res.steady_s
            res.vmhwm_mb = max(hwm, proc_status_kb(pid, "VmHWM") or 0) / 1024
            res.vmrss_mb = (proc_status_kb(pid, "VmRSS") or 0) / 1024
        finally:
            if sampler is not None:
                sampler.send_signal(signal.SIGINT)
                try:
                    sampler.wait(20)
                except subprocess.TimeoutExpired:
                    sampler.kill()
            self.kill_agent()
            for f in faults:
                self.restore_address(f.address)
            res.log_tail = "".join(log_path.read_text(errors="replace").splitlines(True)[-15:])
        res.exit_code = self.last_exit
        t0 = int(t_start * 1e9)
        rows = self.query(f"SELECT cycle_s, misfires, write_errors FROM agent WHERE time >= {t0}", db)
        res.cycle_s = [r["cycle_s"] for r in rows if r.get("cycle_s") is not None]
        res.misfires = max((r.get("misfires") or 0 for r in rows), default=0)
        res.write_errors = max((r.get("write_errors") or 0 for r in rows), default=0)
        cnt = self.query(f"SELECT count(ok) FROM probe WHERE time >= {t0}", db)
        res.probe_points = int(cnt[0]["count"]) if cnt else 0
        seg = self.query(f"SELECT count(boxes) FROM segment_freeze WHERE time >= {t0}", db)
        res.segment_freezes = int(seg[0]["count"]) if seg else 0
        return res


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def summarize_profile(path: Path, top: int = 15) -> str:
    """Top functions (own and total samples) of the cycle thread from a py-spy raw (collapsed) file."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        # Count only samples where some agent/probes code is on the stack (skips idle scheduler/main waits).
        if not any(("agent/" in fr or "probes/" in fr) for fr in frames):
            continue
        k = int(n)
        samples += k
        own[frames[-1]] += k
        for fr in set(frames):
            total[fr] += k
    out = [f"py-spy: {samples} busy samples (100 Hz) in agent/probes code"]
    out.append("  own time (leaf frames):")
    out += [f"    {100 * c / samples:5.1f}%  {fr}" for fr, c in own.most_common(top)] if samples else []
    out.append("  total time (on stack), agent/ and probes/ frames:")
    ours = [(fr, c) for fr, c in total.most_common() if "agent/" in fr or "probes/" in fr]
    out += [f"    {100 * c / samples:5.1f}%  {fr}" for fr, c in ours[:top]] if samples else []
    return "\n".join(out)


def table(results: list[RunResult], args: argparse.Namespace) -> str:
    target_det = args.fail_cycles * args.interval + 2
    rows = [("figure", "target", *[r.label for r in results])]

    def row(name, target, fmt):
        rows.append((name, target, *[fmt(r) for r in results]))

    def cyc(xs, f):
        return f"{f(xs):.3f}" if xs else "-"

    row("run length s (steady part)", "", lambda r: f"{r.wall_s:.0f} ({r.steady_s:.0f})")
    row("CPU % of one core, steady", "<= 15", lambda r: f"{r.cpu_steady_pct:.2f}")
    row("CPU % of one core, whole run", "", lambda r: f"{r.cpu_whole_pct:.2f}")
    row("children CPU s (waited)", "", lambda r: f"{r.children_cpu_s:.2f}")
    row("peak RSS MB (VmHWM)", "<= 150", lambda r: f"{r.vmhwm_mb:.1f}")
    row("RSS MB at end", "", lambda r: f"{r.vmrss_mb:.1f}")
    row("cycles (agent points)", "", lambda r: str(len(r.cycle_s)))
    row("cycle_s median", "", lambda r: cyc(r.cycle_s, statistics.median))
    row("cycle_s p95", "", lambda r: cyc(r.cycle_s, lambda x: pct(x, 95)))
    row("cycle_s max", "", lambda r: cyc(r.cycle_s, max))
    row("full cycle s median (+write/save)", "", lambda r: cyc(r.full_cycle_s, statistics.median))
    row("full cycle s max", "", lambda r: cyc(r.full_cycle_s, max))
    row("misfires / write errors", "0 / 0", lambda r: f"{r.misfires} / {r.write_errors}")
    row("segment_freeze points", "", lambda r: str(r.segment_freezes))
    row("probe points per cycle", str(3 * args.boxes),
        lambda r: f"{r.probe_points / len(r.cycle_s):.0f}" if r.cycle_s else "-")

    def det(r: RunResult) -> str:
        xs = [f.detected_s - f.onset_s for f in r.faults if f.detected_s and f.onset_s]
        missed = sum(1 for f in r.faults if f.onset_s and not f.detected_s)
        if not xs:
            return "none" + (f" ({missed} missed)" if missed else "")
        return f"{min(xs):.1f}/{max(xs):.1f}" + (f" ({missed} missed)" if missed else "")
    row("detection s min/max", f"<= {target_det:g}", det)
    w = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def verdicts(results: list[RunResult], args: argparse.Namespace) -> list[str]:
    out = []
    target_det = args.fail_cycles * args.interval + 2
    for r in results:
        xs = [f.detected_s - f.onset_s for f in r.faults if f.detected_s and f.onset_s]
        missed = any(f.onset_s and not f.detected_s for f in r.faults)
        det_ok = bool(xs) and not missed and max(xs) <= target_det
        out.append(f"{r.label}: CPU {'PASS' if r.cpu_steady_pct <= 15 else 'FAIL'}, "
                   f"RSS {'PASS' if r.vmhwm_mb <= 150 else 'FAIL'}, "
                   f"detection {'PASS' if det_ok else 'FAIL'}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boxes", type=int, default=500)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--jitter", type=float, default=0.5)
    ap.add_argument("--fail-cycles", type=int, default=3)
    ap.add_argument("--duration", type=float, default=180.0, help="seconds per agent run (default 180)")
    ap.add_argument("--quick", action="store_true", help="60 s per run, one fault")
    ap.add_argument("--faults", type=int, default=4, help="faults per run, at different cycle phases (default 4)")
    ap.add_argument("--warmup", type=float, default=None, help="first fault this long after the first cycle")
    ap.add_argument("--mode", choices=("both", "with", "without"), default="both",
                    help="with and/or without the flight recorder")
    ap.add_argument("--profile", action="store_true", help="extra run sampled by py-spy; print the hot spots")
    ap.add_argument("--http", action="store_true", help="one http service probe per box too")
    ap.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy", help="py-spy executable")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.faults = 60.0, 1
    if args.warmup is None:
        args.warmup = 1.5 * args.interval if args.quick else 2 * args.interval
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (namespaces, raw sockets)")
    if shutil.which("influxd") is None:
        raise SystemExit("bench: influxd not installed (apt-get install influxdb)")
    if args.profile and shutil.which(args.py_spy) is None and not os.access(args.py_spy, os.X_OK):
        raise SystemExit(f"bench: --profile needs py-spy ({args.py_spy} not found; pip install py-spy)")
    cleanup_leftovers()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    results: list[RunResult] = []
    with ExitStack() as stack:
        b = Bench(args, stack)
        print(f"segment: monitor {b.seg.monitor} ({b.seg.monitor_ip}), target {b.seg.target} with "
              f"{args.boxes} addresses of {b.seg.net}; influxd {b.influx.url} in {b.seg.monitor}; "
              f"{args.boxes} boxes x (icmp, arp, tcp/{bench_probes.TCP_PORT}"
              f"{f', http/{bench_probes.HTTP_PORT}' if args.http else ''}) IPv4 only; interval {args.interval:g} s, "
              f"timeout {args.timeout:g} s, jitter {args.jitter:g} s, fail_cycles {args.fail_cycles}; "
              f"{args.duration:g} s per run; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}", flush=True)
        modes = {"both": [("with-recorder", True), ("without-recorder", False)],
                 "with": [("with-recorder", True)], "without": [("without-recorder", False)]}[args.mode]
        for label, rec in modes:
            print(f"run {label}: {args.duration:g} s ...", flush=True)
            r = b.run(label, rec)
            results.append(r)
            for f in r.faults:
                lat = f"{f.detected_s - f.onset_s:.2f} s" if f.detected_s and f.onset_s else "NOT DETECTED"
                start = (f", freeze start - onset {f.freeze_start_s - f.onset_s:+.2f} s"
                         if f.freeze_start_s and f.onset_s else "")
                print(f"  fault {f.box} ({f.address} removed) at +{f.planned_s:.1f} s after first cycle: "
                      f"detected {lat} after onset, layer {f.layer}{start}", flush=True)
            print(f"  agent exit code {r.exit_code}, load now {os.getloadavg()[0]:.2f}", flush=True)
            if r.exit_code not in (0, None):
                print("  agent log tail:\n" + r.log_tail, flush=True)
        if args.profile:
            out = b.tmp / "profile.raw"
            print(f"run profiled (py-spy, not in the table): {args.duration:g} s ...", flush=True)
            b.run("profiled", True, profile_out=out)
            print(summarize_profile(out) if out.exists() else "py-spy wrote nothing", flush=True)
    print()
    print(table(results, args))
    print("cycle_s = the agent point's field (sweep, judging and the write of its points); full cycle = status.json written "
          "- cycle start (incl. InfluxDB write and state save); detection = fault onset -> open freeze point "
          "readable in InfluxDB (polled every 100 ms)")
    for v in verdicts(results, args):
        print(v)
    return 0


if __name__ == "__main__":
    bench_probes.run_main(main)
