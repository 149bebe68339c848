"""What `run` would trip over in a config that parsed: every box's targets, points and command templates.

Kept out of the model because it imports the cycle, the probes, the storage schema and the actions.
`parse()` ends with it, so it runs at `run` start, in check-config and for every discovered box
(`box_from_table`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import probes
from agent.core.config.model import Config
from agent.core.cycle import address_targets, service_targets
from agent.storage import points as P
from remediations.actions import ActionError, expand_command


def runtime_errors(config: Config, box_paths: Sequence[str] | None = None) -> list[str]:
    """Every problem `run` would meet, one line each naming the box's key path (BOX_PATHS, else Config.box_path).

    Every box's cycle targets pass the probes' own validation (probes.validate), the points
    written for it encode as line protocol (agent.storage.points), and its command template
    expands (remediations.actions.expand_command).
    """
    errors: list[str] = []
    site = config.agent.site
    for i, box in enumerate(config.boxes):
        path = box_paths[i] if box_paths is not None else config.box_path(i)
        targets = address_targets(box)
        for t in targets:
            try:
                probes.validate(t)
            except ValueError as exc:
                key = "tcp_ports" if t.port is not None else ("ipv4" if t.address == box.ipv4 else "ipv6")
                errors.append(f"{path}.{key}: {exc}")
        for j, sp in enumerate(box.probes):
            for t in service_targets(box, sp):
                targets.append(t)
                try:
                    probes.validate(t)
                except ValueError as exc:
                    errors.append(f"{path}.probe[{j}]: {exc}")
        try:
            P.to_lines([P.box_point(box.name, box.kind, site, 1, "up", "none", 0.0),
                        *(P.probe_point(box.name, box.kind, site, t.probe, t.address, t.port, True, 0.1, None, None,
                                        0.0, layer="l7", status_code=200, cert_days_left=1.0) for t in targets),
                        *(P.probe_point(box.name, box.kind, site, "check:" + c.kind, c.target, None, True, 0.1, None,
                                        None, 0.0) for c in box.checks),
                        *(P.warning_point(box.name, box.kind, site, "check:" + c.kind, c.target, "expires", 0.0,
                                          days_left=1.0) for c in box.checks),
                        P.segment_freeze_point(box.segment_name(site), site, 0.0, (box.name,), "l2", False, 0.0)])
        except ValueError as exc:
            errors.append(f"{path}: its points cannot be written to InfluxDB: {exc}")
        for key in ("command", "exec"):
            if getattr(box, key) and key in box.remediate:
                try:
                    target = box.remediation_target()
                    if box.hostname:   # its addresses come from its name at run: checked with stand-ins
                        target = replace(target, ipv4=target.ipv4 or "192.0.2.1", ipv6=target.ipv6 or "2001:db8::1")
                    expand_command(target, key)
                except ActionError as exc:
                    errors.append(f"{path}.{key}: {exc}")
    return errors
