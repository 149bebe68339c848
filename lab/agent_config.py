"""Render agent TOML (the keys of the config contract) for a lab: a plain string builder, no parsing."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Protocol

from lab.box import LabBox


class Lab(Protocol):
    """What rendering needs of a lab (lab.lab.Lab provides it)."""

    @property
    def run_id(self) -> str: ...
    @property
    def run_dir(self) -> str: ...
    @property
    def monitor_ns(self) -> str: ...
    @property
    def monitor_link(self) -> str: ...
    @property
    def influx_url(self) -> str | None: ...
    @property
    def influx_database(self) -> str: ...
    @property
    def boxes(self) -> Sequence[LabBox]: ...

    def box(self, name: str) -> LabBox: ...

# override name -> (section, key)
OVERRIDES = {
    "interval": ("agent", "interval"),
    "timeout": ("agent", "timeout"),
    "jitter": ("agent", "jitter"),
    "state_dir": ("agent", "state_dir"),
    "interface": ("agent", "interface"),
    "site": ("agent", "site"),
    "fail_cycles": ("freeze", "fail_cycles"),
    "recover_cycles": ("freeze", "recover_cycles"),
    "confirm_interval": ("freeze", "confirm_interval"),
    "url": ("influxdb", "url"),
    "influx_url": ("influxdb", "url"),
    "api": ("influxdb", "api"),
    "database": ("influxdb", "database"),
    "retry_min": ("influxdb", "retry_min"),
    "retry_max": ("influxdb", "retry_max"),
    "write_timeout": ("influxdb", "write_timeout"),
}


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return json.dumps(str(v))  # a TOML basic string for plain text


# What a container box's services are checked with when render(services=True): an http probe of its
# busybox httpd, a tls probe of its TLS service (a self-signed certificate: not verified, its dates are),
# the CVMFS stand-in's repository and the proxy file (lab.set_proxy writes it).
HTTP_PORT = 8084
TLS_WARN_DAYS = 14
PROXY_WARN_DAYS = 7
CVMFS_PATH = "/cvmfs/alice.cern.ch"
PROXY_PATH = "/tmp/x509up_u0"   # lab.lab.PROXY_PATH (not imported: lab.lab imports this module)


def service_tables(b: LabBox, proxy: bool = True) -> list[tuple[str, dict]]:
    """The [[box.probe]] and [[box.check]] tables of a container box: (table name, keys)."""
    out: list[tuple[str, dict]] = []
    if HTTP_PORT in b.tcp_ports:
        out.append(("box.probe", {"kind": "http", "port": HTTP_PORT, "path": "/", "status": [200]}))
    if b.tls_port:
        out.append(("box.probe", {"kind": "tls", "port": b.tls_port, "verify": False, "warn_days": TLS_WARN_DAYS}))
    out.append(("box.check", {"kind": "path", "path": CVMFS_PATH}))
    if proxy:
        out.append(("box.check", {"kind": "x509", "path": PROXY_PATH, "warn_days": PROXY_WARN_DAYS}))
    return out


def render(lab: Lab, boxes: list[str] | tuple[str, ...] | None = None, extra: str = "",
           box_extra: dict[str, dict] | None = None, services: bool = False, proxy: bool = True,
           **overrides) -> str:
    """TOML text: [agent], [freeze], [influxdb] and one [[box]] per lab box (or the named `boxes`).

    box_extra maps a box name to more keys for its [[box]] table (e.g. remediate, command).
    services: container boxes also get the service probes and in-container checks of
    service_tables() (proxy: with the x509 check of the proxy file; write it first with set_proxy)."""
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise TypeError(f"agent_config: unknown override(s) {', '.join(unknown)}; valid: "
                        f"{', '.join(sorted(OVERRIDES))}, boxes, extra")
    sections: dict[str, dict] = {
        "agent": {"interval": 10, "timeout": 1.0, "jitter": 0.5,
                  "state_dir": os.path.join(lab.run_dir, "agent"),
                  "interface": lab.monitor_link, "site": "lab"},
        "freeze": {"fail_cycles": 3, "recover_cycles": 2},
        "influxdb": {"url": lab.influx_url or "http://127.0.0.1:8086", "api": "v1",
                     "database": lab.influx_database},
    }
    for name, value in overrides.items():
        section, key = OVERRIDES[name]
        if value is None:
            sections[section].pop(key, None)
        else:
            sections[section][key] = value
    lines = [f"# vobox-agent config for lab {lab.run_id}; run the agent inside namespace {lab.monitor_ns}"]
    for section, keys in sections.items():
        lines.append(f"\n[{section}]")
        lines.extend(f"{k} = {_value(v)}" for k, v in keys.items())
    chosen = lab.boxes if boxes is None else tuple(lab.box(n) for n in boxes)
    for name in box_extra or {}:
        lab.box(name)  # an unknown box name is an error listing the valid ones
    for b in chosen:
        lines.append("\n[[box]]")
        lines.append(f"name = {_value(b.name)}")
        lines.append(f"kind = {_value(b.kind)}")
        lines.append(f"ipv4 = {_value(b.ipv4)}")
        lines.append(f"ipv6 = {_value(b.ipv6)}")
        lines.append(f"tcp_ports = {_value(list(b.tcp_ports))}")
        if b.kind == "container":
            lines.append(f"container = {_value(b.container)}")
            lines.append(f"network = {_value(b.network)}")
        for key, value in (box_extra or {}).get(b.name, {}).items():
            lines.append(f"{key} = {_value(value)}")
        if services and b.kind == "container":
            for table, keys in service_tables(b, proxy):
                lines.append(f"[[{table}]]")
                lines.extend(f"{k} = {_value(v)}" for k, v in keys.items())
    if extra:
        lines.append("\n" + extra.strip())
    return "\n".join(lines) + "\n"
