"""The `fleet_data` fixture: a real InfluxDB 1.6 holding two days of a known fleet, and the facts to expect.

FOR NOW the data is a deterministic synthetic dataset written in the exact schema of the
agent (README "InfluxDB schema"): 2 container boxes, 2 VM boxes, freezes of known start,
length and layer (one still open at the end), remediations, container events, a MAC change,
a segment freeze. It is meant to be replaced by a real agent run in the lab with the same
freezes injected (lab.fault(box, layer) at the offsets of FREEZES); the tests only read
`FleetData`, so only `fleet_data()` below changes.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field

import pytest

INTERVAL_S = 10
SPAN_S = 2 * 86400
SITE = "lab"
DATABASE = "vobox"
BOXES = {"ctr-1": "container", "ctr-2": "container", "vm-1": "vm", "vm-2": "vm"}
IPV4 = {"ctr-1": "192.0.2.10", "ctr-2": "192.0.2.11", "vm-1": "192.0.2.20", "vm-2": "192.0.2.21"}
IPV6 = {"ctr-1": "2001:db8:3::10", "ctr-2": "2001:db8:3::11"}
PROBE_WINDOW_S = 7200          # probe points only for the last two hours (enough for the box view)


@dataclass(frozen=True, slots=True)
class Freeze:
    """One injected freeze: start offset from the range start, length, layer."""
    box: str
    offset_s: int
    duration_s: int
    layer: str
    open: bool = False
    evidence: str | None = None


@dataclass(frozen=True, slots=True)
class Remediation:
    """One remediation point."""
    box: str
    offset_s: int
    action: str
    trigger: str
    ok: int
    recovered: int
    dry_run: int = 0
    detail: str = ""


FREEZES: tuple[Freeze, ...] = (
    Freeze("ctr-1", 3600, 20, "l4", evidence="/var/lib/vobox-agent/evidence/ctr-1/f1"),
    Freeze("ctr-2", 36000, 60, "l3"),
    Freeze("vm-1", 14400, 600, "l2", evidence="/var/lib/vobox-agent/evidence/vm-1/f4"),
    Freeze("vm-2", 54000, 240, "l2"),
    Freeze("vm-1", 72000, 120, "l3"),
    Freeze("ctr-1", 93600, 300, "l2"),      # with ctr-2: a segment freeze
    Freeze("ctr-2", 93600, 300, "l2"),
    Freeze("vm-1", 108000, 1800, "l4"),
    Freeze("ctr-1", SPAN_S - 3600, 40, "l4"),
    Freeze("vm-2", SPAN_S - 60, 60, "l3", open=True),  # still frozen at the end of the data
)
SEGMENT_FREEZES = (("docknet", 93600, 2, "l2", 300),)
REMEDIATIONS: tuple[Remediation, ...] = (
    Remediation("ctr-1", 3630, "restart_container", "auto", 1, 1, detail="unpaused, restarted"),
    Remediation("ctr-2", 36030, "reconnect_network", "auto", 1, 0, detail="still frozen"),
    Remediation("ctr-2", 36050, "restart_container", "auto", 1, 1),
    Remediation("vm-1", 14430, "command", "auto", 1, 1, detail="virsh reset vm-1"),
    Remediation("vm-2", 54030, "command", "auto", 0, 0, detail="timeout after 30s"),
    Remediation("vm-1", 72030, "command", "auto", 1, 0),
    Remediation("vm-1", 108030, "command", "alert", 1, 1, detail="grafana alert"),
    Remediation("ctr-1", SPAN_S - 3570, "restart_container", "auto", 1, 1),
    Remediation("vm-2", 20000, "command", "manual", 1, 1, dry_run=1, detail="dry run"),
)
CONTAINER_EVENTS = (("ctr-1", 3631, "pause"), ("ctr-1", 3632, "restart"),
                    ("ctr-2", 36031, "network disconnect"), ("ctr-2", 36032, "network connect"),
                    ("ctr-2", 36051, "restart"), ("ctr-1", SPAN_S - 3569, "restart"))
MAC_CHANGES = (("ctr-1", 93900, "192.0.2.10", "02:42:c0:00:02:0a", "7e:11:22:33:44:55"),)


@dataclass(frozen=True)
class Facts:
    """What the data says, computed from the injected events (the expected numbers)."""
    cycles: int
    frozen_cycles: dict[str, int]                   # box -> cycles with up=0
    availability_box: dict[str, float]             # percent
    availability_kind: dict[str, float]            # percent, pooled over box-time
    freezes_kind: dict[str, int]
    freezes_layer_kind: dict[tuple[str, str], int]  # (layer, kind) -> count
    frozen_s_kind: dict[str, float]                # sum of duration_s
    mttr_kind: dict[str, float]                    # mean duration of closed freezes
    mtbf_kind: dict[str, float]                    # up box-seconds / freezes
    remediations_action: dict[str, int]            # dry runs excluded
    success_action: dict[str, float]               # percent recovered, dry runs excluded
    remediations_trigger: dict[str, int]           # dry runs included
    frozen_now: frozenset[str]                     # boxes whose last cycle is down


@dataclass
class FleetData:
    """Where the data is and what it contains."""
    influx_url: str
    database: str
    netns: str | None
    start_ms: int            # first cycle
    end_ms: int              # one interval after the last cycle
    facts: Facts
    interval_s: int = INTERVAL_S
    site: str = SITE
    boxes: dict[str, str] = field(default_factory=lambda: dict(BOXES))

    def at(self, offset_s: float) -> int:
        """Epoch ms of an offset from the range start."""
        return self.start_ms + int(offset_s * 1000)


def compute_facts() -> Facts:
    """Expected numbers from FREEZES/REMEDIATIONS (independent of InfluxDB)."""
    cycles = SPAN_S // INTERVAL_S
    frozen = {b: 0 for b in BOXES}
    for f in FREEZES:
        frozen[f.box] += f.duration_s // INTERVAL_S
    avail_box = {b: 100.0 * (cycles - frozen[b]) / cycles for b in BOXES}
    kinds = sorted(set(BOXES.values()))
    avail_kind, freezes_kind, frozen_s, mttr, mtbf = {}, {}, {}, {}, {}
    layer_kind: dict[tuple[str, str], int] = {}
    for k in kinds:
        bs = [b for b in BOXES if BOXES[b] == k]
        down = sum(frozen[b] for b in bs)
        avail_kind[k] = 100.0 * (cycles * len(bs) - down) / (cycles * len(bs))
        fz = [f for f in FREEZES if BOXES[f.box] == k]
        freezes_kind[k] = len(fz)
        frozen_s[k] = float(sum(f.duration_s for f in fz))
        closed = [f.duration_s for f in fz if not f.open]
        mttr[k] = sum(closed) / len(closed)
        mtbf[k] = (cycles * len(bs) - down) * INTERVAL_S / len(fz)
        for f in fz:
            layer_kind[(f.layer, k)] = layer_kind.get((f.layer, k), 0) + 1
    actions: dict[str, list[int]] = {}
    triggers: dict[str, int] = {}
    for r in REMEDIATIONS:
        triggers[r.trigger] = triggers.get(r.trigger, 0) + 1
        if not r.dry_run:
            actions.setdefault(r.action, []).append(r.recovered)
    last_offset = SPAN_S - INTERVAL_S
    frozen_now = frozenset(f.box for f in FREEZES if f.offset_s <= last_offset < f.offset_s + f.duration_s)
    return Facts(cycles, frozen, avail_box, avail_kind, freezes_kind, layer_kind, frozen_s, mttr, mtbf,
                 {a: len(v) for a, v in actions.items()},
                 {a: 100.0 * sum(v) / len(v) for a, v in actions.items()}, triggers, frozen_now)


def _esc_tag(v: str) -> str:
    return v.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _field(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def line(measurement: str, tags: dict, fields: dict, ts_ms: int) -> str:
    """One line of line protocol (ms precision)."""
    t = ",".join(f"{k}={_esc_tag(str(v))}" for k, v in sorted(tags.items()))
    f = ",".join(f"{k}={_field(v)}" for k, v in fields.items() if v is not None)
    return f"{measurement},{t} {f} {ts_ms}"


def lines(start_ms: int) -> list[str]:
    """The whole dataset as line protocol."""
    cycles = SPAN_S // INTERVAL_S
    out: list[str] = []
    down: dict[str, dict[int, Freeze]] = {b: {} for b in BOXES}
    for f in FREEZES:
        for c in range(f.offset_s // INTERVAL_S, (f.offset_s + f.duration_s) // INTERVAL_S):
            down[f.box][c] = f
    probe_from = cycles - PROBE_WINDOW_S // INTERVAL_S
    for c in range(cycles):
        ts = start_ms + c * INTERVAL_S * 1000
        out.append(line("agent", {"site": SITE, "host": "monitor-1"},
                        {"cycle_s": 0.4 + (c % 5) * 0.01, "misfires": 0, "spool_points": 0, "write_errors": 0},
                        ts + 900))
        for b, kind in BOXES.items():
            tags = {"box": b, "kind": kind, "site": SITE}
            f = down[b].get(c)
            if f is not None:
                state, up, layer = "frozen", 0, f.layer
            elif c > 0 and (down[b].get(c - 1) or down[b].get(c - 2)):
                state, up, layer = "recovering", 1, "none"
            else:
                state, up, layer = "up", 1, "none"
            out.append(line("box", tags, {"up": up, "state": state, "layer": layer}, ts + 500))
            if c >= probe_from:
                out.extend(_probe_lines(b, kind, c, ts, f.layer if f else None))
    for f in FREEZES:
        fields = {"open": 1 if f.open else 0, "layer": f.layer, "duration_s": float(f.duration_s),
                  "evidence": f.evidence}
        out.append(line("freeze", {"box": f.box, "kind": BOXES[f.box], "site": SITE}, fields,
                        start_ms + f.offset_s * 1000 + 500))
    for r in REMEDIATIONS:
        out.append(line("remediation", {"box": r.box, "kind": BOXES[r.box], "site": SITE, "action": r.action,
                                        "trigger": r.trigger},
                        {"ok": r.ok, "recovered": r.recovered, "dry_run": r.dry_run, "duration_s": 4.5,
                         "detail": r.detail}, start_ms + r.offset_s * 1000))
    for b, off, ev in CONTAINER_EVENTS:
        out.append(line("container_event", {"box": b, "kind": BOXES[b], "site": SITE, "event": ev},
                        {"detail": f"docker event {ev}"}, start_ms + off * 1000))
    for b, off, addr, old, new in MAC_CHANGES:
        out.append(line("mac_change", {"box": b, "kind": BOXES[b], "site": SITE, "address": addr},
                        {"old": old, "new": new}, start_ms + off * 1000))
    for seg, off, n, layer, dur in SEGMENT_FREEZES:
        out.append(line("segment_freeze", {"segment": seg, "site": SITE},
                        {"boxes": n, "layer": layer, "open": 0, "duration_s": float(dur)}, start_ms + off * 1000))
    return out


def _probe_lines(box: str, kind: str, c: int, ts: int, layer: str | None) -> list[str]:
    ok = {"arp": layer != "l2", "ndp": layer != "l2", "icmp": layer not in ("l2", "l3"),
          "icmp6": layer not in ("l2", "l3"), "tcp": layer is None}
    base = 0.3 if kind == "container" else 0.6
    out = []
    probes = [("icmp", IPV4[box], None), ("arp", IPV4[box], None), ("tcp", IPV4[box], 1093)]
    if box in IPV6:
        probes += [("icmp6", IPV6[box], None), ("ndp", IPV6[box], None)]
    for i, (probe, addr, port) in enumerate(probes):
        tags = {"box": box, "kind": kind, "site": SITE, "probe": probe, "address": addr}
        if port is not None:
            tags["port"] = str(port)
        good = ok[probe]
        fields = {"ok": 1 if good else 0, "rtt_ms": base + 0.05 * i + (c % 7) * 0.01 if good else None,
                  "error": None if good else "timeout",
                  "mac": ("02:42:c0:00:02:" + IPV4[box].rsplit(".", 1)[1]) if probe in ("arp", "ndp") and good else None}
        out.append(line("probe", tags, fields, ts + 100 + i))
    return out


def write_lines(url: str, db: str, data: list[str], netns: str | None, batch: int = 5000) -> None:
    """POST line protocol to /write?db=&precision=ms in batches."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    ctx = _entered(netns)
    with ctx:
        for i in range(0, len(data), batch):
            body = ("\n".join(data[i:i + batch]) + "\n").encode()
            req = urllib.request.Request(f"{url}/write?" + urllib.parse.urlencode({"db": db, "precision": "ms"}),
                                         data=body, method="POST")
            with opener.open(req, timeout=60) as resp:
                assert resp.status == 204, resp.status


def _entered(netns: str | None):
    if not netns:
        return contextlib.nullcontext()
    from agent import netns as _netns
    return _netns.entered(netns)


def _skip_unless_possible() -> None:
    if os.geteuid() != 0:
        pytest.skip("fleet_data needs root (a network namespace for the throwaway influxd)")
    if shutil.which("influxd") is None:
        pytest.skip("fleet_data needs InfluxDB 1.x (apt-get install influxdb)")
    if shutil.which("ip") is None:
        pytest.skip("fleet_data needs iproute2")


@pytest.fixture(scope="session")
def fleet_data():
    """A real influxd (own netns, loopback only) holding the synthetic fleet; yields FleetData."""
    _skip_unless_possible()
    from agent.lab.influx import InfluxServer

    ns = f"vbx-fleet-{uuid.uuid4().hex[:8]}"
    base = tempfile.mkdtemp(prefix="vbx-fleet-influx-")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    server = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        server = InfluxServer(base, netns=ns, http_port=8086)
        server.start()
        server.create_database(DATABASE)
        now_ms = int(time.time() * 1000)
        end_ms = (now_ms // (INTERVAL_S * 1000)) * INTERVAL_S * 1000 + INTERVAL_S * 1000
        start_ms = end_ms - SPAN_S * 1000
        write_lines(server.url, DATABASE, lines(start_ms), ns)
        yield FleetData(server.url, DATABASE, ns, start_ms, end_ms, compute_facts())
    finally:
        if server is not None:
            server.stop()
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(base, ignore_errors=True)
