"""Cost of the packet flight recorder: CPU per 1000 recorded packets, per simulated 500-box cycle, and a real sweep.

    .venv/bin/python bench/bench_recorder.py [--boxes 500] [--cycles 5] [--real] [--interval 10]

1. hot path: `FlightRecorder.record` called with realistic frames, CPU us per 1000 packets;
2. simulated cycle: 500 boxes x (icmp, arp, icmp6, ndp) requests and replies (8 records per box)
   recorded + end_cycle(), CPU ms per cycle, and the share of one core at --interval;
   plus the memory the ring holds and the cost of one box's dump;
3. --real (root): a real `probes.sweep` over N addresses (icmp + arp + icmp6 + ndp) between two
   namespaces of our own (198.18.200.0/23, 2001:db8:f0::/64), with and without the recorder:
   CPU s per sweep (median), which includes the probes building the frames they hand over.
"""
from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent.forensics.recorder import FlightRecorder


def frames():
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, IPv6
    from scapy.layers.l2 import ARP, Ether

    return {
        "icmp": (bytes(IP(dst="198.18.200.1") / ICMP()), bytes(IP(src="198.18.200.1") / ICMP(type=0)), 101),
        "arp": (bytes(Ether() / ARP(pdst="198.18.200.1")), bytes(Ether(dst="02:00:00:00:00:01") / ARP(op=2)) + bytes(18), 1),
        "icmp6": (bytes(IPv6() / ICMPv6EchoRequest()), bytes(IPv6() / ICMPv6EchoReply()), 101),
        "ndp": (bytes(Ether() / IPv6() / ICMPv6ND_NS()), bytes(Ether() / IPv6() / ICMPv6ND_NA()), 1),
    }


def bench_hot_path(n: int = 1_000_000) -> float:
    """CPU microseconds per 1000 record() calls."""
    rec = FlightRecorder({}, max_records_per_cycle=n + 1)
    out, _inn, lt = frames()["icmp"]
    record = rec.record
    gc.collect()
    t0 = time.process_time()
    for _ in range(n):
        record(1.0, "out", "icmp", "198.18.200.1", out, lt)
    cpu = time.process_time() - t0
    return cpu / n * 1000 * 1e6


def _simulate(addrs, f, record, t: float) -> float:
    t0 = time.process_time()
    for v4, v6 in addrs:
        for probe, addr in (("icmp", v4), ("arp", v4), ("icmp6", v6), ("ndp", v6)):
            out, inn, lt = f[probe]
            record(t, "out", probe, addr, out, lt)
            record(t + 0.0005, "in", probe, addr, inn, lt)
    return time.process_time() - t0


def bench_cycles(boxes: int, cycles: int, interval_s: float) -> dict:
    """Simulated cycles of `boxes` boxes: recorder CPU per cycle (minus a no-op hook), ring memory, dump time."""
    f = frames()
    addrs = [(f"198.18.{200 + i // 250}.{i % 250 + 1}", f"2001:db8:f0::{i + 1:x}") for i in range(boxes)]
    rec = FlightRecorder({f"b{i}": a for i, a in enumerate(addrs)}, cycles=cycles)
    def noop(*_: object) -> None:
        return None

    with_rec: list[float] = []
    baseline: list[float] = []
    tracemalloc.start()
    for c in range(cycles * 4):
        t = 1000.0 + c * interval_s
        baseline.append(_simulate(addrs, f, noop, t))
        spent = _simulate(addrs, f, rec.record, t)
        t0 = time.process_time()
        rec.end_cycle()
        with_rec.append(spent + time.process_time() - t0)
    held, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        result = rec.dump(f"b{boxes // 2}", os.path.join(d, "onset.pcap"))
        dump_s = time.perf_counter() - t0
    cycle_ms = (statistics.median(with_rec) - statistics.median(baseline)) * 1000
    records = boxes * 8
    return {"records_per_cycle": records, "cycle_cpu_ms": cycle_ms, "per_1000_us": cycle_ms * 1000 / records * 1000,
            "core_share_pct": cycle_ms / 1000 / interval_s * 100, "ring_mb": held / 1e6,
            "frame_mb": rec.held_bytes / 1e6, "dump_ms": dump_s * 1000, "dump_packets": result.packets}


# --- real sweep between two namespaces of our own -------------------------------------------------

PREFIX = "fxb"


def _ip(*args: str, input_text: str | None = None) -> None:
    subprocess.run(["ip", *args], check=True, input=input_text, text=True, capture_output=True)


def cleanup_leftovers() -> None:
    """Remove namespaces of earlier runs of this script whose process is gone."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.match(rf"^({PREFIX}-(\d+)-\w+)", line)
        if m and not os.path.exists(f"/proc/{m.group(2)}"):
            subprocess.run(["ip", "netns", "del", m.group(1)], capture_output=True)


def bench_real(n: int, repeats: int) -> dict:
    """CPU per real sweep (icmp + arp + icmp6 + ndp over n addresses), without and with the recorder."""
    import probes
    from agent import netns
    from probes import Target

    cleanup_leftovers()
    mon, box = f"{PREFIX}-{os.getpid()}-mon", f"{PREFIX}-{os.getpid()}-box"
    _ip("netns", "add", mon)
    _ip("netns", "add", box)
    try:
        _ip("-n", mon, "link", "add", "fxm0", "type", "veth", "peer", "name", "fxb0", "netns", box)
        _ip("-n", mon, "addr", "add", "198.18.202.1/22", "dev", "fxm0")
        _ip("-n", mon, "addr", "add", "2001:db8:f0::ffff/64", "dev", "fxm0", "nodad")
        v4 = [f"198.18.{200 + i // 250}.{i % 250 + 1}" for i in range(n)]
        v6 = [f"2001:db8:f0::{i + 1:x}" for i in range(n)]
        batch = "".join(f"addr add {a}/22 dev fxb0\n" for a in v4)
        batch += "".join(f"addr add {a}/64 dev fxb0 nodad\n" for a in v6)
        _ip("-n", box, "-batch", "-", input_text=batch)
        for ns, link in ((mon, "fxm0"), (box, "fxb0")):
            _ip("-n", ns, "link", "set", link, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        subprocess.run(["ip", "netns", "exec", mon, "sysctl", "-qw", "net.ipv4.neigh.fxm0.gc_thresh3=8192"],
                       capture_output=True)
        time.sleep(1.0)
        targets = [Target(a, p) for a in v4 for p in ("icmp", "arp")]
        targets += [Target(a, p) for a in v6 for p in ("icmp6", "ndp")]
        out: dict = {"targets": len(targets)}
        rec = FlightRecorder({f"b{i}": (v4[i], v6[i]) for i in range(n)})
        runs: dict[str, list[float]] = {"without": [], "with": []}
        lost: dict[str, int] = {"without": 0, "with": 0}
        with netns.entered(mon):
            probes.sweep(targets, 1.0, interface="fxm0")  # warm-up: neighbour caches, imports
            for i in range(repeats * 2):
                mode = "with" if i % 2 else "without"
                t0 = time.process_time()
                results = probes.sweep(targets, 1.0, interface="fxm0",
                                       recorder=rec.record if mode == "with" else None)
                if mode == "with":
                    rec.end_cycle()
                runs[mode].append(time.process_time() - t0)
                lost[mode] += sum(1 for r in results if not r.ok)
        for mode in runs:
            out[f"{mode}_cpu_s"] = statistics.median(runs[mode])
            out[f"{mode}_lost"] = lost[mode]
        out["recorded_per_cycle"] = len(rec.snapshot().cycles[-1]) if rec.snapshot().cycles else 0
        return out
    finally:
        subprocess.run(["ip", "netns", "del", mon], capture_output=True)
        subprocess.run(["ip", "netns", "del", box], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boxes", type=int, default=500)
    ap.add_argument("--cycles", type=int, default=5, help="cycles the ring keeps")
    ap.add_argument("--interval", type=float, default=10.0, help="cycle interval for the share of one core")
    ap.add_argument("--real", action="store_true", help="also time real sweeps with/without the recorder (root)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    hot = bench_hot_path()
    print(f"hot path: record() {hot:.0f} us CPU per 1000 packets")
    c = bench_cycles(args.boxes, args.cycles, args.interval)
    print(f"simulated cycle, {args.boxes} boxes x 4 probes (requests + replies = {c['records_per_cycle']} records): "
          f"recorder {c['cycle_cpu_ms']:.2f} ms CPU per cycle incl. end_cycle ({c['per_1000_us']:.0f} us per 1000 packets), "
          f"{c['core_share_pct']:.3f}% of one core at interval {args.interval:g} s")
    print(f"ring of {args.cycles} cycles: {c['frame_mb']:.2f} MB of frames, {c['ring_mb']:.2f} MB Python memory; "
          f"dump of one box: {c['dump_ms']:.1f} ms ({c['dump_packets']} packets)")
    if args.real:
        if os.geteuid() != 0:
            print("--real needs root (namespaces, raw sockets)", file=sys.stderr)
            return 2
        r = bench_real(args.boxes, args.repeats)
        extra = r["with_cpu_s"] - r["without_cpu_s"]
        print(f"real sweep, {args.boxes} addresses ({r['targets']} targets: icmp, arp, icmp6, ndp), median of "
              f"{args.repeats}: without recorder {r['without_cpu_s']:.3f} s CPU, with {r['with_cpu_s']:.3f} s CPU "
              f"({extra * 1000:+.1f} ms per cycle = {extra / args.interval * 100:+.2f}% of one core at "
              f"{args.interval:g} s); {r['recorded_per_cycle']} packets recorded per cycle; "
              f"failed probes without/with: {r['without_lost']}/{r['with_lost']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
