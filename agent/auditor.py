"""The audit service: audits every container box (agent.audit, pure) from the engine's inspect and /proc, at start,
on each (re)create/start engine event and every `[audit] interval`, in its own thread (off the probe path), and
publishes AuditCompleted per box and PrivilegesChanged when a box's privileges differ from its previous audit
(kept in state_dir/audit.json, so a change made while the agent was down is still seen).

The engine client comes in as a factory (agent.wiring's); /proc is read through an injected reader.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from agent import audit as A
from agent.atomic import write_json
from agent.audit import caps
from agent.audit.model import AuditInput, BoxAudit, EngineDefaults, PrivilegesChanged, ProcStatus

log = logging.getLogger(__name__)

STATE_FILE = "audit.json"
# Engine events after which a box is audited again: its container was (re)created or (re)started, or the
# events stream reconnected (something may have changed unseen).
TRIGGER_EVENTS = frozenset({"create", "start", "restart", "resync", "discovered"})
# Podman's containers.conf, in the order Podman reads them (containers.conf(5)); the last that sets it wins.
# Running containers without --cap-add/--cap-drop/--privileged whose bounding sets make the engine's default set.
DEFAULT_SAMPLES = 3
CONTAINERS_CONF = ("/usr/share/containers/containers.conf", "/etc/containers/containers.conf")


def read_status(pid: int) -> str:
    """/proc/PID/status as text (OSError when the process is gone or unreadable)."""
    with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
        return fh.read()


def _engine_name(client: Any) -> str:
    try:
        comps = client.version().get("Components") or []
    except Exception:  # noqa: BLE001 - docker.errors.*, requests errors: name it docker, the API's shape
        return "docker"
    return "podman" if any("podman" in str(c.get("Name", "")).lower() for c in comps) else "docker"


def lsms_of(info: Mapping[str, Any]) -> frozenset[str]:
    """The security modules an engine's /info names: Docker's SecurityOptions ("name=seccomp,profile=default"),
    Podman's host.security (apparmorEnabled, selinuxEnabled, seccompEnabled)."""
    out = set()
    for opt in info.get("SecurityOptions") or ():
        for part in str(opt).split(","):
            k, _, v = part.partition("=")
            if k == "name":
                out.add(v)
    sec = (info.get("host") or {}).get("security") or {}
    out |= {name for name, key in (("apparmor", "apparmorEnabled"), ("selinux", "selinuxEnabled"),
                                   ("seccomp", "seccompEnabled")) if sec.get(key)}
    return frozenset(out)


def podman_conf_caps(paths: tuple[str, ...] = CONTAINERS_CONF) -> tuple[frozenset[str], str] | None:
    """([containers] default_capabilities of the last containers.conf that sets it, its path), or None."""
    import tomllib

    found = None
    for path in paths:
        try:
            with open(path, "rb") as fh:
                conf = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError):
            continue
        dc = (conf.get("containers") or {}).get("default_capabilities")
        if isinstance(dc, list):
            found = (caps.names(dc), f"{path} [containers] default_capabilities")
    return found


def engine_defaults(client: Any, status: Callable[[int], str] = read_status,
                    conf_caps: Callable[[], tuple[frozenset[str], str] | None] = podman_conf_caps) -> EngineDefaults:
    """What the host's engine gives a container by default: its LSMs (/info) and its default capability set,
    measured as the bounding set (/proc/PID/status CapBnd) of running containers started without --cap-add,
    --cap-drop or --privileged (the union of up to DEFAULT_SAMPLES); without such a container: `podman info`'s
    host.security.capabilities (the libpod API's /info), else Podman's containers.conf default_capabilities; else
    unknown (then 5.3 counts every --cap-add and not /proc). Engine errors propagate (the caller reports them)."""
    info = client.info()
    engine = _engine_name(client)
    lsms = lsms_of(info)
    measured: list[tuple[frozenset[str], str]] = []   # (CapBnd, whose)
    for summary in client.api.containers():   # running ones
        try:
            attrs = client.api.inspect_container(summary["Id"])
        except Exception:  # noqa: BLE001 - gone meanwhile: try the next
            continue
        hc = attrs.get("HostConfig") or {}
        pid = int((attrs.get("State") or {}).get("Pid") or 0)
        if hc.get("Privileged") or hc.get("CapAdd") or hc.get("CapDrop") or pid <= 0:
            continue
        try:
            measured.append((A.parse_proc_status(status(pid)).cap_bnd, f"/proc/{pid}/status of "
                             f"{A.container_name(attrs)}"))
        except (OSError, ValueError):
            continue
        if len(measured) == DEFAULT_SAMPLES:
            break
    if measured:
        # the union: a process that lowered its own bounding set (capsh, systemd inside) must not shrink the default
        return EngineDefaults(engine, frozenset().union(*(m[0] for m in measured)),
                              f"CapBnd of {', '.join(m[1] for m in measured)} (no --cap-add/--cap-drop)", lsms)
    listed = ((info.get("host") or {}).get("security") or {}).get("capabilities")   # `podman info`'s
    if isinstance(listed, str) and listed.strip():
        return EngineDefaults(engine, caps.names(listed.split(",")), "podman info host.security.capabilities", lsms)
    if engine == "podman" and (conf := conf_caps()) is not None:
        return EngineDefaults(engine, conf[0], conf[1], lsms)
    return EngineDefaults(engine, frozenset(), "unknown (no running container without --cap-add/--cap-drop to "
                          "measure it from): every --cap-add counts", lsms, caps_known=False)


def audit_container(client: Any, box: str, container: str, defaults: EngineDefaults, now_s: float,
                    status: Callable[[int], str] = read_status) -> BoxAudit:
    """One box's audit: inspect its container, read /proc of its main process when running; an engine error or a
    missing container is a BoxAudit with error set (class unknown), never an exception."""
    try:
        attrs = client.api.inspect_container(container)
    except Exception as exc:  # noqa: BLE001 - docker.errors.NotFound, APIError, requests errors: data
        return BoxAudit(box, now_s, container, error=f"inspect {container}: {type(exc).__name__}: {exc}",
                        engine=defaults.engine, caps_source=defaults.caps_source)
    state = attrs.get("State") or {}
    pid = int(state.get("Pid") or 0)
    proc: ProcStatus | None = None
    note = f"not running ({state.get('Status', 'unknown')})"
    if state.get("Running") and pid > 0:
        try:
            proc = A.parse_proc_status(status(pid))
        except (OSError, ValueError) as exc:
            note = f"unreadable: /proc/{pid}/status: {exc}"
    return A.audit(AuditInput(box, attrs, defaults, proc, note), now_s)


class AuditService:
    """Audits the container boxes in its own thread: all at start, one box on trigger(box, why) (engine events),
    all again every interval_s. Publishes agent.audit.AuditCompleted and PrivilegesChanged.

    boxes: box -> container name; make_client(): an engine client (docker-py API); state_dir: where audit.json
    keeps each box's last privileges; clock(): epoch seconds.
    """

    def __init__(self, boxes: Mapping[str, str], make_client: Callable[[], Any], publish: Callable[[Any], None], *,
                 interval_s: float = 3600.0, state_dir: str | None = None, clock: Callable[[], float] = time.time,
                 status: Callable[[int], str] = read_status) -> None:
        self.boxes = dict(boxes)
        self.make_client = make_client
        self.publish = publish
        self.interval_s = interval_s
        self.path = os.path.join(state_dir, STATE_FILE) if state_dir else None
        self.clock = clock
        self.status = status
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending: dict[str, str] = {}   # box -> why
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self.last: dict[str, dict[str, Any]] = self._load()   # box -> {"privileges": [...], "class": ..., "time_s"}

    def _load(self) -> dict[str, dict[str, Any]]:
        if self.path is None:
            return {}
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
            return {str(k): v for k, v in data.get("boxes", {}).items() if isinstance(v, dict)}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("audit state %s unreadable (%s): the next audits start a new baseline", self.path, exc)
            return {}

    def set_boxes(self, boxes: Mapping[str, str]) -> None:
        """Replace the audited boxes (discovery); new ones are audited at once."""
        with self._lock:
            new = set(boxes) - set(self.boxes)
            self.boxes = dict(boxes)
        for b in sorted(new):
            self.trigger(b, "discovered")

    def trigger(self, box: str, why: str) -> None:
        """Audit BOX soon (in the service's thread); unknown boxes are ignored."""
        with self._lock:
            if box not in self.boxes:
                return
            self._pending[box] = why
        self._wake.set()

    def on_container_event(self, rec: Any) -> None:
        """A ContainerEventRecord (bus): a (re)create, start, restart or resync of a box triggers its audit."""
        if getattr(rec, "event", None) in TRIGGER_EVENTS:
            self.trigger(rec.box, rec.event)

    def audit_now(self, boxes: Mapping[str, str] | None = None, why: str = "start") -> list[BoxAudit]:
        """Audit BOXES (default: all) now, in the caller's thread; publish and keep the results."""
        with self._lock:
            todo = dict(boxes if boxes is not None else self.boxes)
        try:
            if self._client is None:
                self._client = self.make_client()
            defaults = engine_defaults(self._client, self.status)
        except Exception as exc:  # noqa: BLE001 - the engine is down: every box's audit says so
            self._client = None
            now = self.clock()
            out = [BoxAudit(b, now, c, error=f"engine: {type(exc).__name__}: {exc}") for b, c in todo.items()]
        else:
            out = [audit_container(self._client, b, c, defaults, self.clock(), self.status) for b, c in todo.items()]
        for a in out:
            self._record(a, why)
        self._save()
        return out

    def _record(self, a: BoxAudit, why: str) -> None:
        self.publish(A.AuditCompleted(a, why))
        if a.error is not None:
            log.warning("audit of box %s failed: %s", a.box, a.error)
            return
        before = self.last.get(a.box)
        self.last[a.box] = {"privileges": sorted(a.privileges), "class": a.audit_class.value, "time_s": a.time_s}
        if before is None:
            return
        added, removed = A.change(frozenset(before.get("privileges", ())), a.privileges)
        if added or removed:
            text = A.change_text(added, removed)
            log.warning("box %s: %s (%s -> %s, audit on %s)", a.box, text, before.get("class"), a.audit_class, why)
            self.publish(PrivilegesChanged(a.box, a.time_s, added, removed, str(before.get("class", "unknown")),
                                           a.audit_class.value, text))

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            write_json(self.path, {"version": 1, "boxes": self.last})
        except OSError as exc:
            log.warning("cannot save the audit state %s: %s", self.path, exc)

    def start(self) -> None:
        """Start the thread: audit every box now, then on triggers and every interval_s."""
        self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (an audit in progress finishes first)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        due, first = time.monotonic(), True
        while not self._stop.is_set():
            self._wake.clear()   # before taking the pending boxes: a trigger from now on wakes the next round
            try:
                if time.monotonic() >= due:
                    due = time.monotonic() + self.interval_s
                    with self._lock:
                        self._pending.clear()
                    self.audit_now(why="start" if first else "interval")
                    first = False
                with self._lock:
                    pending, self._pending = self._pending, {}
                    todo = {b: self.boxes[b] for b in pending if b in self.boxes}
                for box, container in todo.items():
                    self.audit_now({box: container}, pending[box])
            except Exception:  # the service goes on: the next trigger or interval tries again
                log.exception("audit failed")
            self._wake.wait(max(0.0, due - time.monotonic()))


TRIAL_LABEL = "vobox.audit.trial"


def trial_runner(client: Any, inspect: Mapping[str, Any], variant: Any, checks: Any, name: str, *,
                 settle_s: float = 1.0) -> Callable[[frozenset[str]], dict[str, bool]]:
    """run_checks(cap_add) for agent.audit.suggest.trial: start the variant next to the box (NAME, the box's image,
    command, user, environment and working directory, network none, the variant's devices and mounts, CAP_ADD),
    check it still runs after settle_s, run each of the box's in-container checks in it (`exec`: the variant's own
    capabilities; each bounded by the client's request timeout), remove it.

    checks: the box's agent.checks.Check tuple; a check's name is "<kind>:<target>". The variant carries the
    label vobox.audit.trial (remove_trials() finds leftovers of a crashed run).
    """
    from agent.audit import suggest
    from agent.checks import CHECKS

    cfg = inspect.get("Config") or {}

    def run_checks(cap_add: frozenset[str]) -> dict[str, bool]:
        remove_trials(client, name)
        hc = client.api.create_host_config(
            network_mode="none", cap_add=sorted(caps.short(c) for c in cap_add) or None,
            devices=list(variant.devices) or None,
            binds=[f"{s}:{d}:{'ro' if ro else 'rw'}" + (f",{p}" if p and p != "rprivate" else "")
                   for s, d, ro, p in variant.mounts] or None)
        # the box's image, command, user, environment and working directory: it starts as the box does (no
        # network: whatever its environment names, it reaches nothing)
        ctr = client.api.create_container(cfg.get("Image"), command=cfg.get("Cmd"), entrypoint=cfg.get("Entrypoint"),
                                          user=cfg.get("User") or None, environment=cfg.get("Env") or None,
                                          working_dir=cfg.get("WorkingDir") or None, name=name, host_config=hc,
                                          labels={TRIAL_LABEL: "1"})
        out: dict[str, bool] = {}
        try:
            client.api.start(ctr["Id"])
            time.sleep(settle_s)
            running = bool((client.api.inspect_container(ctr["Id"]).get("State") or {}).get("Running"))
            out[suggest.RUNNING] = running
            for check in checks:
                kind = CHECKS[check.kind]
                label = f"{check.kind}:{check.target}"
                if not running:
                    out[label] = False
                    continue
                ex = client.api.exec_create(ctr["Id"], kind.argv(check), stdout=True, stderr=False)
                stdout = client.api.exec_start(ex["Id"])
                rc = client.api.exec_inspect(ex["Id"]).get("ExitCode")
                out[label] = rc is not None and kind.judge(check, int(rc), stdout or b"", time.time()).ok
        finally:
            client.api.remove_container(ctr["Id"], force=True)
        return out

    return run_checks


def remove_trials(client: Any, name: str | None = None) -> None:
    """Remove trial variants (label vobox.audit.trial; only NAME when given), e.g. leftovers of a crashed run."""
    filters: dict[str, Any] = {"label": TRIAL_LABEL}
    if name is not None:
        filters["name"] = f"^/{name}$"
    for c in client.api.containers(all=True, filters=filters):
        client.api.remove_container(c["Id"], force=True)
