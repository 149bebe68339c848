"""Box discovery from the container engine (dockerd or Podman), live: the inspected candidates, the box set, its version.

Rides the engine's events stream the container state cache already follows
(agent.engines.watcher.DockerEventWatcher's `follow` hook, with engine-neutral EngineEvents, so
Podman's network events, which name the container, read as dockerd's): at every (re)connect it lists
the candidate containers (the label, and each of [discovery] networks) and inspects them; then
a container start, destroy, network connect or disconnect re-inspects that one container. The
pure part (agent.core.discovery) turns the inspects into boxes. A box leaves the set only when
its container is destroyed: a container disconnected from its network or stopped keeps its box
(that is a freeze or state `stopped`, which the agent must see, not forget).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import docker.errors

from agent.core.config import BoxConfig, Config, DiscoveryConfig
from agent.core.discovery import Found, discover, label_matches, merged, qualifies
from agent.engines.events import EngineEvent

log = logging.getLogger(__name__)


def candidate_ids(client: Any, disc: DiscoveryConfig) -> set[str]:
    """Ids of the containers (running or not) that have the label or sit on one of the networks (Engine filters)."""
    ids = {c["Id"] for c in client.api.containers(all=True, filters={"label": [disc.label]})}
    for net in disc.networks:
        ids |= {c["Id"] for c in client.api.containers(all=True, filters={"network": [net]})}
    return ids


def inspect_candidates(client: Any, disc: DiscoveryConfig) -> dict[str, Mapping[str, Any]]:
    """container id -> its `docker inspect` dict, for every candidate (ones removed meanwhile are left out)."""
    out = {}
    for cid in candidate_ids(client, disc):
        try:
            out[cid] = client.api.inspect_container(cid)
        except docker.errors.NotFound:
            continue
    return out


class DockerDiscovery:
    """The live box set: the config's [[box]] entries plus the containers discovery found; thread-safe.

    on_change(added, removed): the Found boxes that joined and left (a changed box is in both).
    """

    def __init__(self, config: Config,
                 on_change: Callable[[Sequence[Found], Sequence[Found]], None] | None = None) -> None:
        self.config = config
        self.on_change = on_change
        self.set_targets: Callable[[list], None] | None = None   # DockerEventWatcher.set_targets
        self.synced = threading.Event()   # set after the first full sync
        self._attrs: dict[str, Mapping[str, Any]] = {}
        self._found: dict[str, Found] = {}   # box name -> Found
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._version = 0
        self._boxes: tuple[BoxConfig, ...] = tuple(config.boxes)

    def boxes(self) -> tuple[int, tuple[BoxConfig, ...]]:
        """(version, the box set now); the version changes whenever the set does."""
        with self._lock:
            return self._version, self._boxes

    def follow(self, client: Any, ev: EngineEvent | None) -> None:
        """DockerEventWatcher's hook: a full sync at (re)connect (ev None), else one decoded event."""
        disc = self.config.discovery
        if ev is None:
            self._attrs = dict(inspect_candidates(client, disc))
            self._recompute()
            self.synced.set()
            return
        cid = ev.container_id
        if ev.kind == "destroy":
            if self._attrs.pop(cid, None) is not None:
                self._recompute()
            return
        if ev.kind == "start":
            if cid not in self._attrs and not disc.networks and not label_matches(ev.attributes, disc.label):
                return   # unlabelled containers matter only with networks
        elif ev.kind in ("network_connect", "network_disconnect"):
            if ev.kind == "network_disconnect" and cid in self._attrs and self._is_box(cid):
                return   # disconnected from its network: a freeze of that box, which keeps its addresses
        else:
            return   # only a start or a network change can change addresses
        try:
            fresh = client.api.inspect_container(cid)
        except docker.errors.NotFound:
            return   # its destroy event follows
        old = self._attrs.get(cid)
        if old is None and not qualifies(fresh, disc):
            return   # outside the filter: never a box, not kept
        self._attrs[cid] = fresh
        if old is not None and self._is_box(cid) and not self._qualified_box(cid):
            self._attrs[cid] = old   # connected elsewhere but not back: keep the box and its addresses
        self._recompute()

    def _is_box(self, cid: str) -> bool:
        return any(f.container_id == cid for f in self._found.values())

    def _qualified_box(self, cid: str) -> bool:
        return any(f.container_id == cid for f in discover([self._attrs[cid]], self.config).found)

    def _recompute(self) -> None:
        result = discover(self._attrs.values(), self.config)
        for w in result.warnings:
            if w not in self._warned:
                log.warning("discovery: %s", w)
        self._warned = set(result.warnings)
        new = {f.box.name: f for f in result.found}
        added = [f for n, f in new.items() if n not in self._found or self._found[n].box != f.box]
        removed = [f for n, f in self._found.items() if n not in new or new[n].box != f.box]
        if not added and not removed and self._version:
            return
        for f in removed:
            if f.box.name not in new:
                log.warning("discovery: box %s left (container %s removed)", f.box.name, f.box.container)
        for f in added:
            log.info("discovery: box %s is container %s at %s on network %s (mac %s)", f.box.name,
                     f.box.container, " ".join(f.box.addresses()), f.box.network, f.mac or "?")
        self._found = new
        boxes = merged(self.config, list(new.values()))
        with self._lock:
            self._version += 1
            self._boxes = boxes
        if self.set_targets is not None:
            self.set_targets([b.remediation_target() for b in boxes])
        if self.on_change is not None and (added or removed):
            self.on_change(added, removed)


def discover_now(config: Config, client: Any) -> Any:
    """One discovery pass against the engine (agent.core.discovery.Discovery), as `vobox-agent discover` prints it."""
    return discover(inspect_candidates(client, config.discovery).values(), config)
