#!/usr/bin/env python3
"""Benchmark detection on a lossy segment: false freezes, detection latency and MTTR at 1 % and 5 % random loss.

    sudo .venv/bin/python bench/bench_loss.py [--duration 3600] [--loss 1,5] [--intervals 10,2]
                                              [--modes before,after] [--containers 3] [--vms 2] [--seed 1]

All real: a lab (macvlan containers, VM stand-ins, dockerd, influxd in the monitor namespace) whose segment
drops about N % of the frames each way (`Lab.loss`: nft `numgen random` on receipt at the monitor and every
box), and one `vobox-agent --netns MON run` per (interval, mode), all at once against the same boxes and the
same faults, each writing to its own database; default thresholds (timeout 1 s, jitter 0.5 s, fail_cycles 3,
recover_cycles 2), remediation off. Modes: "before" = `[freeze] confirm_interval = 0` (no fast confirmation,
the agent before issue 15), "after" = the default (confirm_interval 1 s).

Per loss level, for --duration seconds after a warm-up: random real faults (containers l2, l3, l4, pause;
VMs l2, l3, l4) at random times on random boxes (at most --max-faults at once), each held until every agent
can have detected it (fail_cycles x the longest interval + jitter + timeout + 8 s), then cleared; a cleared
box rests until every agent can have seen it recover. From each agent's own records:
- false freezes: `freeze` points (InfluxDB) that overlap no injected fault of their box (fault start ->
  the box answering again after the clear), per box-hour of the run;
- detection latency: fault start -> the agent's `box B: FROZEN` log record (--log-json), p50/p95;
  missed = faults with no such record before the fault was cleared;
- MTTR: fault cleared (the clear starts) -> the agent's `box B: freeze over` record (recovery confirmed,
  the box up again), p50/p95.
Everything is removed at exit, also on Ctrl-C/SIGTERM; leftovers of a crashed run are removed at start.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's product and lab
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_probes  # shared bench helpers; bench/ is not a package

from lab import Lab, LabError, cleanup_leftovers as lab_cleanup_leftovers

HERE = Path(__file__).resolve().parent.parent

TMP_PREFIX = "vbxl-"
TIMEOUT_S, JITTER_S, FAIL_CYCLES, RECOVER_CYCLES = 1.0, 0.5, 3, 2   # the defaults
FAULTS = {"container": ("l2", "l3", "l4", "pause"), "vm": ("l2", "l3", "l4")}
TICK_S = 0.5


@dataclass
class Fault:
    """One injected fault: epoch times of its start, the clear's start and the box answering again."""

    box: str
    kind: str
    start_s: float                  # the injection begins (detection is counted from here)
    placed_s: float = 0.0           # the injection returned: the fault is in place
    clear_s: float | None = None
    healthy_s: float | None = None


@dataclass
class AgentRun:
    """One agent of a loss level: its config, process and database."""

    interval_s: float
    mode: str
    db: str
    dir: Path
    proc: subprocess.Popen | None = None

    @property
    def label(self) -> str:
        return f"i{self.interval_s:g}-{self.mode}"


@dataclass
class Figures:
    """What one agent recorded, judged against the injected faults."""

    loss: float
    interval_s: float
    mode: str
    box_h: float
    faults: int = 0
    detected: list[float] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    false_freezes: list[str] = field(default_factory=list)
    mttr: list[float] = field(default_factory=list)
    misfires: int = 0
    cycles: int = 0
    by_kind: dict[str, list[float]] = field(default_factory=dict)   # detection latencies per fault kind


def cleanup_leftovers() -> None:
    """Kill the agents and remove the temp dir of a crashed earlier run; labs whose owner is gone are removed."""
    for d in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*"):
        m = re.match(rf"{TMP_PREFIX}(\d+)-", d.name)
        if not m or Path(f"/proc/{m.group(1)}").exists():
            continue
        for pidfile in d.glob("*/agent.pid"):
            bench_probes.kill_recorded_agent(pidfile, d, group=True)
        shutil.rmtree(d, ignore_errors=True)
        print(f"removed leftovers of an earlier run: {d}", file=sys.stderr)
    for removed in lab_cleanup_leftovers():
        print(f"removed leftover lab: {removed}", file=sys.stderr)


def pct(xs: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no data."""
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def log_records(path: Path) -> list[tuple[float, str]]:
    """(epoch time, message) of every JSON log line of an agent."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "time" in rec:
            out.append((_epoch(rec["time"]), rec.get("message", "")))
    return out


class LossBench:
    """The lab, the agents of the current loss level and the fault injector."""

    def __init__(self, args: argparse.Namespace, stack: ExitStack) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-"))
        stack.callback(shutil.rmtree, self.tmp, True)
        t0 = time.monotonic()
        self.lab = Lab.create(containers=args.containers, vms=args.vms, influx=True)
        stack.callback(self.lab.down)
        self.lab_s = time.monotonic() - t0
        self.agents: list[AgentRun] = []
        stack.callback(self.stop_agents)
        longest = max(args.intervals)
        self.hold_s = FAIL_CYCLES * longest + JITTER_S + TIMEOUT_S + 8.0
        self.rest_s = (RECOVER_CYCLES + 1) * longest + JITTER_S + TIMEOUT_S + 5.0

    def start_agents(self, loss: float) -> None:
        for interval in self.args.intervals:
            for mode in self.args.modes:
                run = AgentRun(interval, mode, f"loss{loss:g}_i{interval:g}_{mode}".replace(".", "_"),
                               self.tmp / f"loss{loss:g}-i{interval:g}-{mode}")
                run.dir.mkdir(parents=True)
                over = {"confirm_interval": 0} if mode == "before" else {}
                cfg = self.lab.agent_config(interval=interval, timeout=TIMEOUT_S, jitter=JITTER_S,
                                            fail_cycles=FAIL_CYCLES, recover_cycles=RECOVER_CYCLES,
                                            state_dir=str(run.dir / "state"), database=run.db, **over)
                (run.dir / "agent.toml").write_text(cfg)
                exe = HERE / ".venv/bin/vobox-agent"
                cli = ["--log-json", "--netns", self.lab.monitor_ns, "run", "-c", str(run.dir / "agent.toml")]
                argv = [str(exe), *cli] if exe.exists() else [sys.executable, "-m", "agent", *cli]
                with open(run.dir / "agent.log", "wb") as logf:
                    run.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                                stderr=subprocess.STDOUT, start_new_session=True, cwd=str(HERE))
                (run.dir / "agent.pid").write_text(str(run.proc.pid))
                self.agents.append(run)

    def stop_agents(self) -> None:
        for run in self.agents:
            p, run.proc = run.proc, None
            bench_probes.stop_group(p)

    def all_up(self) -> bool:
        for run in self.agents:
            if run.proc is None or run.proc.poll() is not None:
                tail = (run.dir / "agent.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"agent {run.label} exited; log tail:\n{tail}")
            try:
                st = json.loads((run.dir / "state" / "status.json").read_text())
            except (OSError, ValueError):
                return False
            if not all(b["state"] == "up" for b in st["boxes"].values()):
                return False
        return True

    def query(self, q: str, db: str) -> list[dict]:
        res = self.lab._influx_server().query(q, db=db)
        rows: list[dict] = []
        for r in res.get("results", []):
            for s in r.get("series", []) or []:
                rows += [dict(zip(s["columns"], v, strict=True)) for v in s["values"]]
        return rows

    def inject(self, duration_s: float) -> list[Fault]:
        """Random faults for duration_s; returns them, every one cleared."""
        a, boxes = self.args, {b.name: b for b in self.lab.boxes}
        active: dict[str, Fault] = {}
        resting: dict[str, float] = {}       # box -> when it may get a fault again
        done: list[Fault] = []
        end = time.time() + duration_s
        rate = TICK_S / a.mean_gap
        while True:
            now = time.time()
            for name, f in list(active.items()):
                if now >= f.start_s + self.hold_s or now >= end:
                    f.clear_s = time.time()
                    self.lab.clear(name, wait=True, timeout_s=60)
                    f.healthy_s = time.time()
                    resting[name] = f.healthy_s + self.rest_s
                    done.append(active.pop(name))
                    print(f"  {time.strftime('%H:%M:%S')} {name} {f.kind} cleared after "
                          f"{f.clear_s - f.start_s:.1f} s", flush=True)
            if now >= end:
                break
            free = [n for n in boxes if n not in active and resting.get(n, 0) <= now]
            # a fault starts only when it can be held in full before the end (every agent can detect it)
            if free and len(active) < a.max_faults and now + self.hold_s < end and self.rng.random() < rate:
                name = self.rng.choice(free)
                kind = self.rng.choice(FAULTS[boxes[name].kind])
                t = time.time()
                try:
                    self.lab.fault(name, kind)
                except LabError as exc:   # e.g. dockerd restarted by someone else: the level ends here
                    print(f"  lab error, the run ends early: {exc}", flush=True)
                    self.lab.clear_all(wait=False)
                    for f in active.values():
                        f.clear_s = f.healthy_s = time.time()
                        done.append(f)
                    return done
                active[name] = Fault(name, kind, t, time.time())
                print(f"  {time.strftime('%H:%M:%S')} {name} {kind} injected", flush=True)
            for run in self.agents:
                if run.proc is None or run.proc.poll() is not None:
                    raise RuntimeError(f"agent {run.label} exited during the run")
            time.sleep(max(0.0, TICK_S - (time.time() - now)))
        return done

    def judge(self, run: AgentRun, loss: float, faults: list[Fault], t0: float, t1: float) -> Figures:
        fig = Figures(loss, run.interval_s, run.mode, len(self.lab.boxes) * (t1 - t0) / 3600, len(faults))
        records = log_records(run.dir / "agent.log")
        for f in faults:
            healthy_s, clear_s = f.healthy_s, f.clear_s
            assert healthy_s is not None and clear_s is not None  # inject() returns only cleared faults
            frozen = [t for t, m in records if m.startswith(f"box {f.box}: FROZEN") and f.start_s <= t <= healthy_s]
            if frozen:
                fig.detected.append(frozen[0] - f.start_s)
                fig.by_kind.setdefault(f"{self.lab.box(f.box).kind} {f.kind}", []).append(frozen[0] - f.start_s)
            else:
                fig.missed.append(f"{f.box} {f.kind}")
                continue
            over = [t for t, m in records if m.startswith(f"box {f.box}: freeze over") and t >= clear_s]
            if over:
                fig.mttr.append(over[0] - clear_s)
        for fr in self.query("SELECT * FROM freeze", run.db):
            start = _epoch(fr["time"])
            if start < t0 - 1 or start > t1:
                continue
            stop = start + (fr.get("duration_s") or 0.0)
            if not any(f.box == fr["box"] and start <= (f.healthy_s or 0.0) and stop >= f.start_s for f in faults):
                fig.false_freezes.append(f"{fr['box']} {fr['layer']} at {time.strftime('%H:%M:%S', time.localtime(start))} "
                                         f"for {stop - start:.1f} s")
        rows = self.query(f"SELECT cycle_s, misfires FROM agent WHERE time >= {int(t0 * 1e9)}", run.db)
        fig.cycles = len(rows)
        fig.misfires = max((r.get("misfires") or 0 for r in rows), default=0)
        return fig

    def level(self, loss: float) -> list[Figures]:
        a = self.args
        self.lab.loss(loss)
        self.agents = []
        self.start_agents(loss)
        deadline = time.time() + 120
        while not self.all_up():
            if time.time() > deadline:
                raise RuntimeError("agents do not report every box up within 120 s")
            time.sleep(0.5)
        time.sleep(2 * max(a.intervals))
        t0 = time.time()
        print(f"loss {loss:g} %: {len(self.agents)} agents ({', '.join(r.label for r in self.agents)}) up; "
              f"faults for {a.duration:g} s (hold {self.hold_s:.1f} s, rest {self.rest_s:.1f} s)", flush=True)
        faults = self.inject(a.duration)
        t1 = time.time()
        time.sleep(self.rest_s)
        counters = self.lab.loss_counters()
        self.stop_agents()
        seen = sum(s for s, _ in counters.values())
        dropped = sum(d for _, d in counters.values())
        inject_s = [f.placed_s - f.start_s for f in faults]   # counted in detection, the same for every agent
        print(f"loss {loss:g} %: {dropped} of {seen} frames dropped on receipt "
              f"({100 * dropped / max(1, seen):.2f} %); injecting a fault took "
              f"p50 {1000 * (pct(inject_s, 50) or 0):.0f} ms, p95 {1000 * (pct(inject_s, 95) or 0):.0f} ms", flush=True)
        self.lab.loss(0)
        return [self.judge(run, loss, faults, t0, t1) for run in self.agents]


def fmt(x: float | None, w: int = 6) -> str:
    return f"{x:{w}.1f}" if x is not None else f"{'-':>{w}}"


def table(figs: list[Figures]) -> str:
    head = (f"{'loss %':>6} {'interval s':>10} {'mode':<7} {'box-h':>6} {'faults':>6} {'missed':>6} "
            f"{'false':>5} {'false/box-h':>11} {'detect p50':>10} {'p95':>6} {'target p95':>10} "
            f"{'MTTR p50':>8} {'p95':>6} {'misfires':>8}")
    lines = [head]
    for f in figs:
        target = f.interval_s + 3.0
        p95 = pct(f.detected, 95)
        verdict = "-" if p95 is None else ("PASS" if p95 <= target else "FAIL")
        lines.append(f"{f.loss:>6g} {f.interval_s:>10g} {f.mode:<7} {f.box_h:>6.2f} {f.faults:>6} {len(f.missed):>6} "
                     f"{len(f.false_freezes):>5} {len(f.false_freezes) / f.box_h if f.box_h else 0:>11.2f} "
                     f"{fmt(pct(f.detected, 50), 10)} {fmt(p95)} {f'<= {target:g} ' + verdict:>10} "
                     f"{fmt(pct(f.mttr, 50), 8)} {fmt(pct(f.mttr, 95))} {f.misfires:>8}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=3600.0, help="seconds of faults per loss level (default 3600)")
    ap.add_argument("--loss", default="1,5", help="loss levels in %%, comma-separated (default 1,5)")
    ap.add_argument("--intervals", default="10,2", help="agent intervals in s, comma-separated (default 10,2)")
    ap.add_argument("--modes", default="before,after", help="before (confirm_interval = 0), after (the default)")
    ap.add_argument("--containers", type=int, default=3)
    ap.add_argument("--vms", type=int, default=2)
    ap.add_argument("--max-faults", type=int, default=2, help="faults active at once, at most (default 2)")
    ap.add_argument("--mean-gap", type=float, default=15.0, help="mean seconds between fault starts (default 15)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    try:
        args.loss_levels = [float(x) for x in args.loss.split(",") if x.strip()]
        args.intervals = [float(x) for x in args.intervals.split(",") if x.strip()]
    except ValueError as exc:
        raise SystemExit(f"bench: --loss and --intervals take comma-separated numbers: {exc}") from None
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(args.modes) <= {"before", "after"} or not args.modes:
        raise SystemExit(f"bench: --modes takes before and/or after, got {args.modes}")
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (lab: namespaces, Docker)")
    cleanup_leftovers()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    figs: list[Figures] = []
    with ExitStack() as stack:
        b = LossBench(args, stack)
        print(f"lab {b.lab.run_id} up in {b.lab_s:.1f} s: {', '.join(f'{x.name} ({x.kind})' for x in b.lab.boxes)}; "
              f"timeout {TIMEOUT_S:g} s, jitter {JITTER_S:g} s, fail_cycles {FAIL_CYCLES}, recover_cycles "
              f"{RECOVER_CYCLES}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}", flush=True)
        for loss in args.loss_levels:
            level = b.level(loss)
            figs += level
            print(table(level), flush=True)
            for f in level:
                for what in f.false_freezes:
                    print(f"  false freeze (loss {loss:g} %, {f.mode}, interval {f.interval_s:g} s): {what}")
                for what in f.missed:
                    print(f"  missed (loss {loss:g} %, {f.mode}, interval {f.interval_s:g} s): {what}")
    print()
    for f in figs:
        kinds = ", ".join(f"{k} {fmt(pct(v, 50), 0).strip()}/{fmt(pct(v, 95), 0).strip()}"
                          for k, v in sorted(f.by_kind.items()))
        print(f"interval {f.interval_s:g} s {f.mode}, loss {f.loss:g} %: detect p50/p95 by fault: {kinds}")
    print(table(figs))
    print("detect = fault start -> the agent's FROZEN record; MTTR = the clear starts -> the agent's `freeze over` "
          "(box up again); false = freezes overlapping no injected fault of their box")
    return 0


if __name__ == "__main__":
    bench_probes.run_main(main)
