"""Follow Docker's event stream for the configured containers: container_event records and a container state cache.

The cache (ContainerStates) knows every configured container's state (running, paused,
restarting, exited, dead, removed), its Docker health status, whether it was OOM-killed and
whether someone else stopped it, every cycle without an inspect per box per cycle: one inspect
per container when the stream (re)connects, then only the events. ExpectedEvents is how the
remediation service marks the stops/restarts it causes itself, so they are not operator intent.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import docker.errors

from remediations.model import ContainerEventRecord, RemediationTarget

log = logging.getLogger(__name__)

# Docker action -> our `event` tag value.
CONTAINER_EVENTS = {"die": "die", "oom": "oom", "restart": "restart", "pause": "pause", "unpause": "unpause",
                    "stop": "stop", "start": "start", "kill": "kill", "destroy": "destroy",
                    "health_status": "health_status"}
NETWORK_EVENTS = {"disconnect": "network_disconnect", "connect": "network_connect"}
# Signals of `docker kill`/`docker stop` that end a container (a kill -HUP to reload a service does not).
STOP_SIGNALS = frozenset({"9", "15", "2", "3", "SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT", "KILL", "TERM", "INT",
                          "QUIT"})
# Container states (Docker's State.Status, plus "removed": the container does not exist).
CONTAINER_STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead", "removed")
# Exit codes of a container stopped from outside (SIGTERM, SIGKILL after the stop timeout).
OPERATOR_EXIT_CODES = frozenset({137, 143})
EXPECT_WINDOW_S = 120.0


@dataclass(frozen=True, slots=True)
class ContainerState:
    """What Docker says of one configured container (times: epoch s).

    state: one of CONTAINER_STATES; health: healthy|unhealthy|starting, None without a
    HEALTHCHECK; since_s: when it entered that state (None: unknown); oom_killed: its last exit
    was an OOM kill; operator_stopped: stopped, killed or removed by someone else (not by our
    remediation, not a crash); exit_code: of the last exit.
    """

    state: str
    health: str | None = None
    since_s: float | None = None
    oom_killed: bool = False
    operator_stopped: bool = False
    exit_code: int | None = None


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


def state_from_inspect(attrs: Mapping[str, Any]) -> ContainerState:
    """The ContainerState from `docker inspect` attributes (container.attrs).

    An exited container with exit code 137/143 that was not OOM-killed counts as stopped by
    someone (docker stop/kill); the engine does not record who, so this is the best guess on resync.
    """
    st = attrs.get("State") or {}
    status = str(st.get("Status") or "dead")
    health = (st.get("Health") or {}).get("Status") or None
    started, finished = _docker_time(st.get("StartedAt")), _docker_time(st.get("FinishedAt"))
    exit_code = st.get("ExitCode")
    oom = bool(st.get("OOMKilled"))
    since = started if status in ("running", "paused", "restarting") else finished
    operator = status in ("exited", "created") and not oom and exit_code in OPERATOR_EXIT_CODES
    return ContainerState(status, health if status in ("running", "paused") else None, since, oom, operator,
                          int(exit_code) if exit_code is not None and status in ("exited", "dead") else None)


def _docker_time(text: Any) -> float | None:
    """Epoch s of Docker's RFC 3339 time with nanoseconds (None for the zero time or garbage)."""
    if not text or str(text).startswith("0001-"):
        return None
    main, _, frac = str(text).rstrip("Z").partition(".")
    try:
        base = datetime.fromisoformat(main + "+00:00").timestamp()
    except ValueError:
        return None
    return base + (float("0." + frac[:9]) if frac[:9].isdigit() else 0.0)


def next_state(old: ContainerState | None, event: str, action: str, time_s: float, exit_code: int | None,
               ours: bool, signal: str | None = None) -> ContainerState:
    """The state after one container event (event: our tag, action: Docker's raw action); pure.

    ours: the event falls in a window remediation opened (ExpectedEvents), so a stop is not
    operator intent. A crash or an OOM kill (a die with no stop/kill before it) is not intent either.
    """
    cur = old or ContainerState("running")
    if event == "health_status":
        health = action.split(":", 1)[1].strip() if ":" in action else ""
        return replace(cur, health=health or None)
    if event in ("start", "restart", "unpause"):
        fresh = event != "unpause"
        return ContainerState("running", None if fresh else cur.health, time_s if fresh else time_s,
                              False if fresh else cur.oom_killed, False, None)
    if event == "pause":
        return replace(cur, state="paused", since_s=time_s)
    if event == "oom":
        return replace(cur, oom_killed=True)
    stopping = event in ("stop", "destroy") or (event == "kill" and (signal or "9") in STOP_SIGNALS)
    operator = cur.operator_stopped or (stopping and not ours)
    if event == "die":
        return ContainerState("exited", None, time_s, cur.oom_killed, operator and not cur.oom_killed, exit_code)
    if event == "destroy":
        return ContainerState("removed", None, time_s, cur.oom_killed, operator, cur.exit_code)
    if stopping:
        return replace(cur, operator_stopped=operator)
    return cur


class ContainerStates:
    """The state cache: box -> ContainerState, kept from events and resyncs; thread-safe; call it for a snapshot."""

    def __init__(self) -> None:
        self._states: dict[str, ContainerState] = {}
        self._synced: dict[str, float] = {}
        self._lock = threading.Lock()

    def snapshot(self) -> dict[str, ContainerState]:
        """box -> its container's state now (boxes never synced are missing)."""
        with self._lock:
            return dict(self._states)

    __call__ = snapshot   # the pipeline's `container_states()` callable

    def drop(self, box: str) -> None:
        """Forget BOX (it left the box set)."""
        with self._lock:
            self._states.pop(box, None)
            self._synced.pop(box, None)

    def set(self, box: str, state: ContainerState, synced_s: float) -> None:
        """Replace one box's state (a resync whose inspect ran at synced_s; older events are then ignored)."""
        with self._lock:
            self._states[box] = state
            self._synced[box] = synced_s

    def apply(self, rec: ContainerEventRecord, ours: bool) -> ContainerState | None:
        """Advance the box's state by one container_event record; None for events that are not container states."""
        if rec.event.startswith("network_") or rec.event == "resync":
            return None
        with self._lock:
            if rec.time_s < self._synced.get(rec.box, float("-inf")):
                return self._states.get(rec.box)   # older than a resync's inspect, which already includes it
            new = next_state(self._states.get(rec.box), rec.event, rec.action, rec.time_s, rec.exit_code, ours,
                             rec.signal)
            self._states[rec.box] = new
            return new


def record_from_event(ev: dict, by_name: dict[str, RemediationTarget],
                      by_id: dict[str, RemediationTarget]) -> ContainerEventRecord | None:
    """The record for one decoded Docker event, or None when it is not about a configured container."""
    typ, action = ev.get("Type"), str(ev.get("Action") or ev.get("status") or "")
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    time_s = (ev.get("timeNano") or 0) / 1e9 or float(ev.get("time") or 0)
    if typ == "container":
        base = action.split(":", 1)[0]
        event = CONTAINER_EVENTS.get(base)
        target = by_name.get(attrs.get("name", "")) or by_id.get(actor.get("ID", ""))
        if event is None or target is None:
            return None
        exit_code = attrs.get("exitCode")
        detail = f"container {attrs.get('name', actor.get('ID', '')[:12])} {action}"
        if attrs.get("signal"):
            detail += f" signal {attrs['signal']}"
        return ContainerEventRecord(box=target.box, kind=target.kind, event=event, action=action,
                                    exit_code=int(exit_code) if exit_code not in (None, "") else None,
                                    detail=detail, time_s=time_s, signal=attrs.get("signal") or None)
    if typ == "network":
        event = NETWORK_EVENTS.get(action)
        target = by_id.get(attrs.get("container", ""))
        if event is None or target is None:
            return None
        net = attrs.get("name", "")
        if target.network and net != target.network:
            return None  # only the box's own macvlan network matters
        return ContainerEventRecord(box=target.box, kind=target.kind, event=event, action=f"network {action}",
                                    exit_code=None, detail=f"container {target.container} {action} network {net}",
                                    time_s=time_s)
    return None


class DockerEventWatcher:
    """A thread following `docker events` for configured containers; reconnects when dockerd comes back."""

    def __init__(self, targets: Iterable[RemediationTarget], docker_factory: Callable[[], Any],
                 on_record: Callable[[ContainerEventRecord], None], retry_s: float = 2.0,
                 clock: Callable[[], float] = time.time, states: ContainerStates | None = None,
                 expected: ExpectedEvents | None = None,
                 follow: Callable[[Any, dict | None], None] | None = None) -> None:
        self.targets = [t for t in targets if t.container]
        # follow(client, None) at every (re)connect before the resync, follow(client, event) for every event
        # (any container's): the box discovery (agent.discovery) rides this stream instead of opening its own.
        self.follow = follow
        self._targets_changed = False
        self.states = states if states is not None else ContainerStates()
        self.expected = expected if expected is not None else ExpectedEvents(clock)
        self._lost_s: float | None = None   # when the stream was lost (None: never connected or connected)
        self.docker_factory = docker_factory
        self.on_record = on_record
        self.retry_s = retry_s
        self.clock = clock
        self.connected = threading.Event()
        self.reconnects = 0
        self._stop = threading.Event()
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self._since_ns: int | None = None

    def start(self) -> None:
        """Start following events (returns at once)."""
        self._thread = threading.Thread(target=self._run, name="docker-events", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop following and join the thread."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - closing a dead stream may fail; we are stopping anyway
                pass
        if self._thread:
            self._thread.join(timeout_s)

    def set_targets(self, targets: Iterable[RemediationTarget]) -> None:
        """Replace the followed boxes (discovery); new ones are inspected before the next event is handled."""
        self.targets = [t for t in targets if t.container]
        self._targets_changed = True

    def _follow(self, client: Any, ev: dict | None) -> None:
        if self.follow is None:
            return
        try:
            self.follow(client, ev)
        except Exception:  # noqa: BLE001 - discovery failing must not stop following the known containers
            log.exception("docker events: discovery failed on %s", (ev or {}).get("Action", "connect"))

    def _retarget(self, client: Any, by_id: dict[str, RemediationTarget]) -> dict[str, RemediationTarget]:
        """After set_targets: inspect the boxes that are new, forget the ones that left; the new by_id."""
        self._targets_changed = False
        known = {t.box for t in by_id.values()}
        boxes = {t.box for t in self.targets}
        by_id = {i: t for i, t in by_id.items() if t.box in boxes}
        for box in known - boxes:
            self.states.drop(box)
        for t in self.targets:
            if t.box in known:
                continue
            synced_s = self.clock()
            try:
                ctr = client.containers.get(t.container)
            except docker.errors.NotFound:
                self.states.set(t.box, ContainerState("removed", since_s=None), synced_s)
                continue
            by_id[ctr.id] = t
            self.states.set(t.box, state_from_inspect(ctr.attrs), synced_s)
        return by_id

    def _resync(self, client: Any) -> dict[str, RemediationTarget]:
        """Inspect each configured container once: its id (for network events) and its state (the cache)."""
        by_id = {}
        for t in self.targets:
            synced_s = self.clock()
            try:
                ctr = client.containers.get(t.container)
            except docker.errors.NotFound:  # a missing container must not stop watching the others
                log.warning("box %s: container %r not found; state removed", t.box, t.container)
                self.states.set(t.box, ContainerState("removed", since_s=None), synced_s)
                continue
            by_id[ctr.id] = t
            self.states.set(t.box, state_from_inspect(ctr.attrs), synced_s)
        if self._lost_s is not None:
            gap_s = self.clock() - self._lost_s
            log.warning("docker events: reconnected after %.1f s without the stream; %d container states re-read",
                        gap_s, len(self.targets))
            now = self.states.snapshot()
            for t in self.targets:
                st = now.get(t.box)
                self._emit(ContainerEventRecord(
                    box=t.box, kind=t.kind, event="resync", action="resync", exit_code=None,
                    detail=f"docker events stream down {gap_s:.1f} s; state re-read: {st.state if st else '?'}",
                    time_s=self.clock(), container_state=st.state if st else None,
                    operator=bool(st and st.operator_stopped)))
        self._lost_s = None
        return by_id

    def _emit(self, rec: ContainerEventRecord) -> None:
        try:
            self.on_record(rec)
        except Exception:  # noqa: BLE001 - a failing sink must not stop the watcher
            log.exception("box %s: container_event sink failed", rec.box)

    def _observe(self, rec: ContainerEventRecord, container_id: str | None) -> ContainerEventRecord:
        """Advance the state cache by REC; the record with the state after it (and whether it was operator intent)."""
        target = next((t for t in self.targets if t.box == rec.box), None)
        ours = self.expected.is_expected((target.container if target else None, container_id), rec.time_s)
        before = self.states.snapshot().get(rec.box)
        st = self.states.apply(rec, ours)
        if st is None:
            return rec
        if st.operator_stopped and not (before and before.operator_stopped):
            log.warning("box %s: container %s by someone else (%s): state stopped, not a freeze", rec.box,
                        rec.event, rec.detail)
        return replace(rec, container_state=st.state, operator=st.operator_stopped)

    def _run(self) -> None:
        seen: set[tuple] = set()
        last_network: dict[tuple[str, str], float] = {}
        while not self._stop.is_set():
            try:
                client = self.docker_factory()
                # `since` closes the gap of a short disconnect; events of a restarted dockerd are gone anyway.
                since = None
                if self._since_ns is not None:
                    since = f"{self._since_ns // 10**9}.{self._since_ns % 10**9:09d}"  # API takes s.ns
                stream = client.api.events(
                    since=since,
                    filters={"type": ["container", "network"],
                             "event": sorted(set(CONTAINER_EVENTS) | set(NETWORK_EVENTS))},
                    decode=True)
                self._stream = stream
                # The stream is open (the request was made): an inspect now misses nothing that follows.
                self._follow(client, None)
                self._targets_changed = False
                by_id = self._resync(client)
                by_name = {t.container: t for t in self.targets}
                if self._since_ns is None:
                    self._since_ns = int(self.clock() * 1e9)
                self.connected.set()
                log.info("docker events: following %d containers", len(self.targets))
                for ev in stream:
                    key = (ev.get("timeNano"), ev.get("Action"), (ev.get("Actor") or {}).get("ID"))
                    if key in seen:
                        continue  # a `since` replay may repeat the last events
                    if len(seen) > 10_000:
                        seen.clear()
                    seen.add(key)
                    self._follow(client, ev)
                    if self._targets_changed:
                        by_id = self._retarget(client, by_id)
                        by_name = {t.container: t for t in self.targets}
                    if ev.get("Type") == "container" and ev.get("Action") == "start":
                        name = ((ev.get("Actor") or {}).get("Attributes") or {}).get("name", "")
                        if name in by_name:
                            by_id[ev["Actor"]["ID"]] = by_name[name]  # a recreated container has a new id
                    rec = record_from_event(ev, by_name, by_id)
                    if ev.get("timeNano"):
                        self._since_ns = max(self._since_ns or 0, int(ev["timeNano"]) + 1)
                    if rec is not None and rec.event.startswith("network_"):
                        # Engine 20.10 emits a forced disconnect twice, microseconds apart: one record.
                        prev = last_network.get((rec.box, rec.event))
                        last_network[(rec.box, rec.event)] = rec.time_s
                        if prev is not None and rec.time_s - prev < 1.0:
                            continue
                    if rec is not None:
                        self._emit(self._observe(rec, (ev.get("Actor") or {}).get("ID")))
            except Exception as exc:  # noqa: BLE001 - dockerd gone: wait and reconnect
                log.warning("docker events: %s; retrying in %.0f s", exc, self.retry_s)
            if self.connected.is_set() or self._lost_s is None:
                self._lost_s = self.clock()
            self.connected.clear()
            self._stream = None
            if self._stop.wait(self.retry_s):
                break
            self.reconnects += 1


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
