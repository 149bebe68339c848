"""A synthetic fleet written to both stores the report reads: InfluxDB line protocol and OpenMetrics text
for `promtool tsdb create-blocks-from openmetrics`, from one deterministic timeline per box.

What the agent would write for each cycle (agent.storage.points: `box`, `agent`, `freeze`, `remediation`)
and what its /metrics would show at a scrape half a cycle later (agent.listeners.metrics: the counters
and gauges agent.report.prom reads). Freezes open after FAIL_CYCLES failing cycles and close RECOVER_CYCLES
healthy cycles later; a third deepen before they end; a container's freeze gets one restart_container
(recovered); the first box of each site spends two hours in a maintenance window on the first day; the
agent of site s1 restarts half way (its counters start again from 0, right after a scrape: nothing lost);
box 1 has a freeze open across STRADDLE_S (tests pick a range starting there).

Used by tests/agent/report/test_prometheus_synth_lab.py (small) and bench/bench_report.py (500 boxes).
"""
from __future__ import annotations

import random
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

FAIL_CYCLES = 2
RECOVER_CYCLES = 2
LAYER_ORDER = ("l2", "l3", "l4", "l7")      # probes.LAYERS, deepest first
GAUGE_LAYERS = ("none", "l2", "l3", "l4", "l7")
STRADDLE_S = 12 * 3600                      # box 1 has a freeze open across t0 + 12 h


@dataclass(frozen=True, slots=True)
class Freeze:
    """Failing cycles [start, start + length); detected at start + FAIL_CYCLES - 1 at `detect`, deepest `deepest`
    from cycle `deepen_at` on (== detection when it does not deepen)."""

    start: int
    length: int
    detect: str
    deepest: str
    deepen_at: int


@dataclass(slots=True)
class Box:
    """One box's timeline (cycle index -> state)."""

    name: str
    kind: str
    site: str
    freezes: list[Freeze]
    maintenance: range = range(0)
    up: bytearray = field(default_factory=bytearray)
    layer: bytearray = field(default_factory=bytearray)        # index into GAUGE_LAYERS after the cycle
    start_s: array = field(default_factory=lambda: array("d"))  # open freeze start after the cycle (0: none)


@dataclass(frozen=True)
class Fleet:
    """n_boxes boxes over days at interval_s from t0_s, in sites s0, s1."""

    n_boxes: int
    days: float
    interval_s: int = 60
    t0_s: int = 1_700_000_000 // 86400 * 86400
    seed: int = 31
    sites: tuple[str, ...] = ("s0", "s1")
    site_label: str = "site"    # the label carrying the site in Prometheus (InfluxDB: the tag `site`)

    @property
    def cycles(self) -> int:
        """Cycles per box."""
        return int(self.days * 86400 // self.interval_s)

    def t(self, i: int) -> int:
        """Cycle i's time (s)."""
        return self.t0_s + i * self.interval_s

    def scrape(self, i: int) -> int:
        """The scrape after cycle i (ms)."""
        return (self.t(i) * 1000) + self.interval_s * 500

    @property
    def restart_cycle(self) -> int:
        """Site s1's agent restarts before this cycle (its counters from 0 again)."""
        return self.cycles // 2

    def boxes(self) -> Iterator[Box]:
        """Every box with its timeline."""
        for i in range(self.n_boxes):
            yield self.box(i)

    def box(self, idx: int) -> Box:
        """Box idx: kind alternates container/vm; VMs freeze twice as often."""
        rng = random.Random(self.seed * 1_000_003 + idx)
        kind = "container" if idx % 2 == 0 else "vm"
        site = self.sites[idx % len(self.sites)]
        n = self.cycles
        per_cycle = (0.4 if kind == "container" else 0.8) / 86400 * self.interval_s
        maint = range(60 * 60 // self.interval_s, 3 * 60 * 60 // self.interval_s) if idx < len(self.sites) else range(0)
        freezes: list[Freeze] = []
        i = int(rng.expovariate(per_cycle))
        if idx == 1:   # a freeze open across STRADDLE_S
            s = STRADDLE_S // self.interval_s - 10
            freezes.append(Freeze(s, 30, "l4", "l2", s + 15))
            i = s + 40 + int(rng.expovariate(per_cycle))
        while i < n:
            length = FAIL_CYCLES + int(rng.expovariate(1 / 15))
            if not (set(range(i, i + length + RECOVER_CYCLES + 2)) & set(maint)):
                detect = rng.choice(("l2", "l3", "l4"))
                deepest = detect
                deepen_at = i + FAIL_CYCLES - 1
                if rng.random() < 0.3 and detect != "l2" and length > FAIL_CYCLES + 1:
                    deepest = LAYER_ORDER[LAYER_ORDER.index(detect) - 1]
                    deepen_at = i + FAIL_CYCLES + rng.randrange(length - FAIL_CYCLES)
                freezes.append(Freeze(i, length, detect, deepest, deepen_at))
            i += length + RECOVER_CYCLES + 1 + int(rng.expovariate(per_cycle))
        box = Box(f"b{idx:03d}", kind, site, freezes, maint)
        box.up = bytearray(b"\x01") * n
        box.layer = bytearray(n)
        box.start_s = array("d", bytes(8 * n))
        for f in freezes:
            end = min(n, f.start + f.length)
            box.up[f.start:end] = bytes(end - f.start)
            close = f.start + f.length + RECOVER_CYCLES - 1          # the confirming healthy cycle
            for c in range(f.start + FAIL_CYCLES - 1, min(n, close)):
                box.start_s[c] = self.t(f.start)
                box.layer[c] = GAUGE_LAYERS.index(f.deepest if c >= f.deepen_at else f.detect)
        return box

    def closes(self, f: Freeze) -> int:
        """The cycle that confirms the freeze's end (its FreezeClosed)."""
        return f.start + f.length + RECOVER_CYCLES - 1


# ----- InfluxDB ---------------------------------------------------------------------------------------------
def influx_lines(fleet: Fleet, box: Box) -> Iterator[str]:
    """Line protocol (ms) of one box: `box` per cycle, `freeze`, `remediation`."""
    tags = f"box={box.name},kind={box.kind},site={box.site}"
    n = fleet.cycles
    for i in range(n):
        ts = fleet.t(i) * 1000
        if i in box.maintenance:
            yield f'box,{tags},maintenance=true state="maintenance",layer="none" {ts}'
            continue
        up = box.up[i]
        yield (f'box,{tags} up={up}i,healthy={up}i,state="{"up" if up else "frozen"}",degraded=0i,'
               f'percent_state_change=0 {ts}')
    last_t = fleet.t(n - 1)
    for f in box.freezes:
        if f.start + FAIL_CYCLES - 1 >= n:      # never detected in the data
            continue
        open_ = fleet.closes(f) >= n
        layer = f.deepest if not open_ or n - 1 >= f.deepen_at else f.detect
        duration = (last_t - fleet.t(f.start)) if open_ else f.length * fleet.interval_s
        yield f'freeze,{tags} open={int(open_)}i,layer="{layer}",duration_s={float(duration)} {fleet.t(f.start) * 1000}'
        rem = f.start + FAIL_CYCLES
        if box.kind == "container" and rem < n:
            yield (f'remediation,{tags},action=restart_container,trigger=auto,outcome=done ok=1i,recovered=1i,'
                   f'dry_run=0i,deferred=0i,duration_s=1.0 {fleet.t(rem) * 1000 + 1}')


def influx_agent_lines(fleet: Fleet) -> Iterator[str]:
    """One `agent` point per site per cycle."""
    for site in fleet.sites:
        for i in range(fleet.cycles):
            yield f"agent,site={site},host=h-{site} cycle_s=0.5 {fleet.t(i) * 1000}"


# ----- OpenMetrics ------------------------------------------------------------------------------------------
def _labels(box: Box, site_label: str, **more: str) -> str:
    extra = "".join(f',{k}="{v}"' for k, v in more.items())
    return f'box="{box.name}",kind="{box.kind}",{site_label}="{box.site}"{extra}'


def openmetrics(fleet: Fleet, boxes: list[Box], lo: int, hi: int, carry: dict[tuple[str, str], float]) -> Iterator[str]:
    """OpenMetrics text of the scrapes after cycles [lo, hi), family by family (promtool wants each family in one
    piece); carry: the counters' values at cycle lo (updated to hi). Ends with `# EOF` (one file per chunk)."""
    ts_all = [f"{fleet.scrape(i) / 1000:.3f}" for i in range(lo, hi)]
    sl = fleet.site_label
    restart = fleet.restart_cycle

    def counter(family: str, key_label: str, box: Box, deltas: dict[int, float] | None, per_cycle=None,
                site: str | None = None) -> Iterator[str]:
        key = (family, key_label)
        v = carry.get(key, 0.0)
        for j, i in enumerate(range(lo, hi)):
            if (site or box.site) == "s1" and i == restart:
                v = 0.0
            if per_cycle is not None:
                v += per_cycle(i)
            elif deltas and i in deltas:
                v += deltas[i]
            yield f"{family}{{{key_label}}} {v:g} {ts_all[j]}"
        carry[key] = v

    # counters of cycles
    for family, fn in (("vobox_box_cycles_total", lambda b: (lambda i: 0 if i in b.maintenance else 1)),
                       ("vobox_box_down_cycles_total", lambda b: (lambda i: 0 if i in b.maintenance else 1 - b.up[i])),
                       ("vobox_box_failed_cycles_total", lambda b: (lambda i: 0 if i in b.maintenance else 1 - b.up[i])),
                       ("vobox_box_maintenance_cycles_total", lambda b: (lambda i: 1 if i in b.maintenance else 0))):
        yield f"# TYPE {family.removesuffix('_total')} counter"
        for b in boxes:
            yield from counter(family, _labels(b, sl), b, None, fn(b))
    detected: dict[str, dict[tuple[str, str], dict[int, float]]] = {"open": {}, "closed": {}}
    hist: dict[str, dict[int, float]] = {}
    rems: dict[str, dict[int, float]] = {}
    for b in boxes:
        for f in b.freezes:
            detected["open"].setdefault((b.name, f.detect), {})[f.start + FAIL_CYCLES - 1] = 1
            detected["closed"].setdefault((b.name, f.deepest), {})[fleet.closes(f)] = 1
            hist.setdefault(b.name, {})[fleet.closes(f)] = f.length * fleet.interval_s
            if b.kind == "container":
                rems.setdefault(b.name, {})[f.start + FAIL_CYCLES] = 1
    by_name = {b.name: b for b in boxes}
    for family, which in (("vobox_freezes_total", "open"), ("vobox_freezes_closed_total", "closed")):
        yield f"# TYPE {family.removesuffix('_total')} counter"
        for (name, layer), deltas in sorted(detected[which].items()):
            yield from counter(family, _labels(by_name[name], sl, layer=layer), by_name[name], deltas)
    yield "# TYPE vobox_freeze_duration_seconds histogram"
    for b in boxes:
        ev = hist.get(b.name, {})
        n_ev = {i: 1.0 for i in ev}
        yield from counter("vobox_freeze_duration_seconds_bucket", _labels(b, sl, le="+Inf"), b, n_ev)
        yield from counter("vobox_freeze_duration_seconds_count", _labels(b, sl), b, n_ev)
        yield from counter("vobox_freeze_duration_seconds_sum", _labels(b, sl), b, ev)
    yield "# TYPE vobox_remediations counter"
    for name, deltas in sorted(rems.items()):
        b = by_name[name]
        yield from counter("vobox_remediations_total",
                           _labels(b, sl, action="restart_container", trigger="auto", result="recovered"), b, deltas)
    yield "# TYPE vobox_box_freeze_start_timestamp_seconds gauge"
    for b in boxes:
        lab = _labels(b, sl)
        yield from (f"vobox_box_freeze_start_timestamp_seconds{{{lab}}} {b.start_s[i]:g} {ts_all[j]}"
                    for j, i in enumerate(range(lo, hi)))
    yield "# TYPE vobox_box_layer gauge"
    for b in boxes:
        for li, layer in enumerate(GAUGE_LAYERS):
            lab = _labels(b, sl, layer=layer)
            yield from (f"vobox_box_layer{{{lab}}} {1 if b.layer[i] == li else 0} {ts_all[j]}"
                        for j, i in enumerate(range(lo, hi)))
    for family in ("vobox_box_degraded", "vobox_box_percent_state_change", "vobox_box_state_change_ratio"):
        yield f"# TYPE {family} gauge"
        for b in boxes:
            lab = _labels(b, sl)
            yield from (f"{family}{{{lab}}} 0 {ts}" for ts in ts_all)
    yield "# TYPE vobox_agent_cycles counter"
    for site in fleet.sites:
        yield from counter("vobox_agent_cycles_total", f'{sl}="{site}"', boxes[0], None, lambda i: 1, site=site)
    yield "# TYPE vobox_agent_cycle_interval_seconds gauge"
    for site in fleet.sites:
        yield from (f'vobox_agent_cycle_interval_seconds{{{sl}="{site}"}} {fleet.interval_s} {ts}' for ts in ts_all)
    yield "# EOF"


# ----- both stores, served on loopback ------------------------------------------------------------------------
def _free_port() -> int:
    """A port free on 127.0.0.1 whose +2 is free too (influxd's RPC bind)."""
    import socket

    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 65000:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", port + 2))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair on 127.0.0.1")


class SynthStores:
    """The fleet in a throwaway InfluxDB 1.6 (database `synth`) and a Prometheus TSDB backfilled with promtool,
    both under base_dir and served on 127.0.0.1; stop() ends both (the caller deletes base_dir)."""

    DB = "synth"

    def __init__(self, fleet: Fleet, base_dir: str) -> None:
        import os

        self.fleet = fleet
        self.base_dir = base_dir
        self.influx_dir = os.path.join(base_dir, "influx")
        self.tsdb_dir = os.path.join(base_dir, "tsdb")
        self.influx: Any = None   # lab.influx.InfluxServer once built
        self.prom_proc: Any = None   # subprocess.Popen once started
        self.prom_port = 0
        self.timings: dict[str, float] = {}

    @property
    def prometheus_url(self) -> str:
        """Prometheus' base URL."""
        return f"http://127.0.0.1:{self.prom_port}"

    def build(self, chunk_days: float = 1.0, log=lambda msg: None) -> None:
        """Write both stores and start both servers (Prometheus after the backfill)."""
        import os
        import subprocess
        import time
        import urllib.request

        from lab.influx import InfluxServer

        os.makedirs(self.base_dir, exist_ok=True)
        self.influx = InfluxServer(self.influx_dir, http_port=_free_port())
        self.influx.start()
        self.influx.create_database(self.DB)
        boxes = list(self.fleet.boxes())
        t = time.monotonic()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        url = f"{self.influx.url}/write?db={self.DB}&precision=ms"
        batch: list[str] = []

        def flush() -> None:
            body = ("\n".join(batch) + "\n").encode()
            with opener.open(urllib.request.Request(url, data=body, method="POST"), timeout=300) as resp:
                resp.read()
            batch.clear()

        for lines in [influx_agent_lines(self.fleet), *(influx_lines(self.fleet, b) for b in boxes)]:
            for line in lines:
                batch.append(line)
                if len(batch) >= 20_000:
                    flush()
        if batch:
            flush()
        self.timings["influx_write_s"] = time.monotonic() - t
        log(f"InfluxDB written in {self.timings['influx_write_s']:.0f} s")
        t = time.monotonic()
        carry: dict[tuple[str, str], float] = {}
        step = max(1, int(chunk_days * 86400 // self.fleet.interval_s))
        om = os.path.join(self.base_dir, "chunk.om")
        for lo in range(0, self.fleet.cycles, step):
            hi = min(self.fleet.cycles, lo + step)
            with open(om, "w") as fh:
                fh.writelines(line + "\n" for line in openmetrics(self.fleet, boxes, lo, hi, carry))
            subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=24h",
                            "-q", om, self.tsdb_dir], check=True, capture_output=True, timeout=3600)
            os.unlink(om)
            log(f"Prometheus blocks to cycle {hi} of {self.fleet.cycles}: {time.monotonic() - t:.0f} s")
        self.timings["prometheus_backfill_s"] = time.monotonic() - t
        self.start_prometheus()

    def start_prometheus(self, timeout_s: float = 120.0) -> None:
        """Prometheus on the backfilled TSDB (nothing scraped; retention long enough for old data)."""
        import os
        import subprocess
        import time
        import urllib.request

        cfg = os.path.join(self.base_dir, "prometheus.yml")
        with open(cfg, "w") as fh:
            fh.write("global: {}\nscrape_configs: []\n")
        self.prom_port = _free_port()
        log_path = os.path.join(self.base_dir, "prometheus.log")
        with open(log_path, "ab") as logf:
            self.prom_proc = subprocess.Popen(
                ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={self.tsdb_dir}",
                 "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{self.prom_port}",
                 "--query.max-samples=500000000"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with opener.open(self.prometheus_url + "/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if self.prom_proc.poll() is not None or time.monotonic() > deadline:
                with open(log_path, errors="replace") as fh:
                    tail = "".join(fh.readlines()[-10:])
                self.stop()
                raise RuntimeError(f"prometheus did not become ready: {tail}")
            time.sleep(0.2)

    def influx_rows(self):
        """A Rows function (agent.storage.read.Rows) reading the synthetic database."""
        from agent.storage import influx

        url = self.influx.url

        def rows(q: str) -> list[dict]:
            return influx.query(url, q, db=self.DB, epoch="ms", timeout_s=3600)

        return rows

    def disk_bytes(self) -> dict[str, int]:
        """Bytes on disk of each store."""
        import os

        def du(path: str) -> int:
            return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)

        return {"influxdb": du(self.influx_dir), "prometheus": du(self.tsdb_dir)}

    def stop(self) -> None:
        """Stop both servers."""
        from lab.influx import stop_child

        if self.prom_proc is not None and self.prom_proc.poll() is None:
            stop_child(self.prom_proc, 30)
        self.prom_proc = None
        if self.influx is not None:
            self.influx.stop(30)
