"""`vobox-agent init [--output FILE]`: a commented starting config for this host, from what discovery finds.

The macvlan networks the container engine has become `[discovery] networks` (with `docker = true`), the
containers found on them are listed as commented [[box]] tables (discovery follows them live; one can be
pinned), and a VM box is shown as a commented example. The text passes `check-config` as written.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from agent.commands import DEFAULT_CONFIG

EXIT_OK = 0
EXIT_NOT_WRITTEN = 1   # --output exists (without --force) or cannot be written
EXIT_INVALID = 2       # the text written would not pass check-config (a bug: said, never written)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the init subcommand."""
    p = subparsers.add_parser(
        "init",
        description=(
            "Write a commented starting config for this host: [discovery] follows the containers on the macvlan "
            "networks the container engine has now (the containers found are listed, commented), InfluxDB on "
            "this host, remediation in dry-run. It passes check-config as written; without --output it goes to "
            f"stdout. Run it for real with `vobox-agent init --output {DEFAULT_CONFIG}`. Exit 0 written, 1 the "
            "file exists (use --force) or cannot be written."),
        help=f"write a commented starting config for this host (e.g. --output {DEFAULT_CONFIG})")
    p.add_argument("--output", "-o", metavar="FILE", help="write here (mode 0640) instead of stdout")
    p.add_argument("--force", action="store_true", help="replace --output when it exists")
    p.set_defaults(func=run)


def _toml(value: Any) -> str:
    import json

    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))   # a JSON string is a TOML basic string


def config_text(host: str, now_s: float, networks: Sequence[str], found: Sequence[Any],
                engine_problem: str | None) -> str:
    """The config text: NETWORKS the macvlan networks found (names), FOUND `agent.core.discovery.Found` items,
    ENGINE_PROBLEM why the engine could not be asked (None when it answered). Pure; the caller checks the text."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(now_s))
    out = [
        f"# vobox-agent config for {host}, written by `vobox-agent init` at {stamp}.",
        "# Check it:  vobox-agent check-config   (then: vobox-agent doctor)",
        f"# Without -c the commands read $VOBOX_AGENT_CONFIG, else {DEFAULT_CONFIG}.",
        "# Every key: config-reference.md (share/doc/vobox-agent/, next to the operator guide).",
        "",
        "[agent]",
        'interval = "10s"           # between probe cycles (a number of seconds, or "500ms", "1m" ...)',
        'timeout = "1s"             # reply timeout of one probe',
        '# site = "MY-SITE"         # tag on every point; one agent per site',
        "",
        "[influxdb]                 # InfluxDB 1.x on this host; for 2.x/3.x: api = \"v2\", token_file, org, bucket",
        'url = "http://127.0.0.1:8086"',
        'database = "vobox"',
        "",
        "[remediation]",
        "enabled = true",
        "dry_run = true             # start in dry-run; set false once `vobox-agent events` looks right",
        "",
        "[discovery]",
        "docker = true              # a box for every container labelled vobox.monitor=true or on `networks`",
    ]
    if engine_problem is not None:
        out += [f"# The container engine could not be asked ({engine_problem}):",
                "# discovery then finds the labelled containers once it runs. On a host without containers,",
                "# set docker = false and add a [[box]] per VM (the example below)."]
    if networks:
        out.append(f"networks = {_toml(list(networks))}   # the macvlan networks of this host's engine")
    elif engine_problem is None:
        out.append("# networks = [\"docknet\"]   # the engine has no macvlan network now; label containers instead")
    out.append("")
    if found:
        out.append(f"# {len(found)} container{'s' if len(found) != 1 else ''} found now; discovery follows them "
                   "live. To pin one as a fixed box (its own remediation, checks), uncomment its table.")
        for f in found:
            out.append(f"# container {f.box.container} id {f.container_id[:12]} mac {f.mac or '?'}")
            out.append("# [[box]]")
            out.extend(f"# {k} = {_toml(v)}" for k, v in f.table.items() if k != "probe")
            out.append("#")
        out.append("")
    out += [
        "# A VM (EXAMPLE: change the address; the reset hook needs `virsh` on this host):",
        "# [[box]]",
        '# name = "vobox-vm-1"',
        '# kind = "vm"',
        '# ipv4 = "192.0.2.20"',
        "# tcp_ports = [1093]",
        '# remediate = ["command"]',
        '# command = ["virsh", "reset", "{box}"]',
        "",
    ]
    return "\n".join(out)


def _ask_engine() -> tuple[list[str], list[Any], str | None]:
    """(macvlan network names, discovered containers, None) from the engine, or ([], [], why it failed)."""
    from agent.core import config as C
    from agent.discovery import discover_now
    from agent.wiring import docker_factory

    try:
        client = docker_factory(timeout_s=10)()
        networks = sorted(n.name for n in client.networks.list(filters={"driver": "macvlan"}))
        cfg = C.parse({"discovery": {"docker": True, **({"networks": networks} if networks else {})}})
        found = list(discover_now(cfg, client).found)
    except Exception as exc:  # noqa: BLE001 - no engine, refused, timed out: the config is still written
        from agent.commands import engine_problem

        return [], [], engine_problem(exc)
    return networks, found, None


AGENT_GROUP = "vobox-agent"   # the group of the shipped systemd units' user (operator guide, "Install")


def _agent_group() -> int | None:
    """The gid of AGENT_GROUP, or None when this host has no such group."""
    import grp

    try:
        return grp.getgrnam(AGENT_GROUP).gr_gid
    except KeyError:
        return None


def run(args: argparse.Namespace) -> int:
    """Write the config (stdout or --output); exit 0 written, 1 not written, 2 the text failed check-config."""
    from agent.core import config

    if args.output and os.path.exists(args.output) and not args.force:
        print(f"vobox-agent init: {args.output} exists; --force replaces it", file=sys.stderr)
        return EXIT_NOT_WRITTEN
    networks, found, problem = _ask_engine()
    if problem is not None:
        print(f"vobox-agent init: {problem}; writing a config without the engine's networks", file=sys.stderr)
    text = config_text(socket.gethostname(), time.time(), networks, found, problem)
    try:
        config.loads(text, source="init")
    except config.ConfigError as exc:   # never expected: the text is built to pass
        print(f"vobox-agent init: the config written would not pass check-config: {exc.errors[0]}", file=sys.stderr)
        return EXIT_INVALID
    if not args.output:
        sys.stdout.write(text)
        return EXIT_OK
    tmp = f"{args.output}.tmp"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        group = _agent_group()
        if group is not None and os.geteuid() == 0:   # the units run as vobox-agent: it must read its config
            os.chown(tmp, 0, group)
        os.replace(tmp, args.output)
    except OSError as exc:
        print(f"vobox-agent init: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_NOT_WRITTEN
    owner = f"owner root:{AGENT_GROUP}" if _agent_group() is not None and os.geteuid() == 0 else \
        f"`chgrp {AGENT_GROUP} {args.output}` lets the agent's user read it"
    print(f"wrote {args.output} (mode 0640; {owner}): {len(networks)} macvlan network"
          f"{'s' if len(networks) != 1 else ''}, {len(found)} container{'s' if len(found) != 1 else ''} found; "
          f"check it with `vobox-agent check-config -c {args.output}`", file=sys.stderr)
    return EXIT_OK
