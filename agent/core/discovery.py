"""Container boxes from the Docker engine: inspected containers + [discovery] -> [[box]] tables; pure.

A container qualifies when it carries the `[discovery] label` (default `vobox.monitor=true`),
or, when `[discovery] networks` is set, when it is connected to one of those networks: label
OR network. Nothing else ever becomes a box. Its box is a [[box]] table as a config file would
hold it (name: the container name; ipv4, ipv6, network from NetworkSettings.Networks; ports,
probes, ladder from [discovery] unless its `vobox.*` labels say otherwise), validated by the
config's own rules (agent.core.config.box_from_table), so what `vobox-agent discover` prints
passes check-config. Only the labels the agent defines (LABELS, and the [discovery] label) are
read, strictly: a bad one skips that container with a warning naming it and the label. Other
`vobox.*` labels (an image's own metadata, which a container inherits and cannot remove) are
reported once per container as ignored, never a reason to skip it. A container on several
networks is a box on one picked from its own state, so the same config and engine state give
the same boxes live and at start, whatever networks are added later.
"""
from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.core.config import BoxConfig, Config, ConfigError, DiscoveryConfig, box_from_table, box_value

LABEL_PREFIX = "vobox."


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _ports(text: str) -> list[int]:
    out = []
    for p in _csv(text):
        if not (p.isascii() and p.isdigit()):   # str.isdigit() takes full-width and other scripts' digits
            raise ValueError(f"expected comma-separated port numbers, got {p!r}")
        out.append(int(p))
    return out


def _bool(text: str) -> bool:
    if text.strip().lower() not in ("true", "false"):
        raise ValueError(f"expected true or false, got {text!r}")
    return text.strip().lower() == "true"


# Label (after "vobox.") -> ([[box]] key it sets, its text -> TOML value, meaning). "network" picks the network.
LABELS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "ports": ("tcp_ports", _ports, "TCP ports, comma-separated (e.g. 1093,8443); empty: none"),
    "ladder": ("remediate", _csv, "remediation ladder, comma-separated (e.g. reconnect_network,restart_container)"),
    "segment": ("segment", str, "correlation segment"),
    "restart_stopped": ("restart_stopped", _bool, "true: a container stopped by someone else is a failure"),
    "dry_run": ("dry_run", _bool, "true: record remediation of this box, do nothing"),
    "network": ("network", str, "the Docker network whose addresses are probed, when it is on several"),
}


@dataclass(frozen=True, slots=True)
class Found:
    """One discovered container: its box table (TOML-ready), the parsed box, its container id and MAC."""

    table: dict[str, Any]
    box: BoxConfig
    container_id: str
    mac: str | None


@dataclass(frozen=True, slots=True)
class Discovery:
    """What one discovery pass found: boxes, and warnings naming the container: one per container skipped
    (ending "not monitored"), and notes on boxes found (labels ignored, a network picked)."""

    found: tuple[Found, ...]
    warnings: tuple[str, ...]
    overridden: tuple[str, ...] = ()   # containers a [[box]] of the config already covers


def label_matches(labels: Mapping[str, str], label: str) -> bool:
    """True when LABELS has LABEL ("key=value": that value; "key": any value)."""
    key, eq, value = label.partition("=")
    return key in labels and (not eq or labels[key] == value)


def container_name(attrs: Mapping[str, Any]) -> str:
    """The container's name without Docker's leading slash."""
    return str(attrs.get("Name") or "").lstrip("/")


def networks_of(attrs: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """network name -> its NetworkSettings.Networks entry."""
    return dict(((attrs.get("NetworkSettings") or {}).get("Networks") or {}).items())


def qualifies(attrs: Mapping[str, Any], disc: DiscoveryConfig) -> bool:
    """The filter: labelled, or (when [discovery] networks is set) on one of those networks."""
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    return label_matches(labels, disc.label) or bool(set(disc.networks) & set(networks_of(attrs)))


def _addresses(net: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The endpoint's IPv4 and global IPv6; a stopped container's static ones (IPAMConfig) when it has none now."""
    ipam = net.get("IPAMConfig") or {}
    return (net.get("IPAddress") or ipam.get("IPv4Address") or None,
            net.get("GlobalIPv6Address") or ipam.get("IPv6Address") or None)


def box_table(attrs: Mapping[str, Any], disc: DiscoveryConfig, notes: list[str] | None = None) -> dict[str, Any]:
    """The [[box]] table of one qualifying container; ValueError naming the label or what is missing.

    NOTES (when given) gets what the table leaves out or picks: `vobox.*` labels that are not
    the agent's (ignored), the network picked among several.
    """
    notes = notes if notes is not None else []
    name = container_name(attrs)
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    table: dict[str, Any] = {"name": name, "kind": "container"}
    if disc.tcp_ports:
        table["tcp_ports"] = list(disc.tcp_ports)
    if disc.remediate:
        table["remediate"] = list(disc.remediate)
    if disc.restart_stopped:
        table["restart_stopped"] = True
    ignored = []
    for label in sorted(labels):
        if not label.startswith(LABEL_PREFIX) or label == disc.label.partition("=")[0]:
            continue
        what = label[len(LABEL_PREFIX):]
        if what not in LABELS:
            hint = difflib.get_close_matches(what, list(LABELS), n=1, cutoff=0.8)
            if hint:   # one letter off one of ours: a typo that would silently lose a setting
                raise ValueError(f"label {label}: unknown (did you mean {LABEL_PREFIX}{hint[0]}? valid: "
                                 f"{', '.join(LABEL_PREFIX + k for k in LABELS)})")
            ignored.append(label)
            continue
        key, parse, _ = LABELS[what]
        try:
            value = parse(labels[label])
            box_value(key, value)
        except ValueError as exc:
            raise ValueError(f"label {label}={labels[label]!r}: {exc}") from None
        table[key] = value
        if key in ("tcp_ports", "remediate") and not value:
            del table[key]
    if ignored:
        notes.append(f"labels {', '.join(ignored)} ignored (not the agent's: it reads "
                     f"{', '.join(LABEL_PREFIX + k for k in LABELS)})")
    nets = networks_of(attrs)
    chosen = table.pop("network", None)
    if chosen is None:
        usable = [n for n in disc.networks if n in nets] or sorted(n for n, v in nets.items() if any(_addresses(v)))
        if not usable:
            raise ValueError(f"no address on any network (networks: {', '.join(sorted(nets)) or 'none'})")
        if len(usable) > 1 and not set(disc.networks) & set(nets):
            chosen, why = pick_network(attrs, usable)
            notes.append(f"on several networks ({', '.join(usable)}): probing {chosen} ({why}); say which with "
                         f"label {LABEL_PREFIX}network")
        else:
            chosen = usable[0]
    elif chosen not in nets:
        raise ValueError(f"label {LABEL_PREFIX}network={chosen!r}: not connected to it "
                         f"(networks: {', '.join(sorted(nets)) or 'none'})")
    ipv4, ipv6 = _addresses(nets[chosen])
    if not ipv4 and not ipv6:
        raise ValueError(f"no address on network {chosen}")
    table.update({"container": name, "network": chosen})
    if ipv4:
        table["ipv4"] = ipv4
    if ipv6:
        table["ipv6"] = ipv6
    if disc.probes:
        table["probe"] = [dict(p) for p in disc.probes]
    order = ["name", "kind", "ipv4", "ipv6", "tcp_ports", "container", "network"]
    return {k: table[k] for k in order if k in table} | {k: v for k, v in table.items() if k not in order}


def pick_network(attrs: Mapping[str, Any], usable: Sequence[str]) -> tuple[str, str]:
    """(network, why) among USABLE (sorted) when nothing names one: the network the container was created on
    (HostConfig.NetworkMode; `docker network connect` later does not change it), else the first by name."""
    mode = str((attrs.get("HostConfig") or {}).get("NetworkMode") or "")
    if mode in usable:
        return mode, "the network it was created on"
    return usable[0], "the first by name"


def discover(inspected: Iterable[Mapping[str, Any]], config: Config) -> Discovery:
    """Boxes of the qualifying containers among INSPECTED (`docker inspect` dicts); [[box]] entries override.

    A container whose name is a configured box's name or container is left to the config
    (`overridden`); one whose address a configured or earlier box already has is skipped
    with a warning, as is one whose labels are bad.
    """
    disc = config.discovery
    taken_names = {b.name for b in config.boxes} | {b.container.lstrip("/") for b in config.boxes if b.container}
    taken_addrs = {a: f"box {b.name}" for b in config.boxes for a in b.addresses()}
    found: list[Found] = []
    warnings: list[str] = []
    overridden: list[str] = []
    for attrs in sorted(inspected, key=container_name):
        name = container_name(attrs)
        if not qualifies(attrs, disc):
            continue
        if name in taken_names:
            overridden.append(name)
            continue
        notes: list[str] = []
        try:
            table = box_table(attrs, disc, notes)
            box = box_from_table(table, config, f"container {name}")
        except ValueError as exc:
            warnings.append(f"container {name}: {exc}; not monitored")
            continue
        except ConfigError as exc:
            warnings.append(f"{'; '.join(exc.errors)}; not monitored")
            continue
        clash = next((a for a in box.addresses() if a in taken_addrs), None)
        if clash:
            warnings.append(f"container {name}: address {clash} is already {taken_addrs[clash]}; not monitored")
            continue
        warnings.extend(f"container {name}: {n}" for n in notes)
        taken_names.add(name)
        taken_addrs.update({a: f"container {name}" for a in box.addresses()})
        mac = (networks_of(attrs).get(box.network or "") or {}).get("MacAddress") or None
        found.append(Found(table, box, str(attrs.get("Id") or ""), mac))
    return Discovery(tuple(found), tuple(warnings), tuple(overridden))


def merged(config: Config, found: Sequence[Found]) -> tuple[BoxConfig, ...]:
    """The box set: the config's [[box]] entries, then the discovered boxes."""
    return tuple(config.boxes) + tuple(f.box for f in found)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))   # a JSON string is a TOML basic string (same escapes)


def to_toml(found: Sequence[Found]) -> str:
    """The [[box]] tables of FOUND as TOML text (a comment with each container's MAC and id)."""
    out: list[str] = []
    for f in found:
        out.append(f"# container {f.box.container} id {f.container_id[:12]} mac {f.mac or '?'}")
        out.append("[[box]]")
        out.extend(f"{k} = {_toml_value(v)}" for k, v in f.table.items() if k != "probe")
        for p in f.table.get("probe", ()):
            out.append("[[box.probe]]")
            out.extend(f"{k} = {_toml_value(v)}" for k, v in p.items())
        out.append("")
    return "\n".join(out)
