"""The `fleet_data` fixture: the lab's real InfluxDB filled by a real `vobox-agent run` with known injected freezes.

A session fixture starts `vobox-agent --netns <monitor> run` against the lab boxes (ctr1, ctr2, vm1) with
its own database and state_dir, at a 2 s interval, and plays SCHEDULE on the lab while it runs: every
fault and clear call is timed (the `Window` it took), and the expected numbers (`Truth`) are computed
from those times alone, never from what the agent wrote. Each freeze edge may land up to one cycle
(+ probe timeout + scheduling slack) after the fault edge that caused it, so every expected figure is
an interval [lo, hi]; counts (freezes per kind and layer, remediations, MAC changes) are exact.

What the run contains (offsets from the agent's first cycle):
- a segment outage (macvlan parent down, 10 s): all three boxes freeze at l2, one `segment_freeze`
  (all boxes share the correlation segment SEGMENT; min_share 1.0, so no smaller overlap counts);
- ctr1 l4 for 20 s (its service ports dropped, no Docker event) - the issue's "20 s of 120 s";
- vm1 l3 (nft drop), ended by the agent's own remediation: vm1's ladder is a real `command` that
  deletes the drop table, so the freeze lasts about the detection time and the action is recovered=1;
- ctr2 l2 for 12 s (docker network disconnect: container events network_disconnect/connect);
- ctr1's MAC changed and restored 12 s later (monitor's neighbour entries flushed, so no freeze):
  two `mac_change` points per address;
- vm1 l2 for 16 s (link down): the remediation command fails (ok=0, recovered=0);
- ctr2 l3 from 21 s before the end, still frozen when the agent stops: an open freeze.
vm1's command also runs (and fails) during the segment outage; ctr2's ladder is a dry run, so each of
its three freezes gives a dry-run `remediation` point. Remediation cooldown (30 s) and verify (2 s) are
chosen so that each freeze gives exactly one action, with several seconds of margin.

No synthetic dataset is left: every case the former one covered is produced here, except remediation
triggers `alert`/`manual` (the trigger panel runs the same GROUP BY "trigger" query on the `auto`
points) and multi-day spans (every panel also runs over the dashboards' default 7 d / 24 h ranges,
and the report with --since 7d, on this data). Runtime: about RUN_S + 3 s.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import pytest

from probes import LAYERS as PROBE_LAYERS

log = logging.getLogger(__name__)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SITE = "lab"
DATABASE = "vobox_fleet"
SEGMENT = "fleet-seg"
INTERVAL_S = 2.0
TIMEOUT_S = 0.5
FAIL_CYCLES = 2
RECOVER_CYCLES = 2
SLACK_S = 0.6               # a cycle may start this late (scheduler, a busy 2-core machine)
COOLDOWN_S = 30.0
VERIFY_S = 2.0
RUN_S = 138.0               # the agent runs this long after its first cycle
AUDIT_INTERVAL_S = 20.0     # [audit] interval: several audits inside the run (the default is 1 h)
BOXES = {"ctr1": "container", "ctr2": "container", "vm1": "vm"}
KINDS = ("container", "vm")
LAYERS = PROBE_LAYERS   # every layer the dashboards know (l7 included: no freeze of it in this run)
NFT_L3_TABLE = "vobox_lab_l3"   # lab.faults.NFT_TABLE: what vm1's remediation command deletes
NEW_MAC = "02:5a:5a:00:00:01"


@dataclass(frozen=True, slots=True)
class Fault:
    """One scheduled fault: on at `at_s` after the first cycle, off `for_s` later (None: still on at the end)."""

    name: str
    target: str                 # a box, or "segment" (the macvlan parent: every box)
    kind: str                   # lab fault kind (l2, l3, l4) or "segment"
    at_s: float
    for_s: float | None
    layer: str                  # the freeze layer the agent must report
    remediated: bool = False    # ended by the agent's remediation; for_s is then the deadline to clear it


# Changes fall half a cycle between two cycles (odd offsets, cycles every 2 s), so no edge races a cycle.
SCHEDULE: tuple[Fault, ...] = (
    Fault("segment", "segment", "segment", 3, 10, "l2"),
    Fault("ctr1-l4", "ctr1", "l4", 25, 20, "l4"),
    Fault("vm1-l3-remediated", "vm1", "l3", 47, 20, "l3", remediated=True),
    Fault("ctr2-l2", "ctr2", "l2", 51, 12, "l2"),
    Fault("vm1-l2", "vm1", "l2", 87, 16, "l2"),
    Fault("ctr2-l3-open", "ctr2", "l3", 117, None, "l3"),
)
MAC_CHANGE = ("ctr1", 69.0, 81.0)   # box, MAC changed at, restored at
EXAMPLE_WINDOW = ("ctr1", 17.0, 137.0)  # the example: ctr1 frozen 20 s of these 120 s (only ctr1-l4)
LADDERS = {"ctr2": ("restart_container", True), "vm1": ("command", False)}  # box -> (action, dry run)


@dataclass(frozen=True, slots=True)
class Window:
    """When a lab call ran (epoch s): the change happened somewhere in [lo_s, hi_s]."""

    lo_s: float
    hi_s: float


@dataclass(frozen=True, slots=True)
class Span:
    """An expected value: anywhere in [lo, hi]."""

    lo: float
    hi: float

    def __contains__(self, x: object) -> bool:
        return isinstance(x, (int, float)) and self.lo - 1e-9 <= x <= self.hi + 1e-9

    def __add__(self, other: Span) -> Span:
        return Span(self.lo + other.lo, self.hi + other.hi)

    def scaled(self, k: float) -> Span:
        """k * [lo, hi] (k >= 0)."""
        return Span(self.lo * k, self.hi * k)

    @property
    def mid(self) -> float:
        """The middle of the span."""
        return (self.lo + self.hi) / 2


@dataclass(frozen=True, slots=True)
class ExpectedFreeze:
    """A freeze the agent must report: box, layer, start and length within spans (epoch s, s)."""

    fault: str
    box: str
    kind: str
    layer: str
    start_s: Span
    end_s: Span                 # for an open freeze: the last cycle
    open: bool

    @property
    def frozen_s(self) -> Span:
        """Frozen box-time: first failing cycle to first healthy cycle (open: to one cycle after the last)."""
        if self.open:
            return Span(self.end_s.lo + INTERVAL_S - self.start_s.hi, self.end_s.hi + INTERVAL_S - self.start_s.lo)
        return Span(max(0.0, self.end_s.lo - self.start_s.hi), self.end_s.hi - self.start_s.lo)


@dataclass(frozen=True, slots=True)
class ExpectedRemediation:
    """One remediation point the run must produce."""

    box: str
    action: str
    dry_run: bool
    ok: bool
    recovered: bool
    during: str                 # the fault whose freeze triggered it


@dataclass(frozen=True)
class Truth:
    """Expected numbers, computed from the schedule and the measured call times only."""

    first_cycle_s: float
    last_cycle_s: float
    freezes: tuple[ExpectedFreeze, ...]
    segment: ExpectedFreeze
    remediations: tuple[ExpectedRemediation, ...]
    mac_changes: tuple[tuple[str, str, str, str, Window], ...]   # box, address, old, new, when
    container_events: dict[str, tuple[str, ...]]                  # box -> events, oldest first
    applied: dict[str, tuple[Window, Window | None]]              # fault name -> (on, off)

    @property
    def cycles(self) -> int:
        """Probe cycles from the first to the last (the agent's own status.json times)."""
        return round((self.last_cycle_s - self.first_cycle_s) / INTERVAL_S) + 1

    @property
    def observed_s(self) -> float:
        """Box-time observed per box."""
        return self.cycles * INTERVAL_S

    def freezes_of(self, *, box: str | None = None, kind: str | None = None) -> list[ExpectedFreeze]:
        """Expected freezes of one box or one kind."""
        return [f for f in self.freezes if (box is None or f.box == box) and (kind is None or f.kind == kind)]

    def frozen_s(self, *, box: str | None = None, kind: str | None = None,
                 within: tuple[float, float] | None = None) -> Span:
        """Frozen box-time of a box or kind (optionally only inside [from_s, to_s))."""
        total = Span(0.0, 0.0)
        for f in self.freezes_of(box=box, kind=kind):
            span = f.frozen_s
            if within is not None:
                lo_end = f.end_s.lo + (INTERVAL_S if f.open else 0)
                hi_end = f.end_s.hi + (INTERVAL_S if f.open else 0)
                span = Span(_overlap(f.start_s.hi, lo_end, *within), _overlap(f.start_s.lo, hi_end, *within))
            total = total + span
        return total

    def availability(self, *, box: str | None = None, kind: str | None = None) -> Span:
        """Percent of box-time up: 100 * (1 - frozen / observed)."""
        n_boxes = 1 if box else sum(1 for k in BOXES.values() if k == kind)
        frozen = self.frozen_s(box=box, kind=kind)
        observed = self.observed_s * n_boxes
        return Span(100 * (1 - frozen.hi / observed), 100 * (1 - frozen.lo / observed))

    def mttr_s(self, kind: str) -> Span:
        """Mean length of the closed freezes of a kind."""
        closed = [f.frozen_s for f in self.freezes_of(kind=kind) if not f.open]
        return Span(sum(s.lo for s in closed) / len(closed), sum(s.hi for s in closed) / len(closed))

    def mtbf_s(self, kind: str) -> Span:
        """Up box-time per freeze of a kind."""
        n_boxes = sum(1 for k in BOXES.values() if k == kind)
        n = len(self.freezes_of(kind=kind))
        frozen = self.frozen_s(kind=kind)
        up = self.observed_s * n_boxes
        return Span((up - frozen.hi) / n, (up - frozen.lo) / n)

    def frozen_at(self, t_s: float) -> tuple[set[str], set[str]]:
        """(boxes surely frozen at t_s, boxes that might be): a freeze edge within its span is unsure."""
        sure, maybe = set(), set()
        for f in self.freezes:
            end_hi = f.end_s.hi + (INTERVAL_S if f.open else 0)
            if f.start_s.hi <= t_s < (f.end_s.lo if not f.open else float("inf")):
                sure.add(f.box)
            elif f.start_s.lo <= t_s < end_hi:
                maybe.add(f.box)
        return sure, maybe - sure


def _overlap(a: float, b: float, lo: float, hi: float) -> float:
    return max(0.0, min(b, hi) - max(a, lo))


@dataclass
class FleetData:
    """Where the data is and what it must say."""

    influx_url: str
    database: str
    netns: str
    start_ms: int            # the first cycle
    end_ms: int              # one interval after the last cycle
    truth: Truth
    state_dir: str
    interval_s: float = INTERVAL_S
    site: str = SITE
    boxes: dict[str, str] = field(default_factory=lambda: dict(BOXES))

    def ms(self, time_s: float) -> int:
        """Epoch s -> epoch ms."""
        return int(time_s * 1000)


# ----------------------------------------------------------------------------- expected numbers

def edge(w: Window) -> Span:
    """Where the agent's cycle (its start time) that first sees a change made during `w` can be.

    Not before the change (a probe still waiting for its answer, up to the timeout, may see it), and
    at most one cycle after it (plus SLACK_S for a late cycle)."""
    return Span(w.lo_s - TIMEOUT_S, w.hi_s + INTERVAL_S + SLACK_S)


def compute_truth(first_cycle_s: float, last_cycle_s: float, applied: dict[str, tuple[Window, Window | None]],
                  mac_windows: tuple[Window, Window], original_macs: dict[str, str],
                  addresses: dict[str, tuple[str, str]]) -> Truth:
    """The expected freezes, remediations, MAC changes and container events of a run (pure)."""
    freezes = []
    segment = None
    last = Span(last_cycle_s, last_cycle_s)
    for fault in SCHEDULE:
        on, off = applied[fault.name]
        boxes = sorted(BOXES) if fault.target == "segment" else [fault.target]
        for box in boxes:
            freezes.append(ExpectedFreeze(fault.name, box, BOXES[box], fault.layer, edge(on),
                                          edge(off) if off else last, off is None))
        if fault.target == "segment":
            segment = ExpectedFreeze(fault.name, "*", "*", fault.layer, edge(on), edge(off), False)
    freezes.sort(key=lambda f: (f.start_s.lo, f.box))
    remediations = []
    for f in freezes:
        if f.box in LADDERS:
            action, dry = LADDERS[f.box]
            fault = next(x for x in SCHEDULE if x.name == f.fault)
            remediations.append(ExpectedRemediation(
                f.box, action, dry, ok=dry or fault.remediated, recovered=fault.remediated, during=f.fault))
    mac_box = MAC_CHANGE[0]
    old = original_macs[mac_box]
    mac_changes = []
    for addr in addresses[mac_box]:
        mac_changes.append((mac_box, addr, old, NEW_MAC, mac_windows[0]))
        mac_changes.append((mac_box, addr, NEW_MAC, old, mac_windows[1]))
    events: dict[str, list[str]] = {}
    for fault in SCHEDULE:
        if BOXES.get(fault.target) == "container" and fault.kind == "l2":
            on_off = ("network_disconnect", "network_connect")
            events.setdefault(fault.target, []).extend(on_off if applied[fault.name][1] else on_off[:1])
    assert segment is not None
    return Truth(first_cycle_s, last_cycle_s, tuple(freezes), segment, tuple(remediations), tuple(mac_changes),
                 {b: tuple(e) for b, e in events.items()}, dict(applied))


# ----------------------------------------------------------------------------- the run

def agent_config(lab, state_dir: str) -> str:
    """The agent's TOML: lab boxes, one correlation segment, remediation as in LADDERS."""
    ip = shutil.which("ip") or "/usr/sbin/ip"
    vm1 = lab.box("vm1")
    box_extra = {name: {"segment": SEGMENT} for name in BOXES}
    box_extra["ctr2"] |= {"remediate": ["restart_container"], "dry_run": True}
    box_extra["vm1"] |= {"remediate": ["command"],
                         "command": [ip, "netns", "exec", vm1.netns, "nft", "delete", "table", "inet", NFT_L3_TABLE]}
    extra = (f"[correlation]\nmin_boxes = 3\nmin_share = 1.0\nwindow = 10\nhold_remediation = false\n\n"
             f"[remediation]\nenabled = true\ncooldown = {COOLDOWN_S}\nverify = {VERIFY_S}\n"
             f"max_per_box_per_hour = 50\nmax_per_hour = 100\ncommand_timeout = 10\n\n"
             # audits inside the run's range, as hourly audits are inside a dashboard's 24 h: the one at start
             # comes before the first cycle (the agent waits for the engine's first sync before it probes)
             f"[audit]\ninterval = {AUDIT_INTERVAL_S}\n")
    return lab.agent_config(interval=INTERVAL_S, timeout=TIMEOUT_S, jitter=0, fail_cycles=FAIL_CYCLES,
                            recover_cycles=RECOVER_CYCLES, state_dir=state_dir, database=DATABASE, site=SITE,
                            box_extra=box_extra, extra=extra)


def _read_status(state_dir: str) -> dict | None:
    try:
        with open(os.path.join(state_dir, "status.json"), encoding="utf-8") as fh:
            return json.load(fh)
    except (FileNotFoundError, ValueError):
        return None


def _timed(call, *args) -> Window:
    lo = time.time()
    call(*args)
    return Window(lo, time.time())


def _nft_table_present(netns_name: str) -> bool:
    proc = subprocess.run(["ip", "netns", "exec", netns_name, "nft", "list", "table", "inet", NFT_L3_TABLE],
                          capture_output=True, text=True, timeout=10)
    return proc.returncode == 0


def _container_iface(lab, box: str) -> str:
    """The container's interface carrying the box's IPv4 (asked inside its namespace). Not always eth0: a
    container reconnected by an earlier test (the agent's reconnect, a lab fault cleared) gets the next name."""
    out = subprocess.run(["nsenter", "-t", str(lab.container_pid(box)), "-n", "ip", "-o", "-4", "addr", "show"],
                         check=True, capture_output=True, text=True, timeout=10).stdout
    ipv4 = lab.box(box).ipv4
    for line in out.splitlines():
        words = line.split()
        if f"{ipv4}/" in line and len(words) > 1:
            return words[1].split("@")[0]
    raise AssertionError(f"no interface of {box}'s container carries {ipv4}: {out}")


def _set_mac(lab, box: str, mac: str) -> None:
    """Give a container box's interface another MAC and flush the monitor's neighbour entries for it."""
    b = lab.box(box)
    subprocess.run(["nsenter", "-t", str(lab.container_pid(box)), "-n", "ip", "link", "set", _container_iface(lab, box),
                    "address", mac], check=True, capture_output=True, text=True, timeout=10)
    for addr in (b.ipv4, b.ipv6):
        subprocess.run(["ip", "-n", lab.monitor_ns, "neigh", "flush", "to", addr], check=False,
                       capture_output=True, timeout=10)


def _container_mac_now(lab, box: str) -> str:
    """The MAC of the container's interface on the lab network (asked with ip inside its namespace: /sys would
    show the host's)."""
    out = subprocess.run(["nsenter", "-t", str(lab.container_pid(box)), "-n", "ip", "-o", "link", "show",
                          _container_iface(lab, box)],
                         check=True, capture_output=True, text=True, timeout=10).stdout.split()
    return out[out.index("link/ether") + 1].lower()


class _Player:
    """Plays SCHEDULE on the lab relative to the agent's first cycle and records when each change happened."""

    def __init__(self, lab, t0: float) -> None:
        self.lab = lab
        self.t0 = t0
        self.applied: dict[str, tuple[Window, Window | None]] = {}
        self.active: dict[str, Window] = {}
        self.mac: list[Window] = []
        self.original_mac = _container_mac_now(lab, MAC_CHANGE[0])

    def _on(self, f: Fault) -> None:
        if f.target == "segment":
            self.active[f.name] = _timed(self.lab.segment_down)
        else:
            self.active[f.name] = _timed(self.lab.fault, f.target, f.kind)
        log.info("fleet run: %s on at +%.1f s", f.name, self.active[f.name].lo_s - self.t0)

    def _off(self, f: Fault, w: Window | None = None) -> None:
        if w is None:
            if f.target == "segment":
                w = _timed(self.lab.segment_up)
            else:
                w = _timed(lambda: self.lab.clear(f.target, wait=False))
        elif f.target != "segment":
            self.lab.clear(f.target, wait=False)  # bookkeeping only: the change itself happened in w
        self.applied[f.name] = (self.active.pop(f.name), w)
        log.info("fleet run: %s off at +%.1f s", f.name, w.lo_s - self.t0)

    def play(self, run_s: float) -> None:
        """Run the schedule until t0 + run_s; open faults stay on."""
        todo: list[tuple[float, str, object]] = []
        for f in SCHEDULE:
            todo.append((f.at_s, "on", f))
            if f.for_s is not None:
                todo.append((f.at_s + f.for_s, "deadline" if f.remediated else "off", f))
        todo += [(MAC_CHANGE[1], "mac", NEW_MAC), (MAC_CHANGE[2], "mac", self.original_mac)]
        todo.sort(key=lambda x: x[0])
        watched: dict[str, float] = {}   # remediated fault -> last time its drop table was seen
        while True:
            now = time.time()
            for name, seen_s in list(watched.items()):
                f = next(x for x in SCHEDULE if x.name == name)
                probe_s = time.time()
                if _nft_table_present(self.lab.box(f.target).netns):
                    watched[name] = probe_s
                else:
                    del watched[name]
                    self._off(f, Window(seen_s, time.time()))
            while todo and now >= self.t0 + todo[0][0]:
                _, what, arg = todo.pop(0)
                if what == "on":
                    self._on(arg)
                    if arg.remediated:
                        watched[arg.name] = time.time()
                elif what == "off":
                    self._off(arg)
                elif what == "deadline" and arg.name in watched:
                    del watched[arg.name]
                    log.warning("fleet run: %s was not remediated within %.0f s; clearing it", arg.name, arg.for_s)
                    self._off(arg)
                elif what == "mac":
                    self.mac.append(_timed(_set_mac, self.lab, MAC_CHANGE[0], arg))
            if now >= self.t0 + run_s:
                return
            time.sleep(0.2 if watched else 0.05)


def _stop(proc: subprocess.Popen, timeout_s: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            return -9
    return proc.returncode


def _tail(path: str, n: int = 40) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-n:])
    except OSError:
        return ""


def run_fleet(lab, work_dir: str, run_s: float = RUN_S) -> FleetData:
    """Run the agent on the lab while playing SCHEDULE; the lab is left without faults."""
    found = {b.name: b.kind for b in lab.boxes}
    if found != BOXES:
        pytest.fail(f"fleet_data needs the default lab boxes {BOXES}, the lab has {found}")
    lab.clear_all(wait=True)  # earlier tests of the session may have left a fault
    state_dir = os.path.join(work_dir, "state")
    cfg_path = os.path.join(work_dir, "agent.toml")
    with open(cfg_path, "w", encoding="utf-8") as fh:
        fh.write(agent_config(lab, state_dir))
    log_path = os.path.join(work_dir, "agent.log")
    with open(log_path, "wb") as log_fh:
        proc = subprocess.Popen([sys.executable, "-m", "agent", "--netns", lab.monitor_ns, "run", "-c", cfg_path],
                                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log_fh, stderr=subprocess.STDOUT)
    player = None
    try:
        deadline = time.monotonic() + 60
        while (st := _read_status(state_dir)) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the agent wrote no status.json (exit {proc.poll()}):\n{_tail(log_path)}")
            time.sleep(0.05)
        t0 = float(st["updated_s"])
        player = _Player(lab, t0)
        player.play(run_s)
        rc = _stop(proc)
        if rc != 0:
            pytest.fail(f"the agent exited {rc}:\n{_tail(log_path)}")
        last = float(_read_status(state_dir)["updated_s"])
        open_off = {f.name: player.active[f.name] for f in SCHEDULE if f.name in player.active}
        for name, on in open_off.items():
            player.applied[name] = (on, None)
    finally:
        _stop(proc)
        if player is not None and player.mac and len(player.mac) < 2:
            with contextlib.suppress(Exception):
                _set_mac(lab, MAC_CHANGE[0], player.original_mac)
        lab.clear_all(wait=True)
    mac_now = _container_mac_now(lab, MAC_CHANGE[0])
    if mac_now != player.original_mac:
        pytest.fail(f"{MAC_CHANGE[0]} kept MAC {mac_now}, was {player.original_mac} before the run")
    missing = [f.name for f in SCHEDULE if f.name not in player.applied]
    if missing or len(player.mac) != 2:
        pytest.fail(f"the schedule did not run completely: missing {missing}, MAC changes {len(player.mac)}")
    addresses = {MAC_CHANGE[0]: (lab.box(MAC_CHANGE[0]).ipv4, lab.box(MAC_CHANGE[0]).ipv6)}
    truth = compute_truth(t0, last, player.applied, tuple(player.mac), {MAC_CHANGE[0]: player.original_mac},
                          addresses)
    return FleetData(lab.influx_url, DATABASE, lab.monitor_ns, int(t0 * 1000), int((last + INTERVAL_S) * 1000),
                     truth, state_dir)


# lab run_id -> [FleetData, work dir, users]. tests/grafana (conftest) and tests/agent/test_report.py both
# register this fixture, which gives pytest two session fixtures: they share one run through this.
_RUNS: dict[str, list] = {}
_FAILED: dict[str, str] = {}   # lab run_id -> why the run failed (not retried by the second fixture)


@pytest.fixture(scope="session")
def fleet_data(lab):
    """The lab's InfluxDB after a real agent run with SCHEDULE injected (one run per lab); yields FleetData."""
    if lab.run_id in _FAILED:
        pytest.fail(f"the fleet run failed earlier in this session: {_FAILED[lab.run_id]}")
    entry = _RUNS.get(lab.run_id)
    if entry is None:
        work_dir = tempfile.mkdtemp(prefix="vbx-fleet-run-")
        try:
            entry = _RUNS[lab.run_id] = [run_fleet(lab, work_dir), work_dir, 0]
        except BaseException as exc:
            _FAILED[lab.run_id] = f"{type(exc).__name__}: {str(exc)[:2000]}"
            shutil.rmtree(work_dir, ignore_errors=True)
            raise
    entry[2] += 1
    try:
        yield entry[0]
    finally:
        entry[2] -= 1
        if entry[2] == 0:
            del _RUNS[lab.run_id]
            shutil.rmtree(entry[1], ignore_errors=True)


def _entered(netns: str | None):
    if not netns:
        return contextlib.nullcontext()
    from agent import netns as _netns
    return _netns.entered(netns)
