"""Follow the container engine's event stream (dockerd or Podman) for the configured containers: container_event
records and a container state cache.

The cache (ContainerStates) knows every configured container's state (running, paused,
restarting, exited, dead, removed), its Docker health status, whether it was OOM-killed and
whether someone else stopped it (and why, as text), every cycle without an inspect per box per
cycle: one inspect per container when the stream (re)connects, then only the events. The
events are read as engine-neutral EngineEvents (agent.engines.events: identity by name,
the one reading of an exit); the resync reads an inspect through the same rules. The cache is
saved to a file (the last-known state an agent restart reads back). ExpectedEvents is how the
remediation service marks the stops/restarts it causes itself, so they are not operator intent.
Which engine answers is asked at every (re)connect (agent.engines.identify); its decoder and its
differences (agent.engines.EngineTraits: the stream's filter, how to read its history, whether health
changes come as events or must be read from inspects) are used from then on.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import docker.errors

from agent.engines import ENGINES, Engine, Identity, identify_client
from agent.engines.client import read_span
from agent.engines.docker import decode as from_docker
from agent.engines.events import (
    UNREPORTED_KILL_WINDOW_S,
    UNREPORTED_SIGNAL,
    EngineEvent,
    ExitEvidence,
    at,
    cleanup_request,
    docker_time,
    follow_names,
    judge_exit,
    sorted_for_replay,
    stop_request,
)
from remediations.model import ContainerEventRecord, RemediationTarget

log = logging.getLogger(__name__)

# EngineEvent kind -> our `event` tag value (the container_event point); kinds not here make no record.
RECORDED = {"die": "die", "oom": "oom", "restart": "restart", "pause": "pause", "unpause": "unpause",
            "stop": "stop", "start": "start", "kill": "kill", "destroy": "destroy", "create": "create",
            "rename": "rename", "health_status": "health_status", "network_connect": "network_connect",
            "network_disconnect": "network_disconnect"}
# How often the health of containers with a HEALTHCHECK is read from inspects on an engine whose events do not
# report health changes (Podman 4.3: agent.engines.podman); a probe cycle is 10 s by default.
HEALTH_POLL_S = 5.0
# How long a `since` stream is read for an exit's history on an engine whose `until` returns nothing (the span is
# replayed at once: measured ~10 ms on Podman 4.3.1).
HISTORY_READ_S = 0.5
# How long the agent's start waits for the watcher's first connect (its resync: every container's state read)
# before the first probe cycle. Measured here: dockerd 20.10 under 0.1 s (each request ~0.01 s); Podman 4.3.1
# ~1.3 s (its compat `/version` takes ~0.35 s, asked by the client and by identify; `/info` ~0.2 s; an exited
# container's history read 0.5 s), longer than a 1 s cycle: without the wait, a restarted agent judged a box its
# admin had stopped by probes alone.
FIRST_SYNC_WAIT_S = 10.0
# Container states (Docker's State.Status, plus "removed": no container holds the name).
CONTAINER_STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead", "removed")
EXPECT_WINDOW_S = 120.0
# The engine's history asked at a resync about one exit: from this long before FinishedAt (a `docker stop -t`
# timeout lies between its kill and its die; Docker's default is 10 s) to HINT_AFTER_S after (the stop event).
HINT_BEFORE_S = 60.0
HINT_AFTER_S = 5.0
# dockerd logs a `kill` after it delivered the signal (moby daemon/kill.go), so a SIGKILL's `kill` may come after
# the `die` it caused, and a `docker stop`'s `stop` always does: a request this soon after an exit is its cause.
REQUEST_AFTER_EXIT_S = HINT_AFTER_S
STATE_FILE = "containers.json"
# dockerd's default --shutdown-timeout (15 s): how long before its event stream is lost an engine stop may
# already be stopping containers.
ENGINE_STOP_LEAD_S = 15.0


@dataclass(frozen=True, slots=True)
class ContainerState:
    """What the engine says of one configured container (times: epoch s).

    state: one of CONTAINER_STATES; health: healthy|unhealthy|starting, None without a
    HEALTHCHECK; since_s: when it entered that state (None: unknown); oom_killed: its last exit
    was an OOM kill; operator_stopped: stopped, killed, renamed away or removed by someone else
    (not by our remediation, not a crash: agent.engines.events.judge_exit); exit_code: of
    the last exit; reason: why it is not running, as stored and shown ("stopped by operator:
    docker stop at T", "failed: exit 137, killed (OOM or SIGKILL) at T"); container_id: the
    container holding the box's name; request: a stop request seen while it still runs
    ("docker stop"), request_ours: that request was our remediation's.
    """

    state: str
    health: str | None = None
    since_s: float | None = None
    oom_killed: bool = False
    operator_stopped: bool = False
    exit_code: int | None = None
    reason: str | None = None
    container_id: str | None = None
    request: str | None = None
    request_ours: bool = False
    in_gap: bool = False   # the exit fell in a span the agent did not see the engine's events: read from the
                           # engine's history alone (no earlier `stopped` verdict of the box stands for it)
    request_s: float | None = None   # when `request` was seen (a kill with an unreported signal expires)
    cleanups: int = 0   # `cleanup` events (Podman) seen since the exit: the second is a `podman stop` (cleanup_request)


class ExpectedEvents:
    """Stops and restarts our own remediation causes: expect(container) before acting; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def expect(self, container: str | None, window_s: float = EXPECT_WINDOW_S) -> None:
        """Mark stop/kill/die/destroy events of CONTAINER (name or id) in the next window_s seconds as ours."""
        if container:
            with self._lock:
                self._until[container] = self.clock() + window_s

    def is_expected(self, names: Iterable[str | None], time_s: float) -> bool:
        """True when an event at time_s of a container known by any of NAMES falls in a window we opened."""
        with self._lock:
            return any(time_s <= self._until.get(n, float("-inf")) for n in names if n)


def advance(cur: ContainerState | None, ev: EngineEvent, ours: bool,
            cgroup_version: int | None = None) -> ContainerState:
    """The state after one event of the container holding the box's name; pure.

    ours: EV falls in a window remediation opened (ExpectedEvents). A die is judged by
    agent.engines.events.judge_exit from the stop request seen before it (kill with a
    stop signal, stop), the oom event, the exit code and the cgroup version; a request within
    REQUEST_AFTER_EXIT_S after the die (dockerd's order: kill, die, stop; a SIGKILL's kill may
    trail its die) names it and judges it again.
    """
    cur = cur or ContainerState("running")
    t = ev.time_s
    if ev.kind == "health_status":
        return replace(cur, health=ev.attrs.get("health") or None)
    if ev.kind in ("start", "restart"):
        return ContainerState("running", None, t, container_id=ev.container_id or cur.container_id)
    if ev.kind == "unpause":
        return replace(cur, state="running", since_s=t)
    if ev.kind == "pause":
        return replace(cur, state="paused", since_s=t)
    if ev.kind == "create":
        return ContainerState("created", None, t, reason=f"created, not started, at {at(t)}",
                              container_id=ev.container_id)
    if ev.kind == "oom":
        return replace(cur, oom_killed=True)
    if ev.kind == "rename":   # the box's container was renamed away (renamed into the name: re-inspected)
        intent_op = not ours
        return ContainerState("removed", None, t, cur.oom_killed, intent_op, cur.exit_code,
                              f"renamed {'by operator' if intent_op else 'by the agent'} to "
                              f"{ev.name or '?'} at {at(t)}: no container holds the name")
    request = stop_request(ev)
    if ev.kind == "cleanup":
        if (cur.state not in ("exited", "dead") or cur.request is not None or cur.since_s is None
                or t - cur.since_s > REQUEST_AFTER_EXIT_S):
            return cur   # a cleanup of no fresh exit, or of one whose request is already named
        request = cleanup_request(ev, cur.cleanups)
        cur = replace(cur, cleanups=cur.cleanups + 1)
        if request is None:
            return cur
    if ev.kind == "die":
        if (cur.request is not None and cur.request.endswith(UNREPORTED_SIGNAL)
                and (cur.request_s is None or t - cur.request_s > UNREPORTED_KILL_WINDOW_S)):
            cur = replace(cur, request=None, request_ours=False, request_s=None)   # that kill did not end it
        intent = judge_exit(ExitEvidence(ev.exit_code, t, cur.oom_killed, cur.request, cur.request_ours,
                                         cgroup_version))
        return ContainerState("exited", None, t, cur.oom_killed, intent.operator, ev.exit_code, intent.reason,
                              ev.container_id or cur.container_id, cur.request, cur.request_ours)
    if ev.kind == "destroy":
        if ours:
            return ContainerState("removed", None, t, cur.oom_killed, False, cur.exit_code,
                                  f"removed by the agent's remediation at {at(t)}")
        return ContainerState("removed", None, t, cur.oom_killed, True, cur.exit_code,
                              f"removed by operator: {ev.attrs.get('engine') or 'docker'} rm at {at(t)}"
                              + (f" (before: {cur.reason})" if cur.reason else ""))
    if request is None:
        return cur
    if cur.state in ("exited", "dead"):
        if cur.oom_killed or cur.since_s is None or t - cur.since_s > REQUEST_AFTER_EXIT_S:
            return cur   # a request long after the exit changes nothing
        if ev.kind != "stop" and cur.request is not None and cur.request.endswith(" stop"):
            request = cur.request   # a stop's own kill (dockerd: kill, die, stop) names the stop
        intent = judge_exit(ExitEvidence(cur.exit_code, cur.since_s, cur.oom_killed, request,
                                         ours or cur.request_ours, cgroup_version))
        return replace(cur, operator_stopped=intent.operator, reason=intent.reason, request=request,
                       request_ours=ours or cur.request_ours)
    keep = not (ev.kind == "stop" or cur.request is None or cur.request.endswith(UNREPORTED_SIGNAL))
    return replace(cur, request=cur.request if keep else request, request_ours=ours or cur.request_ours,
                   request_s=cur.request_s if keep else t)


def next_state(old: ContainerState | None, event: str, action: str, time_s: float, exit_code: int | None,
               ours: bool, signal: str | None = None) -> ContainerState:
    """advance() for one event given as its parts (event: our tag, action: Docker's raw action); pure."""
    attrs = {"action": action}
    if exit_code is not None:
        attrs["exit_code"] = str(exit_code)
    if signal:
        attrs["signal"] = signal
    if event == "health_status":
        attrs["health"] = action.split(":", 1)[1].strip() if ":" in action else ""
    return advance(old, EngineEvent(event, "", "", attrs, time_s), ours)


def state_from_inspect(attrs: Mapping[str, Any], *, history: Sequence[EngineEvent] = (),
                       cgroup_version: int | None = None, last: ContainerState | None = None,
                       unseen: tuple[float, float] | None = None,
                       is_ours: Callable[[EngineEvent], bool] | None = None) -> ContainerState:
    """The ContainerState from `docker inspect` attributes (container.attrs), read by the live rules.

    An exited container is judged as its die would have been live: the stop requests and oom
    events of HISTORY (the engine's events around FinishedAt: a hint, often empty), OOMKilled,
    the exit code with CGROUP_VERSION. LAST, the persisted last-known state, decides when it
    already judged this very exit (same container, same FinishedAt). UNSEEN: the span the agent
    did not see the engine's events; an exit inside it with no request in HISTORY says so.
    """
    st = attrs.get("State") or {}
    cid = str(attrs.get("Id") or "") or None
    status = str(st.get("Status") or "dead")
    health = (st.get("Health") or {}).get("Status") or None
    started, finished = docker_time(st.get("StartedAt")), docker_time(st.get("FinishedAt"))
    exit_code = st.get("ExitCode")
    oom = bool(st.get("OOMKilled"))
    if status in ("running", "paused", "restarting"):
        return ContainerState(status, health if status in ("running", "paused") else None, started, oom,
                              container_id=cid)
    if status == "created" and started is None:
        return ContainerState("created", None, None, container_id=cid, reason="created, never started")
    if (last is not None and last.container_id == cid and last.state in ("exited", "dead")
            and last.since_s is not None and finished is not None and abs(last.since_s - finished) < 0.001
            and (unseen is None or finished < unseen[0])):
        return replace(last, state=status)   # this exit was judged live: the persisted judgement stands
    cur = ContainerState("running", container_id=cid)
    code = int(exit_code) if exit_code is not None else None
    die = EngineEvent("die", cid or "", "", {"exit_code": str(code)} if code is not None else {},
                      finished if finished is not None else 0.0)
    seen_request = False
    for ev in sorted_for_replay([e for e in history if e.kind in ("kill", "oom", "stop", "cleanup")] + [die]):
        if ev is not die and finished is not None and not (finished - HINT_BEFORE_S <= ev.time_s
                                                            <= finished + HINT_AFTER_S):
            continue
        if ev is die:
            cur = replace(cur, oom_killed=cur.oom_killed or oom)
        seen_request = seen_request or stop_request(ev) is not None
        before = cur
        cur = advance(cur, ev, bool(is_ours and ev is not die and is_ours(ev)), cgroup_version)
        seen_request = seen_request or (ev.kind == "cleanup" and cur.request is not None and before.request is None)
    in_gap = unseen is not None and finished is not None and unseen[0] <= finished <= unseen[1]
    if in_gap and not seen_request and not cur.oom_killed:
        intent = judge_exit(ExitEvidence(code, finished, False, None, False, cgroup_version, unseen))
        cur = replace(cur, operator_stopped=intent.operator, reason=intent.reason)
    cur = replace(cur, in_gap=in_gap)
    return replace(cur, state=status if status in CONTAINER_STATES else "dead", since_s=finished)


class ContainerStates:
    """The state cache: box -> ContainerState, kept from events and resyncs; thread-safe; call it for a snapshot.

    path: the file the cache is saved to after every change (JSON, mode 0600; None: not saved);
    what it held at start is `last_known()`, the evidence an agent restart reads back.
    """

    def __init__(self, path: str | None = None) -> None:
        self._states: dict[str, ContainerState] = {}
        self._synced: dict[str, float] = {}
        self._lock = threading.Lock()
        self.path = path
        self._last: dict[str, ContainerState] = {}
        self.last_saved_s: float | None = None
        self._engine_down: tuple[float, str] | None = None
        if path:
            self._last, self.last_saved_s = load_states(path)

    def snapshot(self) -> dict[str, ContainerState]:
        """box -> its container's state now (boxes never synced are missing)."""
        with self._lock:
            return dict(self._states)

    __call__ = snapshot   # the pipeline's `container_states()` callable

    def engine_down(self) -> tuple[float, str] | None:
        """(since_s, reason) while the engine's event stream is lost; None while it is followed."""
        with self._lock:
            return self._engine_down

    def set_engine_down(self, since_s: float | None, reason: str = "") -> None:
        """The watcher's word on the engine: lost since since_s (REASON), or followed again (None)."""
        with self._lock:
            self._engine_down = None if since_s is None else (since_s, reason)

    def reopen_exits(self, from_s: float, lost_s: float) -> list[str]:
        """The stream was lost at lost_s: exits since from_s lose their live reading (an engine stopping stops
        containers as `docker stop` does); they are failures until the resync reads them again. The boxes."""
        out = []
        with self._lock:
            for box, st in self._states.items():
                if st.state in ("exited", "dead") and st.since_s is not None and st.since_s >= from_s:
                    self._states[box] = replace(
                        st, operator_stopped=False, in_gap=True,
                        reason=f"exited at {at(st.since_s)} as the engine's event stream was lost (at {at(lost_s)}): "
                               f"read again when the engine returns")
                    out.append(box)
            if out:
                self._save()
        return out

    def last_known(self, box: str) -> ContainerState | None:
        """BOX's state as this cache (or the file, before it synced) last knew it; None when never known."""
        with self._lock:
            return self._states.get(box) or self._last.get(box)

    def drop(self, box: str) -> None:
        """Forget BOX (it left the box set)."""
        with self._lock:
            self._states.pop(box, None)
            self._synced.pop(box, None)
            self._save()

    def set(self, box: str, state: ContainerState, synced_s: float) -> None:
        """Replace one box's state (a resync whose inspect ran at synced_s; older events are then ignored)."""
        with self._lock:
            self._states[box] = state
            self._synced[box] = synced_s
            self._save()

    def apply(self, rec: ContainerEventRecord, ours: bool, ev: EngineEvent | None = None,
              cgroup_version: int | None = None) -> ContainerState | None:
        """Advance the box's state by one record (EV: its EngineEvent); None for events that are not states."""
        if rec.event.startswith("network_") or rec.event == "resync":
            return None
        with self._lock:
            if rec.time_s < self._synced.get(rec.box, float("-inf")):
                return self._states.get(rec.box)   # older than a resync's inspect, which already includes it
            old = self._states.get(rec.box)
            if ev is None:
                new = next_state(old, rec.event, rec.action, rec.time_s, rec.exit_code, ours, rec.signal)
            else:
                new = advance(old, ev, ours, cgroup_version)
            self._states[rec.box] = new
            if new != old:
                self._save()
            return new

    def save(self) -> None:
        """Write the file now (at stop: its time bounds what the next start did not see)."""
        with self._lock:
            self._save()

    def _save(self) -> None:
        if not self.path:
            return
        saved_s = time.time()
        data = {"saved_s": saved_s, "boxes": {b: asdict(s) for b, s in self._states.items()}}
        try:
            directory = os.path.dirname(self.path) or "."
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".containers.", dir=directory)   # mkstemp: mode 0600
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)
            self.last_saved_s = saved_s
        except OSError as exc:
            log.warning("container states: cannot save %s: %s", self.path, exc)


def load_states(path: str) -> tuple[dict[str, ContainerState], float | None]:
    """(box -> ContainerState, saved_s) from a file ContainerStates saved; empty when missing or unreadable."""
    try:
        with open(path) as f:
            data = json.load(f)
        names = {f.name for f in fields(ContainerState)}
        boxes = {b: ContainerState(**{k: v for k, v in s.items() if k in names})
                 for b, s in (data.get("boxes") or {}).items()}
        return boxes, float(data["saved_s"]) if data.get("saved_s") is not None else None
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("container states: %s unreadable (%s); starting without last-known states", path, exc)
        return {}, None


def _detail(ev: EngineEvent, name: str) -> str:
    what = ev.attrs.get("action", ev.kind)
    if ev.kind.startswith("network_"):
        return f"container {name} {what} network {ev.attrs.get('network') or '(not named by the engine)'}"
    detail = f"container {name} {what}"
    if ev.attrs.get("signal"):
        detail += f" signal {ev.attrs['signal']}"
    if ev.kind == "rename":
        detail += f" from {ev.attrs.get('old_name', '?')} to {ev.name}"
    if ev.container_id:
        detail += f" (id {ev.container_id[:12]})"
    return detail


def record_for(ev: EngineEvent, target: RemediationTarget) -> ContainerEventRecord | None:
    """The container_event record of EV for TARGET's box (EV concerns it: follow_names); None when not recorded."""
    event = RECORDED.get(ev.kind)
    if event is None:
        return None
    network = ev.attrs.get("network")
    if event.startswith("network_") and target.network and network and network != target.network:
        return None   # only the box's own macvlan network matters (Podman's events name none: each is recorded)
    return ContainerEventRecord(box=target.box, kind=target.kind, event=event,
                                action=ev.attrs.get("action", ev.kind) if not event.startswith("network_")
                                else f"network {ev.attrs.get('action', '')}",
                                exit_code=ev.exit_code, detail=_detail(ev, target.container or ev.name),
                                time_s=ev.time_s, signal=ev.attrs.get("signal") or None)


def record_from_event(ev: dict[str, Any], by_name: dict[str, RemediationTarget],
                      by_id: dict[str, RemediationTarget],
                      decode: Callable[[Mapping[str, Any]], EngineEvent | None] = from_docker,
                      ) -> ContainerEventRecord | None:
    """The record for one raw engine event (DECODE: the engine's decoder), None when it concerns no configured box.

    by_name: container name -> target; by_id: id of the container holding that name -> target.
    A container known by id no longer holding its box's name concerns no box.
    """
    e = decode(ev)
    if e is None:
        return None
    target = by_id.get(e.container_id)
    if target is None and e.name and e.kind in ("create", "start", "restart", "rename"):
        target = by_name.get(e.name)
    if target is None and e.name and not e.kind.startswith("network_"):
        held = {t.box for t in by_id.values()}
        t = by_name.get(e.name)
        target = t if t is not None and t.box not in held else None
    return record_for(e, target) if target is not None else None


class DockerEventWatcher:
    """A thread following `docker events` for configured containers; reconnects when dockerd comes back.

    A box follows the container holding its container name (agent.engines.events.follow_names):
    a new container with the name is the box from its create/start/rename on, and events of a
    container that gave the name up change nothing.
    """

    def __init__(self, targets: Iterable[RemediationTarget], docker_factory: Callable[[], Any],
                 on_record: Callable[[ContainerEventRecord], None], retry_s: float = 2.0,
                 clock: Callable[[], float] = time.time, states: ContainerStates | None = None,
                 expected: ExpectedEvents | None = None,
                 follow: Callable[[Any, EngineEvent | None], None] | None = None,
                 health_poll_s: float = HEALTH_POLL_S) -> None:
        self.targets = [t for t in targets if t.container]
        # follow(client, None) at every (re)connect before the resync, follow(client, event) for every decoded
        # event (any container's): the box discovery (agent.discovery) rides this stream instead of opening its own.
        self.follow = follow
        self._targets_changed = False
        self.states = states if states is not None else ContainerStates()
        self.expected = expected if expected is not None else ExpectedEvents(clock)
        # When the agent last saw the engine's events: the stream lost, or (at start) the state file's last save.
        self._lost_s: float | None = None
        self._unseen_from_s: float | None = self.states.last_saved_s
        self.docker_factory = docker_factory
        self.on_record = on_record
        self.retry_s = retry_s
        self.clock = clock
        self.connected = threading.Event()
        self._first_attempt = threading.Event()   # set when the first connect attempt ended, either way
        self.reconnects = 0
        self.cgroup_version: int | None = None
        self.holders: dict[str, str] = {}   # container name -> id of the container holding it
        self._stop = threading.Event()
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self._since_ns: int | None = None
        # The engine that answers (asked at every connect); dockerd's rules until then.
        self.engine: Engine = ENGINES["docker"]
        self.identity: Identity | None = None
        self.health_poll_s = health_poll_s
        self.health_polls = 0
        # handle() and the resync run in the stream's thread, the health reads in their own: one at a time.
        self._lock = threading.RLock()
        self._health_thread: threading.Thread | None = None
        self._healthchecked: set[str] = set()   # boxes whose container has a HEALTHCHECK (seen in an inspect)

    def wait_ready(self, timeout_s: float = FIRST_SYNC_WAIT_S) -> bool:
        """Block until the first connect attempt ended (timeout_s at most): the states were read (True), or the
        engine could not be reached (False: its boxes are held as engine_down by the pipeline).

        The agent's start calls it before the first probe cycle, so no container box is judged by probes
        alone while its engine state is still being read (FIRST_SYNC_WAIT_S says why it matters on Podman).
        """
        self._first_attempt.wait(timeout_s)
        return self.connected.is_set()

    def start(self) -> None:
        """Start following events (returns at once)."""
        self._thread = threading.Thread(target=self._run, name="docker-events", daemon=True)
        self._thread.start()
        self._health_thread = threading.Thread(target=self._poll_health, name="engine-health", daemon=True)
        self._health_thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop following and join the thread; the state file is saved (its time: until when we watched)."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - closing a dead stream may fail; we are stopping anyway
                pass
        if self._thread:
            self._thread.join(timeout_s)
        if self._health_thread:
            self._health_thread.join(timeout_s)
        if self.connected.is_set():
            self.states.save()

    def set_targets(self, targets: Iterable[RemediationTarget]) -> None:
        """Replace the followed boxes (discovery); new ones are inspected before the next event is handled."""
        self.targets = [t for t in targets if t.container]
        self._targets_changed = True

    def _follow(self, client: Any, ev: EngineEvent | None) -> None:
        if self.follow is None:
            return
        try:
            self.follow(client, ev)
        except Exception:  # discovery failing must not stop following the known containers
            log.exception("docker events: discovery failed on %s", ev.kind if ev is not None else "connect")

    def _history(self, client: Any, container_id: str, finished_s: float) -> list[EngineEvent]:
        """The engine's events of one container around its exit (a hint: often nothing, never an error)."""
        until_s = min(finished_s + HINT_AFTER_S, self.clock())
        filters = {"type": ["container"], "container": [container_id]}
        try:
            if self.engine.traits.history_until_works:
                got = list(client.api.events(since=f"{finished_s - HINT_BEFORE_S:.9f}", until=f"{until_s:.9f}",
                                             filters=filters, decode=True))
            else:
                got = read_span(client, finished_s - HINT_BEFORE_S, until_s, filters, HISTORY_READ_S)
            decoded = (self.engine.decode(ev) for ev in got)
            return [e for e in decoded if e is not None and e.container_id == container_id]
        except Exception as exc:  # noqa: BLE001 - the history is a hint; without it the rules still decide
            log.info("docker events: no history for container %s: %s", container_id[:12], exc)
            return []

    def _inspect(self, client: Any, t: RemediationTarget, unseen: tuple[float, float] | None) -> None:
        """Inspect T's container by name: its holder id and its state through the rules (with history, last-known)."""
        synced_s = self.clock()
        try:
            ctr = client.containers.get(t.container)
        except docker.errors.NotFound:   # a missing container must not stop watching the others
            log.warning("box %s: container %r not found; state removed", t.box, t.container)
            self.holders.pop(t.container or "", None)
            self.states.set(t.box, ContainerState("removed", since_s=None,
                                                  reason=f"no container named {t.container}"), synced_s)
            return
        self.holders[t.container or ""] = ctr.id
        st = (ctr.attrs.get("State") or {})
        if (st.get("Health") or {}).get("Status"):
            self._healthchecked.add(t.box)
        else:
            self._healthchecked.discard(t.box)
        finished = docker_time(st.get("FinishedAt"))
        history: list[EngineEvent] = []
        if st.get("Status") in ("exited", "dead") and finished is not None:
            history = self._history(client, ctr.id, finished)
        state = state_from_inspect(
            ctr.attrs, history=history, cgroup_version=self.cgroup_version, last=self.states.last_known(t.box),
            unseen=unseen, is_ours=lambda e: self.expected.is_expected((t.container, e.container_id), e.time_s))
        self.states.set(t.box, state, synced_s)
        if state.reason and state.state not in ("running", "paused"):
            log.warning("box %s: container %s %s: %s", t.box, t.container, state.state, state.reason)

    def _retarget(self, client: Any) -> None:
        """After set_targets: inspect the boxes that are new, forget the ones that left."""
        self._targets_changed = False
        boxes = {t.box for t in self.targets}
        known = set(self.states.snapshot())
        for box in known - boxes:
            self.states.drop(box)
        names = {t.container for t in self.targets}
        self.holders = {n: i for n, i in self.holders.items() if n in names}
        for t in self.targets:
            if t.box not in known:
                self._inspect(client, t, None)

    def _resync(self, client: Any) -> None:
        """Inspect each configured container once: the holder of its name (identity) and its state (the cache)."""
        try:
            version = str((client.info() or {}).get("CgroupVersion") or "")
            self.cgroup_version = int(version) if version.isdigit() else None
        except Exception as exc:  # noqa: BLE001 - without it 137 stays "OOM or SIGKILL"
            log.info("docker events: cgroup version unknown: %s", exc)
        # An engine stopping without live-restore stops its containers as `docker stop` does, possibly while the
        # stream still delivers: exits from ENGINE_STOP_LEAD_S before the loss on are read again, not kept.
        seen_from_s = self._lost_s - ENGINE_STOP_LEAD_S if self._lost_s is not None else self._unseen_from_s
        unseen = (seen_from_s, self.clock()) if seen_from_s is not None else None
        self.holders = {}
        for t in self.targets:
            self._inspect(client, t, unseen)
        if self._lost_s is not None:
            gap_s = self.clock() - self._lost_s
            log.warning("docker events: reconnected after %.1f s without the stream; %d container states re-read",
                        gap_s, len(self.targets))
            now = self.states.snapshot()
            for t in self.targets:
                st = now.get(t.box)
                why = f" ({st.reason})" if st and st.reason and st.state not in ("running", "paused") else ""
                self._emit(ContainerEventRecord(
                    box=t.box, kind=t.kind, event="resync", action="resync", exit_code=None,
                    detail=f"docker events stream down {gap_s:.1f} s; state re-read: {st.state if st else '?'}{why}",
                    time_s=self.clock(), container_state=st.state if st else None,
                    operator=bool(st and st.operator_stopped)))
        self._lost_s = None
        self._unseen_from_s = None
        self.states.set_engine_down(None)

    def _emit(self, rec: ContainerEventRecord) -> None:
        try:
            self.on_record(rec)
        except Exception:  # a failing sink must not stop the watcher
            log.exception("box %s: container_event sink failed", rec.box)

    def handle(self, client: Any, ev: EngineEvent) -> list[ContainerEventRecord]:
        """Apply one EngineEvent: identity first, then each concerned box's state; the records (emitted too)."""
        with self._lock:
            return self._handle(client, ev)

    def _handle(self, client: Any, ev: EngineEvent) -> list[ContainerEventRecord]:
        before = dict(self.holders)
        self.holders, names = follow_names(self.holders, ev)
        by_name = {t.container: t for t in self.targets}
        out = []
        for name in sorted(names):
            t = by_name.get(name)
            if t is None:
                continue
            rec = record_for(ev, t)
            if rec is None:
                rec = self._rejudge(ev, t) if ev.kind == "cleanup" else None
                if rec is not None:
                    self._emit(rec)
                    out.append(rec)
                continue
            gained = self.holders.get(name) == ev.container_id and before.get(name) != ev.container_id
            if ev.kind == "rename" and gained:
                # Renamed INTO the box's name: that container is the box now, in whatever state it is.
                self._inspect(client, t, None)
                st = self.states.snapshot().get(t.box)
                rec = replace(rec, container_state=st.state if st else None,
                              operator=bool(st and st.operator_stopped))
            else:
                rec = self._observe(rec, ev, t)
            self._emit(rec)
            out.append(rec)
        return out

    def _rejudge(self, ev: EngineEvent, t: RemediationTarget) -> ContainerEventRecord | None:
        """A Podman `cleanup` (not recorded itself): the state after it; when it names the exit's stop request
        (agent.engines.events.cleanup_request), the exit's `die` record again, at the die's time, with the new
        judgement (the container_event point of that series and time is rewritten: one die, judged once more)."""
        ours = self.expected.is_expected((t.container, ev.container_id), ev.time_s)
        before = self.states.snapshot().get(t.box)
        probe = ContainerEventRecord(box=t.box, kind=t.kind, event="cleanup", action=ev.attrs.get("action", "cleanup"),
                                     exit_code=None, detail="", time_s=ev.time_s)
        st = self.states.apply(probe, ours, ev, self.cgroup_version)
        if st is None or before is None or st.reason == before.reason or st.since_s is None:
            return None
        if st.operator_stopped:
            log.warning("box %s: %s: state stopped, not a freeze", t.box, st.reason)
        detail = f"container {t.container or ev.name} die"
        if ev.container_id:
            detail += f" (id {ev.container_id[:12]})"
        return ContainerEventRecord(box=t.box, kind=t.kind, event="die", action="die", exit_code=st.exit_code,
                                    detail=f"{detail}; {st.reason}", time_s=st.since_s, container_state=st.state,
                                    operator=st.operator_stopped)

    def _observe(self, rec: ContainerEventRecord, ev: EngineEvent, t: RemediationTarget) -> ContainerEventRecord:
        """Advance the state cache by REC; the record with the state after it (and whether it was operator intent)."""
        ours = self.expected.is_expected((t.container, ev.container_id), rec.time_s)
        before = self.states.snapshot().get(rec.box)
        st = self.states.apply(rec, ours, ev, self.cgroup_version)
        if st is None:
            return rec
        if st.reason and st != before and st.state not in ("running", "paused", "created"):
            rec = replace(rec, detail=f"{rec.detail}; {st.reason}")
            if st.operator_stopped and not (before and before.operator_stopped):
                log.warning("box %s: %s (%s): state stopped, not a freeze", rec.box, st.reason, rec.detail)
            elif not st.operator_stopped and st.state in ("exited", "dead", "removed"):
                log.warning("box %s: %s", rec.box, st.reason)
        return replace(rec, container_state=st.state, operator=st.operator_stopped)

    def _run(self) -> None:
        seen: set[tuple[Any, ...]] = set()
        last_network: dict[tuple[str, str], float] = {}
        while not self._stop.is_set():
            try:
                client = self.docker_factory()
                self._identify(client)
                # `since` closes the gap of a short disconnect; events of a restarted dockerd are gone anyway
                # (Podman's file/journald event log keeps them: its replay fills the gap).
                since = None
                if self._since_ns is not None:
                    since = f"{self._since_ns // 10**9}.{self._since_ns % 10**9:09d}"  # API takes s.ns
                filters: dict[str, list[str]] = {"type": ["container", "network"]}
                if self.engine.traits.event_actions is not None:
                    filters["event"] = list(self.engine.traits.event_actions)
                stream = client.api.events(since=since, filters=filters, decode=True)
                self._stream = stream
                # The stream is open (the request was made): an inspect now misses nothing that follows.
                self._follow(client, None)
                self._targets_changed = False
                with self._lock:
                    self._resync(client)
                if self._since_ns is None:
                    self._since_ns = int(self.clock() * 1e9)
                self.connected.set()
                self._first_attempt.set()
                log.info("docker events: following %d containers", len(self.targets))
                for raw in stream:
                    key = (raw.get("timeNano"), raw.get("Action"), (raw.get("Actor") or {}).get("ID"))
                    if key in seen:
                        continue  # a `since` replay may repeat the last events
                    if len(seen) > 10_000:
                        seen.clear()
                    seen.add(key)
                    if raw.get("timeNano"):
                        self._since_ns = max(self._since_ns or 0, int(raw["timeNano"]) + 1)
                    ev = self.engine.decode(raw)
                    if ev is None:
                        continue
                    self._follow(client, ev)
                    if self._targets_changed:
                        with self._lock:
                            self._retarget(client)
                    if ev.kind.startswith("network_"):
                        # Engine 20.10 emits a forced disconnect twice, microseconds apart: one event.
                        prev = last_network.get((ev.container_id, ev.kind))
                        last_network[(ev.container_id, ev.kind)] = ev.time_s
                        if prev is not None and ev.time_s - prev < 1.0:
                            continue
                    self.handle(client, ev)
                why = "its event stream ended"
            except Exception as exc:  # noqa: BLE001 - dockerd gone: wait and reconnect
                log.warning("docker events: %s; retrying in %.0f s", exc, self.retry_s)
                why = f"{type(exc).__name__}: {exc}"[:300]
            if self.connected.is_set() or self._lost_s is None:
                self._lost_s = self.clock()
                if not self._stop.is_set():
                    for box in self.states.reopen_exits(self._lost_s - ENGINE_STOP_LEAD_S, self._lost_s):
                        log.warning("box %s: its container exited as the engine's event stream was lost: "
                                    "not taken as an operator stop until the engine says so", box)
            if not self._stop.is_set():
                self.states.set_engine_down(self._lost_s, why)
            self._first_attempt.set()
            self.connected.clear()
            self._stream = None
            if self._stop.wait(self.retry_s):
                break
            self.reconnects += 1

    def _identify(self, client: Any) -> None:
        """Ask which engine answers (its decoder and traits from now on); dockerd's when it cannot be told."""
        try:
            identity = identify_client(client)
        except Exception as exc:  # noqa: BLE001 - /version failing: the events request that follows says why
            log.info("docker events: engine not identified (%s); reading it as dockerd", exc)
            return
        if identity != self.identity:
            log.info("docker events: engine %s", identity)
        self.identity, self.engine = identity, ENGINES[identity.engine]

    def _poll_health(self) -> None:
        """For an engine whose events do not report health changes: read State.Health of the followed running
        containers that have a HEALTHCHECK every health_poll_s; a change is handled as a health_status event."""
        client: Any = None
        while not self._stop.wait(self.health_poll_s):
            if not self.connected.is_set() or self.engine.traits.health_events:
                continue
            try:
                client = client or self.docker_factory()
                self.poll_health_once(client)
            except Exception as exc:  # noqa: BLE001 - engine gone: the stream's loss says so; try again later
                log.info("engine health read failed: %s", exc)
                client = None

    def poll_health_once(self, client: Any) -> list[ContainerEventRecord]:
        """One health read of every followed running container that has a HEALTHCHECK; the records of changes."""
        self.health_polls += 1
        out: list[ContainerEventRecord] = []
        states = self.states.snapshot()
        for t in list(self.targets):
            st = states.get(t.box)
            if (st is None or t.box not in self._healthchecked or st.state not in ("running", "paused")
                    or not t.container):
                continue
            try:
                attrs = client.api.inspect_container(t.container)
            except docker.errors.NotFound:
                continue   # its removal comes as an event
            health = ((attrs.get("State") or {}).get("Health") or {}).get("Status") or None
            if health and health != st.health and attrs.get("Id") == st.container_id:
                ev = EngineEvent("health_status", str(attrs.get("Id")), t.container,
                                 {"action": f"health_status: {health}", "health": health}, self.clock())
                out += self.handle(client, ev)
        return out


def expecting_factory(factory: Callable[[], Any], expected: ExpectedEvents,
                      window_s: float = EXPECT_WINDOW_S) -> Callable[[], Any]:
    """A docker client factory for remediation actions whose clients mark every container they get as expected.

    Until remediations/service.py calls ExpectedEvents.expect itself before each action, this
    bridges it: an action reaches its container only through `client.containers.get(name)`.
    """
    def make() -> Any:
        return _ExpectingClient(factory(), expected, window_s)
    return make


class _ExpectingContainers:
    def __init__(self, inner: Any, expected: ExpectedEvents, window_s: float) -> None:
        self._inner, self._expected, self._window_s = inner, expected, window_s

    def get(self, container_id: str, *args: Any, **kwargs: Any) -> Any:
        self._expected.expect(container_id, self._window_s)
        ctr = self._inner.get(container_id, *args, **kwargs)
        self._expected.expect(getattr(ctr, "id", None), self._window_s)
        return ctr

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _ExpectingClient:
    def __init__(self, inner: Any, expected: ExpectedEvents, window_s: float) -> None:
        self._inner = inner
        self.containers = _ExpectingContainers(inner.containers, expected, window_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

