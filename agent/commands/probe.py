"""`vobox-agent probe ADDRESS ...`: one sweep over the given addresses (or the configured boxes), as a table or JSON."""
from __future__ import annotations

import argparse
import ipaddress
import json
import sys

from agent.commands import CONFIG_HELP, load_config, number_in, optional_config, seconds

# `probes` is imported when the command runs or its help is shown: `vobox-agent --help` and
# `--version` start without it.
EXIT_OK = 0          # every probe answered
EXIT_FAILED = 1      # some probe did not answer
EXIT_USAGE = 2       # bad arguments, missing privileges, bad config

JSON_KEYS = ("target", "probe", "port", "ok", "rtt_ms", "error", "mac")


class _HelpFormatter(argparse.HelpFormatter):
    """Fills `{kinds}` in a help text with the probe kinds (probes.PROBE_KINDS) when the help is printed."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if text and "{kinds}" in text:
            from probes import PROBE_KINDS

            text = text.replace("{kinds}", ",".join(PROBE_KINDS))
        return text


def _kinds(text: str) -> list[str]:
    from probes import PROBE_KINDS as ALL_KINDS

    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown probe kind {', '.join(map(repr, unknown)) or repr(text)}; valid kinds: {', '.join(ALL_KINDS)}")
    return list(dict.fromkeys(kinds))


def _ports(text: str) -> list[int]:
    ports = []
    for part in text.split(","):
        try:
            port = int(part)
        except ValueError:
            port = 0
        if not 1 <= port <= 65535:
            raise argparse.ArgumentTypeError(f"expected a port 1-65535 (or a comma list), got {part!r}")
        ports.append(port)
    return ports


MAX_TIMEOUT_S = 60.0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the probe subcommand."""
    p = subparsers.add_parser(
        "probe", formatter_class=_HelpFormatter, help="probe addresses once (icmp, icmp6, arp, ndp, tcp) and print the results",
        description="One sweep: every kind that applies to an address's family (icmp/arp for IPv4, "
                    "icmp6/ndp for IPv6, tcp for both when ports are given). Exit 0 when all answered, "
                    "1 when some did not, 2 on usage or privilege errors.")
    p.add_argument("addresses", nargs="*", metavar="ADDRESS", help="IPv4 or IPv6 literals")
    p.add_argument("--probe", type=_kinds, default=None, metavar="KINDS",
                   help="comma list of {kinds} (default: all; tcp only with --port)")
    p.add_argument("--port", type=_ports, action="extend", default=[], metavar="N",
                   help="TCP port to connect to; repeat or comma-separate for several")
    timeout = number_in(seconds, 0, MAX_TIMEOUT_S, f"a timeout in seconds > 0 and <= {MAX_TIMEOUT_S:g} (or e.g. 500ms)",
                        low_open=True)
    p.add_argument("--timeout", type=timeout, default=None, metavar="S",
                   help="reply timeout in seconds, or with a unit: 500ms (default 1, or the config's agent.timeout)")
    p.add_argument("--interface", metavar="IF", help="send out of this interface (default: from routing)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("-c", "--config", metavar="FILE",
                   help="probe the configured boxes (when no ADDRESS is given); " + CONFIG_HELP.split("; ", 1)[1]
                   + " when it exists")
    p.set_defaults(func=run)


def build_targets(addresses: list[str], kinds: list[str] | None, ports: list[int]):
    """Targets for ADDRESSES: each applicable kind, tcp once per port. Raises ValueError naming what is wrong."""
    from probes import PROBE_KINDS as ALL_KINDS, PROBES, Target

    kinds = list(kinds) if kinds is not None else [k for k in ALL_KINDS if PROBES[k].SPEC is None or (k == "tcp" and ports)]
    if "tcp" in kinds and not ports:
        raise ValueError("--probe tcp needs at least one --port")
    if ports and "tcp" not in kinds:
        raise ValueError(f"--port is for tcp, which --probe {','.join(kinds)} leaves out")
    targets = []
    for address in addresses:
        try:
            version = ipaddress.ip_address(address).version
        except ValueError:
            raise ValueError(f"{address!r} is not an IPv4 or IPv6 address") from None
        for kind in kinds:
            family = PROBES[kind].FAMILY  # each kind declares its family in its own module
            if family is not None and family != version:
                continue  # icmp/arp are IPv4 only, icmp6/ndp IPv6 only
            if kind == "tcp":
                targets += [Target(address, "tcp", port) for port in ports]
            else:
                targets.append(Target(address, kind))
    if addresses and not targets:
        raise ValueError(f"none of --probe {','.join(kinds)} applies to {', '.join(addresses)}")
    return targets


def _config_targets(cfg, kinds: list[str] | None):
    """(targets, timeout_s, interface) from a loaded config's boxes, filtered to KINDS."""
    from agent.core import cycle

    targets = list(cycle.plan_cycle(cfg.boxes).targets)
    if kinds is not None:
        targets = [t for t in targets if t.probe in kinds]
    return targets, cfg.agent.timeout_s, cfg.agent.interface


def as_json(results) -> list[dict]:
    """Results as JSON-ready dicts with exactly JSON_KEYS."""
    return [{"target": r.target, "probe": r.probe, "port": r.port, "ok": r.ok,
             "rtt_ms": None if r.rtt_ms is None else round(r.rtt_ms, 3), "error": r.error, "mac": r.mac}
            for r in results]


def as_table(results) -> str:
    """Results as an aligned text table."""
    rows = [("TARGET", "PROBE", "PORT", "OK", "RTT_MS", "ERROR", "MAC")]
    for r in results:
        rows.append((r.target, r.probe, "" if r.port is None else str(r.port), "yes" if r.ok else "no",
                     "" if r.rtt_ms is None else f"{r.rtt_ms:.3f}", r.error or "", r.mac or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def run(args: argparse.Namespace) -> int:
    """Run one sweep and print it; exit 0 all ok, 1 some failed, 2 usage/privilege/config error."""
    import probes

    timeout_s, interface = args.timeout, args.interface
    try:
        if args.addresses:
            targets = build_targets(args.addresses, args.probe, args.port)
        elif (config_path := optional_config(args.config)) is not None:
            if args.port:
                raise ValueError("--port applies to ADDRESS arguments; with -c the config's tcp_ports are used")
            cfg = load_config(config_path, check_files=False)
            if cfg is None:
                return EXIT_USAGE
            targets, cfg_timeout_s, cfg_interface = _config_targets(cfg, args.probe)
            timeout_s = timeout_s or cfg_timeout_s
            interface = interface or cfg_interface
        else:
            raise ValueError("give at least one ADDRESS (or -c CONFIG), no default config was found")
        if not targets:
            raise ValueError("nothing to probe")
        results = probes.sweep(targets, timeout_s or 1.0, interface=interface)
    except probes.PrivilegeError as exc:
        print(f"vobox-agent probe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"vobox-agent probe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(as_json(results), indent=2))
    else:
        print(as_table(results))
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED
