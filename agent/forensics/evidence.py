"""Evidence bundles: per freeze, the capture, neighbour tables, counters, Docker state and a summary, on disk.

`EvidenceCollector.freeze_opened()` / `freeze_closed()` take a snapshot of the
flight recorder (cheap, in the caller's thread), return the bundle path at
once and do all the slow work (pcap, `ip`, `nsenter`, Docker API, summary,
retention) in one worker thread. Nothing here raises into the caller: a
collector that fails is noted in the summary.

Layout: state_dir/evidence/<box>/<freeze start, UTC ISO basic>/
  onset.pcap, recovery.pcap          flight recorder dumps (Ethernet; raw IP given zero MACs)
  monitor_neigh.json                 `ip -j neigh show to ADDR` on the monitor side, per address
  monitor_link.json                  `ip -j -s link show dev IF` of the interface toward the box
  docker_inspect.json                container, its network endpoint and the network
  container_link.json, container_neigh.json, container_routes.json   read in the container's netns
  docker_events.json                 the container's recent Docker events
  summary.json, summary.txt          what was seen
"""
from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from agent.forensics import retention
from agent.forensics.recorder import FlightRecorder, Snapshot, normalize_address, write_pcap
from agent.forensics.summary import Analysis, analyze

log = logging.getLogger(__name__)

SUMMARY_JSON = "summary.json"
SUMMARY_TXT = "summary.txt"
ONSET_PCAP = "onset.pcap"
RECOVERY_PCAP = "recovery.pcap"
COMMAND_TIMEOUT_S = 5.0
EVENTS_LOOKBACK_S = 900.0
MAX_EVENTS = 100
# With more jobs than this waiting (a segment outage freezing hundreds of boxes),
# jobs skip the external collectors and write capture + summary only.
LIGHT_MODE_QUEUE = 16


class CollectorError(Exception):
    """A collector could not get its data; the message says what and why."""


@dataclass(frozen=True, slots=True)
class BoxRef:
    """What the evidence code needs to know of a box."""

    name: str
    kind: str                          # "container" or "vm"
    addresses: tuple[str, ...]
    container: str | None = None
    network: str | None = None
    site: str | None = None

    @classmethod
    def from_config(cls, box: Any, site: str | None = None) -> "BoxRef":
        """From an agent.core.config.BoxConfig (or anything with name, kind, ipv4, ipv6, container, network)."""
        addresses = tuple(a for a in (getattr(box, "ipv4", None), getattr(box, "ipv6", None)) if a)
        return cls(name=box.name, kind=box.kind, addresses=addresses, container=getattr(box, "container", None),
                   network=getattr(box, "network", None), site=site)


def bundle_dir(state_dir: str, box: str, start_s: float) -> str:
    """state_dir/evidence/<box>/<freeze start as UTC ISO basic>."""
    return os.path.join(evidence_root(state_dir), box, retention.stamp(start_s))


def evidence_root(state_dir: str) -> str:
    """Where all bundles live."""
    return os.path.join(state_dir, "evidence")


def iso(time_s: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds."""
    if time_s is None:
        return None
    return datetime.fromtimestamp(time_s, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- command and Docker edges ---

CommandRunner = Callable[[Sequence[str], float], str]


def run_command(argv: Sequence[str], timeout_s: float) -> str:
    """Run argv (no shell), return stdout; CollectorError naming the command on failure or timeout."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError as exc:
        raise CollectorError(f"{argv[0]}: not installed ({exc})") from None
    except subprocess.TimeoutExpired:
        raise CollectorError(f"{' '.join(argv)}: no answer within {timeout_s:g} s") from None
    if proc.returncode != 0:
        raise CollectorError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()[:300]}")
    return proc.stdout


def _json_of(text: str, argv: Sequence[str]) -> Any:
    try:
        return json.loads(text) if text.strip() else []
    except ValueError as exc:
        raise CollectorError(f"{' '.join(argv)}: output is not JSON: {exc}") from None


@dataclass(slots=True)
class _Job:
    kind: str                       # "open" or "close"
    box: BoxRef
    path: str
    start_s: float
    end_s: float | None
    layer: str | None
    snapshot: Snapshot
    results: tuple[Any, ...]
    known_macs: dict[str, str]
    queued_s: float
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(slots=True)
class _Context:
    """What one collector run sees."""

    box: BoxRef
    path: str
    start_s: float
    now_s: float
    ip: Callable[..., Any]          # ip(*args) -> parsed JSON from `ip -j ...` on the monitor side
    run: CommandRunner
    docker: Callable[[], Any]
    interface: str | None
    inspect: dict[str, Any] | None = None
    notes: dict[str, Any] = field(default_factory=dict)   # short lines for the summary


# --- collectors: each returns {filename: JSON-able data} or raises CollectorError ---

def collect_monitor_neigh(ctx: _Context) -> dict[str, Any]:
    """The monitor side's neighbour entries for the box's addresses."""
    out: dict[str, Any] = {}
    for address in ctx.box.addresses:
        out[address] = ctx.ip("neigh", "show", "to", address)
    return {"monitor_neigh.json": out}


def _interface_toward(ctx: _Context) -> list[str]:
    if ctx.interface:
        return [ctx.interface]
    devs: list[str] = []
    for address in ctx.box.addresses:
        for route in ctx.ip("route", "get", address):
            dev = route.get("dev")
            if dev and dev not in devs:
                devs.append(dev)
    if not devs:
        raise CollectorError(f"no route toward {', '.join(ctx.box.addresses)} on the monitor side")
    return devs


def collect_monitor_link(ctx: _Context) -> dict[str, Any]:
    """Counters (errors, drops) of the monitor-side interface toward the box."""
    return {"monitor_link.json": {dev: ctx.ip("-s", "link", "show", "dev", dev) for dev in _interface_toward(ctx)}}


def _need_container(ctx: _Context) -> str:
    if ctx.box.kind != "container" or not ctx.box.container:
        raise _Skip("not a container")
    return ctx.box.container


class _Skip(Exception):
    """The collector does not apply to this box."""


def collect_docker_inspect(ctx: _Context) -> dict[str, Any]:
    """`docker inspect` of the container, its endpoint on the box's network, and the network."""
    name = _need_container(ctx)
    client = ctx.docker()
    try:
        inspect = client.api.inspect_container(name)
    except Exception as exc:
        raise CollectorError(f"docker inspect {name}: {exc}") from None
    ctx.inspect = inspect
    networks = (inspect.get("NetworkSettings") or {}).get("Networks") or {}
    out: dict[str, Any] = {"container": inspect, "endpoint": networks.get(ctx.box.network) if ctx.box.network else networks}
    if ctx.box.network:
        try:
            net = client.api.inspect_network(ctx.box.network)
            out["network"] = {k: net.get(k) for k in ("Name", "Id", "Driver", "Options", "IPAM")}
            out["network_endpoint"] = (net.get("Containers") or {}).get(inspect.get("Id"))
        except Exception as exc:
            out["network_error"] = f"docker network inspect {ctx.box.network}: {exc}"
    return {"docker_inspect.json": out}


def _container_pid(ctx: _Context) -> int:
    name = _need_container(ctx)
    if ctx.inspect is None:
        try:
            ctx.inspect = ctx.docker().api.inspect_container(name)
        except Exception as exc:
            raise CollectorError(f"docker inspect {name}: {exc}") from None
    pid = int(((ctx.inspect or {}).get("State") or {}).get("Pid") or 0)
    if pid <= 0:
        raise CollectorError(f"container {name} has no process (state {(ctx.inspect.get('State') or {}).get('Status')})")
    return pid


def collect_container_net(ctx: _Context) -> dict[str, Any]:
    """The container's interface counters, neighbour table and routes, read in its network namespace."""
    pid = _container_pid(ctx)
    prefix = ["nsenter", "-t", str(pid), "-n", "ip", "-j"]

    def ns_ip(*args: str) -> Any:
        argv = prefix + list(args)
        return _json_of(ctx.run(argv, COMMAND_TIMEOUT_S), argv)

    return {"container_link.json": ns_ip("-s", "link", "show"),
            "container_neigh.json": ns_ip("neigh", "show"),
            "container_routes.json": {"ipv4": ns_ip("-4", "route", "show"), "ipv6": ns_ip("-6", "route", "show")}}


def _event_is_about(event: Mapping[str, Any], name: str, container_id: str | None) -> bool:
    actor = event.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    ids = {name, container_id} - {None}
    # Container events name the container as actor; network (dis)connect events carry it in "container".
    return actor.get("ID") in ids or attrs.get("name") in ids or attrs.get("container") in ids


def event_line(event: Mapping[str, Any]) -> str:
    """One Docker event as 'HH:MM:SSZ type action (network NAME)'."""
    t = event.get("timeNano")
    t_s = t / 1e9 if t else float(event.get("time") or 0)
    attrs = (event.get("Actor") or {}).get("Attributes") or {}
    where = f" (network {attrs['name']})" if event.get("Type") == "network" and attrs.get("name") else ""
    return (f"{datetime.fromtimestamp(t_s, tz=timezone.utc).strftime('%H:%M:%SZ')} "
            f"{event.get('Type')} {event.get('Action')}{where}")


def collect_docker_events(ctx: _Context) -> dict[str, Any]:
    """The container's Docker events (its own and its network's) since a while before the freeze; non-blocking."""
    name = _need_container(ctx)
    client = ctx.docker()
    if ctx.inspect is None:
        try:  # network events name the container by id only
            ctx.inspect = client.api.inspect_container(name)
        except Exception as exc:
            log.debug("evidence: box %s: inspect %s for its id: %s", ctx.box.name, name, exc)
    container_id = (ctx.inspect or {}).get("Id")
    since = int(ctx.start_s - EVENTS_LOOKBACK_S)
    # Now (fractional seconds, so events of this very second count): the daemon replays and closes the stream.
    until = f"{ctx.now_s:.6f}"
    events: list[Any] = []
    try:
        # A `container` filter would miss network connect/disconnect (their actor is the network).
        stream = client.api.events(since=since, until=until, filters={"type": ["container", "network"]},
                                   decode=True)
        try:
            for event in stream:
                if _event_is_about(event, name, container_id):
                    events.append(event)
        finally:
            close = getattr(stream, "close", None)
            if close:
                close()
    except Exception as exc:
        raise CollectorError(f"docker events for {name}: {exc}") from None
    events = events[-MAX_EVENTS:]
    ctx.notes["docker_events"] = [event_line(e) for e in events[-10:]]
    return {"docker_events.json": events}


# Explicit registry, run in this order.
COLLECTORS: dict[str, Callable[[_Context], dict[str, Any]]] = {
    "monitor_neigh": collect_monitor_neigh,
    "monitor_link": collect_monitor_link,
    "docker_inspect": collect_docker_inspect,
    "container_net": collect_container_net,
    "docker_events": collect_docker_events,
}


def _result_dict(r: Any) -> dict[str, Any]:
    names = ("target", "probe", "port", "ok", "rtt_ms", "error", "mac", "time_s")
    if isinstance(r, Mapping):
        return {k: r.get(k) for k in names}
    return {k: getattr(r, k, None) for k in names}


def render_text(summary: Mapping[str, Any]) -> str:
    """summary.txt from summary.json's content."""
    lines = [f"box {summary['box']} ({summary.get('kind')}), freeze from {summary.get('start')}"
             f"{', layer ' + summary['layer'] if summary.get('layer') else ''}"]
    if summary.get("open"):
        lines.append("state: open (freeze not over when this was written)")
    else:
        lines.append(f"state: closed at {summary.get('end')} after {summary.get('duration_s')} s")
    lines.append(f"seen: {summary.get('headline')}")
    findings = summary.get("findings") or []
    if findings:
        lines.append("findings:")
        lines += [f"  - {f['text']}" for f in findings]
    exchanges = summary.get("exchanges") or []
    if exchanges:
        lines.append(f"captured exchange ({summary.get('onset', {}).get('pcap')}, last "
                     f"{summary.get('onset', {}).get('cycles')} cycles):")
        for e in exchanges:
            port = f":{e['port']}" if e.get("port") else ""
            silent = f", silent for the last {e['silent_cycles']} cycle(s)" if e.get("silent_cycles") else ""
            macs = f", MAC {' -> '.join(e['macs'])}" if e.get("macs") else ""
            lines.append(f"  {e['probe']:<6} {e['address']}{port}: {e['sent']} sent, {e['answered']} answered"
                         f"{silent}{macs}")
    if summary.get("docker_events"):
        lines.append("docker events (latest last):")
        lines += [f"  {line}" for line in summary["docker_events"]]
    rec = summary.get("recovery")
    if rec:
        lines.append(f"recovery: {rec.get('headline')} ({rec.get('pcap')}, {rec.get('packets')} packets)")
        if rec.get("docker_events"):
            lines.append("docker events at the end of the freeze (latest last):")
            lines += [f"  {line}" for line in rec["docker_events"]]
    lines.append("collectors:")
    for name, status in (summary.get("collectors") or {}).items():
        if status.get("ok"):
            lines.append(f"  {name}: ok ({', '.join(status.get('files', []))})")
        else:
            lines.append(f"  {name}: {status.get('error')}")
    return "\n".join(lines) + "\n"


def _write_json(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


def read_summary(path: str) -> dict[str, Any]:
    """summary.json of the bundle at path (a bundle directory or the summary file itself)."""
    file = path if path.endswith(".json") else os.path.join(path, SUMMARY_JSON)
    with open(file, encoding="utf-8") as f:
        return json.load(f)


class EvidenceCollector:
    """Writes evidence bundles in a worker thread; the runner calls freeze_opened/freeze_closed and gets paths back."""

    def __init__(self, state_dir: str, recorder: FlightRecorder | None, *,
                 docker_client: Any = None, monitor_netns: str | None = None, interface: str | None = None,
                 clock: Callable[[], float] = time.time, run: CommandRunner = run_command,
                 max_bundles: int = retention.DEFAULT_MAX_BUNDLES, max_bytes: int = retention.DEFAULT_MAX_BYTES,
                 collectors: Mapping[str, Callable[[_Context], dict[str, Any]]] | None = None) -> None:
        self.state_dir = state_dir
        self.recorder = recorder
        self.monitor_netns = monitor_netns
        self.interface = interface
        self.clock = clock
        self.run = run
        self.max_bundles = max_bundles
        self.max_bytes = max_bytes
        self.collectors = dict(COLLECTORS if collectors is None else collectors)
        self._docker_client = docker_client
        self._docker_lock = threading.Lock()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._open: set[str] = set()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    # --- the runner's side: cheap, never raises ---

    def freeze_opened(self, box: BoxRef, start_s: float, layer: str | None = None, results: Iterable[Any] = (),
                      known_macs: Mapping[str, str] | None = None) -> str:
        """A freeze was detected: snapshot the capture, queue the bundle, return its path (for the `evidence` field)."""
        return self._submit("open", box, start_s, None, layer, results, known_macs)

    def freeze_closed(self, box: BoxRef, start_s: float, end_s: float, results: Iterable[Any] = (),
                      layer: str | None = None) -> str:
        """The freeze ended (end_s: its first healthy cycle): add recovery.pcap and the recovery; returns the path.

        layer: the deepest layer seen during the freeze, when it differs from the one given at onset.
        """
        return self._submit("close", box, start_s, end_s, layer, results, None)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until every queued job is done (tests, shutdown); False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout_s: float = 30.0) -> None:
        """Finish queued jobs (up to timeout_s) and stop the worker."""
        self.wait(timeout_s)
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout_s)
            self._thread = None

    def _submit(self, kind: str, box: BoxRef, start_s: float, end_s: float | None, layer: str | None,
                results: Iterable[Any], known_macs: Mapping[str, str] | None) -> str:
        path = bundle_dir(self.state_dir, box.name, start_s)
        try:
            snapshot = self.recorder.snapshot() if self.recorder is not None else Snapshot(cycles=())
            job = _Job(kind=kind, box=box, path=path, start_s=start_s, end_s=end_s, layer=layer, snapshot=snapshot,
                       results=tuple(results), known_macs=dict(known_macs or {}), queued_s=self.clock())
            self._ensure_worker()
            self._queue.put(job)
        except Exception:
            log.exception("evidence: box %s: could not queue the %s job for %s", box.name, kind, path)
        return path

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="evidence", daemon=True)
                self._thread.start()

    def _load_open(self) -> None:
        """Bundles whose freeze was still open when the agent stopped stay protected from retention."""
        for b in retention.scan(evidence_root(self.state_dir)):
            try:
                if read_summary(b.path).get("open"):
                    self._open.add(os.path.normpath(b.path))
            except (OSError, ValueError):
                pass

    def _work(self) -> None:
        try:
            self._load_open()
        except Exception:
            log.exception("evidence: cannot scan %s for open bundles", evidence_root(self.state_dir))
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                light = self._queue.qsize() >= LIGHT_MODE_QUEUE
                if job.kind == "open":
                    self._write_open(job, light)
                else:
                    self._write_close(job)
                self._prune(job.path)
            except Exception:
                log.exception("evidence: box %s: writing bundle %s failed", job.box.name if job else "?",
                              job.path if job else "?")
            finally:
                if job is not None:
                    job.done.set()
                self._queue.task_done()

    # --- the worker's side ---

    def _docker(self) -> Any:
        with self._docker_lock:
            if self._docker_client is None:
                import docker

                self._docker_client = docker.from_env(timeout=10)
            elif callable(self._docker_client) and not hasattr(self._docker_client, "api"):
                self._docker_client = self._docker_client()
            return self._docker_client

    def _ip(self, *args: str) -> Any:
        argv = ["ip"] + (["-n", self.monitor_netns] if self.monitor_netns else []) + ["-j"] + list(args)
        return _json_of(self.run(argv, COMMAND_TIMEOUT_S), argv)

    def _box_cycles(self, job: _Job) -> tuple[tuple[Any, ...], ...]:
        addresses = job.box.addresses
        if self.recorder is not None:
            try:
                addresses = self.recorder.addresses_of(job.box.name) or addresses
            except KeyError:
                pass
        max_bytes = self.recorder.max_bytes_per_box if self.recorder is not None else 1 << 20
        return job.snapshot.for_addresses(addresses, max_bytes)

    def _write_open(self, job: _Job, light: bool) -> None:
        os.makedirs(job.path, exist_ok=True)
        self._open.add(os.path.normpath(job.path))
        summary: dict[str, Any] = {
            "box": job.box.name, "kind": job.box.kind, "site": job.box.site, "addresses": list(job.box.addresses),
            "container": job.box.container, "network": job.box.network,
            "start_s": job.start_s, "start": iso(job.start_s), "layer": job.layer, "open": True,
            "end_s": None, "end": None, "duration_s": None, "detected_s": job.queued_s,
        }
        cycles = self._box_cycles(job)
        records = [r for c in cycles for r in c]
        try:
            dump = write_pcap(os.path.join(job.path, ONSET_PCAP), records)
            summary["onset"] = {"pcap": ONSET_PCAP, "packets": dump.packets, "skipped": dump.skipped,
                                "cycles": len(cycles)}
        except OSError as exc:
            summary["onset"] = {"pcap": None, "error": f"cannot write {ONSET_PCAP}: {exc}", "cycles": len(cycles)}
        analysis = self._analyze(job, cycles)
        summary.update(analysis.to_dict())
        summary["results"] = [_result_dict(r) for r in job.results]
        summary["known_macs"] = job.known_macs
        summary["collectors"], notes = self._collect(job, light)
        summary.update(notes)
        self._save(job.path, summary)
        log.info("evidence: box %s: freeze bundle %s: %s", job.box.name, job.path, summary["headline"])

    def _analyze(self, job: _Job, cycles: Sequence[Sequence[Any]]) -> Analysis:
        try:
            return analyze(cycles, job.results, job.known_macs)
        except Exception as exc:  # analysis must not cost the bundle
            log.exception("evidence: box %s: analysis failed", job.box.name)
            return Analysis(headline=f"analysis failed: {exc}", findings=())

    def _collect(self, job: _Job, light: bool, only: Iterable[str] | None = None,
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
        status: dict[str, Any] = {}
        ctx = _Context(box=job.box, path=job.path, start_s=job.start_s, now_s=self.clock(), ip=self._ip,
                       run=self.run, docker=self._docker, interface=self.interface)
        wanted = set(self.collectors) if only is None else set(only)
        for name, collector in self.collectors.items():
            if name not in wanted:
                continue
            if light:
                status[name] = {"ok": False, "error": "skipped: too many bundles queued (segment outage?)"}
                continue
            try:
                files = collector(ctx)
                for filename, data in files.items():
                    _write_json(os.path.join(job.path, filename), data)
                status[name] = {"ok": True, "files": sorted(files)}
            except _Skip as exc:
                status[name] = {"ok": False, "error": f"skipped: {exc}"}
            except CollectorError as exc:
                status[name] = {"ok": False, "error": f"failed: {exc}"}
                log.warning("evidence: box %s: collector %s failed: %s", job.box.name, name, exc)
            except Exception as exc:  # a collector bug must not cost the bundle
                status[name] = {"ok": False, "error": f"failed: {type(exc).__name__}: {exc}"}
                log.exception("evidence: box %s: collector %s crashed", job.box.name, name)
        return status, ctx.notes

    def _write_close(self, job: _Job) -> None:
        os.makedirs(job.path, exist_ok=True)
        try:
            summary = read_summary(job.path)
        except (OSError, ValueError):
            summary = {"box": job.box.name, "kind": job.box.kind, "site": job.box.site,
                       "addresses": list(job.box.addresses), "start_s": job.start_s, "start": iso(job.start_s),
                       "headline": "no onset summary (agent restarted or bundle pruned)", "findings": [],
                       "collectors": {}}
        cycles = self._box_cycles(job)
        records = [r for c in cycles for r in c]
        recovery: dict[str, Any] = {"pcap": RECOVERY_PCAP, "cycles": len(cycles)}
        try:
            dump = write_pcap(os.path.join(job.path, RECOVERY_PCAP), records)
            recovery.update(packets=dump.packets, skipped=dump.skipped)
        except OSError as exc:
            recovery.update(pcap=None, error=f"cannot write {RECOVERY_PCAP}: {exc}")
        # MACs seen before the freeze, so a box that came back with a new MAC is named.
        known = dict(summary.get("known_macs") or {})
        for e in summary.get("exchanges") or []:
            if e.get("macs"):
                known.setdefault(normalize_address(e["address"]), e["macs"][-1])
        try:
            analysis = analyze(cycles[-1:], job.results, known)
        except Exception as exc:  # analysis must not cost the bundle
            log.exception("evidence: box %s: recovery analysis failed", job.box.name)
            analysis = Analysis(headline=f"analysis failed: {exc}", findings=())
        recovery["headline"] = ("all probes answered again" if not analysis.findings else analysis.headline)
        recovery["findings"] = [asdict(f) for f in analysis.findings]
        recovery["results"] = [_result_dict(r) for r in job.results]
        if job.layer:
            summary["layer"] = job.layer
        if "docker_events" in self.collectors and job.box.kind == "container" and job.box.container:
            # Again at the end: what happened during the freeze (a reconnect, a restart) is on record too.
            status, notes = self._collect(job, light=False, only=("docker_events",))
            summary.setdefault("collectors", {})["docker_events"] = status["docker_events"]
            if "docker_events" in notes:
                recovery["docker_events"] = notes["docker_events"]
        summary.update(open=False, end_s=job.end_s, end=iso(job.end_s),
                       duration_s=round(job.end_s - job.start_s, 3) if job.end_s is not None else None,
                       recovery=recovery)
        self._save(job.path, summary)
        self._open.discard(os.path.normpath(job.path))
        log.info("evidence: box %s: freeze bundle %s closed: %s", job.box.name, job.path, recovery["headline"])

    def _save(self, path: str, summary: dict[str, Any]) -> None:
        _write_json(os.path.join(path, SUMMARY_JSON), summary)
        with open(os.path.join(path, SUMMARY_TXT), "w", encoding="utf-8") as f:
            f.write(render_text(summary))

    def _prune(self, current: str) -> None:
        try:
            retention.prune(evidence_root(self.state_dir), self.max_bundles, self.max_bytes,
                            keep=set(self._open) | {current})
        except Exception:
            log.exception("evidence: retention under %s failed", evidence_root(self.state_dir))
