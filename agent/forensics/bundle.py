"""An evidence bundle on disk: the box it is about, where it lives, its files, reading and writing its JSON.

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
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent import atomic
from agent.forensics import retention

SUMMARY_JSON = "summary.json"
SUMMARY_TXT = "summary.txt"
ONSET_PCAP = "onset.pcap"
RECOVERY_PCAP = "recovery.pcap"


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
    def from_config(cls, box: Any, site: str | None = None) -> BoxRef:
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
    return datetime.fromtimestamp(time_s, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_json(path: str, data: Any) -> None:
    """Write DATA as indented JSON to PATH atomically (temp file, then rename), 0600."""
    tmp = path + ".tmp"
    with atomic.open_private_file(tmp) as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


def read_summary(path: str) -> dict[str, Any]:
    """summary.json of the bundle at path (a bundle directory or the summary file itself)."""
    file = path if path.endswith(".json") else os.path.join(path, SUMMARY_JSON)
    with open(file, encoding="utf-8") as f:
        return json.load(f)
