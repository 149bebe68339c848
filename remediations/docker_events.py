"""Follow Docker's event stream for the configured containers and turn it into container_event records."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import docker.errors

from remediations.model import ContainerEventRecord, RemediationTarget

log = logging.getLogger(__name__)

# Docker action -> our `event` tag value.
CONTAINER_EVENTS = {"die": "die", "oom": "oom", "restart": "restart", "pause": "pause", "unpause": "unpause",
                    "stop": "stop", "start": "start", "kill": "kill"}
NETWORK_EVENTS = {"disconnect": "network_disconnect", "connect": "network_connect"}


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
                                    detail=detail, time_s=time_s)
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
                 clock: Callable[[], float] = time.time) -> None:
        self.targets = [t for t in targets if t.container]
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

    def _ids(self, client: Any) -> dict[str, RemediationTarget]:
        by_id = {}
        for t in self.targets:
            try:
                by_id[client.containers.get(t.container).id] = t
            except docker.errors.NotFound:  # a missing container must not stop watching the others
                log.warning("box %s: container %r not found; its network events need it to exist",
                            t.box, t.container)
        return by_id

    def _run(self) -> None:
        by_name = {t.container: t for t in self.targets}
        seen: set[tuple] = set()
        last_network: dict[tuple[str, str], float] = {}
        while not self._stop.is_set():
            try:
                client = self.docker_factory()
                by_id = self._ids(client)
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
                        try:
                            self.on_record(rec)
                        except Exception:  # noqa: BLE001 - a failing sink must not stop the watcher
                            log.exception("box %s: container_event sink failed", rec.box)
            except Exception as exc:  # noqa: BLE001 - dockerd gone: wait and reconnect
                log.warning("docker events: %s; retrying in %.0f s", exc, self.retry_s)
            self.connected.clear()
            self._stream = None
            if self._stop.wait(self.retry_s):
                break
            self.reconnects += 1
