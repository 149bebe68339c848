"""Evidence bundles: per freeze, the capture, neighbour tables, counters, Docker state and a summary, on disk.

`EvidenceCollector.freeze_opened()` / `freeze_closed()` take a snapshot of the
flight recorder (cheap, in the caller's thread), return the bundle path at
once and do all the slow work (pcap, `ip`, `nsenter`, Docker API, summary,
retention) in one worker thread. Nothing here raises into the caller: a
collector that fails is noted in the summary. The Docker client (or a factory
for it) comes from the caller; without one the Docker collectors say so.

Rooms: bundle.py (layout, files), collectors.py (what is collected), render.py
(summary.txt), retention.py (what is kept); this module is the worker.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from agent import atomic, redact
from agent.core.events import BoxKind
from agent.forensics import retention
from agent.forensics.bundle import (
    ONSET_PCAP,
    RECOVERY_PCAP,
    SUMMARY_JSON,
    SUMMARY_TXT,
    BoxRef,
    bundle_dir,
    evidence_root,
    iso,
    read_summary,
    write_json,
)
from agent.forensics.collectors import (
    COLLECTORS,
    COMMAND_TIMEOUT_S,
    CollectorError,
    CommandRunner,
    Context,
    Skip,
    TargetGone,
    event_line,
    json_of,
    run_command,
)
from agent.forensics.recorder import FlightRecorder, Snapshot, normalize_address, write_pcap
from agent.forensics.render import render_text
from agent.forensics.summary import Analysis, analyze

__all__ = ["COLLECTORS", "ONSET_PCAP", "RECOVERY_PCAP", "SUMMARY_JSON", "SUMMARY_TXT", "BoxRef", "CollectorError",
           "EvidenceCollector", "bundle_dir", "event_line", "evidence_root", "iso", "read_summary", "render_text",
           "run_command"]

log = logging.getLogger(__name__)

# With more jobs than this waiting (a segment outage freezing hundreds of boxes),
# jobs skip the external collectors and write capture + summary only.
LIGHT_MODE_QUEUE = 16


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


def _result_dict(r: Any) -> dict[str, Any]:
    names = ("target", "probe", "port", "ok", "rtt_ms", "error", "mac", "time_s")
    if isinstance(r, Mapping):
        return {k: r.get(k) for k in names}
    return {k: getattr(r, k, None) for k in names}


class EvidenceCollector:
    """Writes evidence bundles in a worker thread; the runner calls freeze_opened/freeze_closed and gets paths back."""

    def __init__(self, state_dir: str, recorder: FlightRecorder | None, *,
                 docker_client: Any = None, monitor_netns: str | None = None, interface: str | None = None,
                 clock: Callable[[], float] = time.time, run: CommandRunner = run_command,
                 max_bundles: int = retention.DEFAULT_MAX_BUNDLES, max_bytes: int = retention.DEFAULT_MAX_BYTES,
                 collectors: Mapping[str, Callable[[Context], dict[str, Any]]] | None = None,
                 secrets: Iterable[str] = ()) -> None:
        self.state_dir = state_dir
        self.recorder = recorder
        self.monitor_netns = monitor_netns
        self.interface = interface
        self.clock = clock
        self.run = run
        self.max_bundles = max_bundles
        self.max_bytes = max_bytes
        self.collectors = dict(COLLECTORS if collectors is None else collectors)
        self.secrets = tuple(secrets)   # values redacted from every file (agent.redact), with container env
        self._docker_client = docker_client
        self._docker_lock = threading.Lock()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._open: set[str] = set()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._jobs_of: dict[str, list[_Job]] = {}   # box -> its jobs not known to be done (wait_collected)

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

    def wait_collected(self, box: str, timeout_s: float) -> bool:
        """Block until the bundles queued so far for BOX are written (remediation waits before acting on it);
        at most timeout_s s; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._start_lock:
            jobs = [j for j in self._jobs_of.get(box, ()) if not j.done.is_set()]
            self._jobs_of[box] = jobs
        return all(j.done.wait(max(0.0, deadline - time.monotonic())) for j in jobs)

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
            with self._start_lock:
                self._jobs_of.setdefault(box.name, []).append(job)
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
        """The caller's Docker client; a factory given instead is called once, on first use."""
        with self._docker_lock:
            if self._docker_client is None:
                raise CollectorError("no Docker client was given to the evidence collector")
            if callable(self._docker_client) and not hasattr(self._docker_client, "api"):
                self._docker_client = self._docker_client()
            return self._docker_client

    def _ip(self, *args: str) -> Any:
        argv = ["ip"] + (["-n", self.monitor_netns] if self.monitor_netns else []) + ["-j"] + list(args)
        return json_of(self.run(argv, COMMAND_TIMEOUT_S), argv)

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
        atomic.private_dir(job.path)
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
        ctx = Context(box=job.box, path=job.path, start_s=job.start_s, now_s=self.clock(), ip=self._ip,
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
                    # docker inspect holds the container's environment: values redacted, keys kept
                    write_json(os.path.join(job.path, filename), redact.data(data, self.secrets))
                status[name] = {"ok": True, "files": sorted(files)}
            except Skip as exc:
                status[name] = {"ok": False, "error": f"skipped: {exc}"}
            except TargetGone as exc:   # not a failure of ours: the box changed under us (kept apart from errors)
                status[name] = {"ok": False, "target_gone": True, "error": f"target gone: {exc}"}
                log.info("evidence: box %s: collector %s: target gone: %s", job.box.name, name, exc)
            except CollectorError as exc:
                status[name] = {"ok": False, "error": f"failed: {exc}"}
                log.warning("evidence: box %s: collector %s failed: %s", job.box.name, name, exc)
            except Exception as exc:  # a collector bug must not cost the bundle
                status[name] = {"ok": False, "error": f"failed: {type(exc).__name__}: {exc}"}
                log.exception("evidence: box %s: collector %s crashed", job.box.name, name)
        return status, ctx.notes

    def _write_close(self, job: _Job) -> None:
        atomic.private_dir(job.path)
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
        if "docker_events" in self.collectors and job.box.kind == BoxKind.CONTAINER and job.box.container:
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
        summary = redact.data(summary, self.secrets)
        write_json(os.path.join(path, SUMMARY_JSON), summary)
        with atomic.open_private_file(os.path.join(path, SUMMARY_TXT)) as f:
            f.write(render_text(summary))

    def _prune(self, current: str) -> None:
        try:
            retention.prune(evidence_root(self.state_dir), self.max_bundles, self.max_bytes,
                            keep=set(self._open) | {current})
        except Exception:
            log.exception("evidence: retention under %s failed", evidence_root(self.state_dir))
