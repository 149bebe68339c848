"""`vobox-lab ACTION`: bring the lab up, poke it (faults), show it, tear it down."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

log = logging.getLogger(__name__)

ENV_RUN_ID = "VOBOX_LAB_RUN_ID"


def register(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """Add --run-id and the lab's actions to PARSER (the `vobox-lab` parser); returns the actions' subparsers."""
    from lab import FAULT_KINDS
    from lab.engine import DEFAULT_ENGINE, ENGINES
    from lab.faults import FAULT_HELP

    parser.add_argument("--run-id", default=os.environ.get(ENV_RUN_ID),
                        help=f"which lab (default: ${ENV_RUN_ID}, else the lab made by `vobox-lab up` or a running "
                             "demo: the newest for status and config; fault, clear, influx, segment and down "
                             "need it to be the only one)")
    # --run-id is accepted after the action too (`vobox-lab down --run-id ID`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--run-id", default=argparse.SUPPRESS, help="which lab (see `vobox-lab --help`)")
    sub = parser.add_subparsers(dest="lab_command", metavar="ACTION")
    sub.required = True

    up = sub.add_parser("up", parents=[common], help="create a lab and leave it running (returns once every box answers)")
    up.add_argument("--containers", type=int, default=2, metavar="N", help="container boxes (default 2)")
    up.add_argument("--vms", type=int, default=1, metavar="M", help="VM stand-in boxes (default 1)")
    up.add_argument("--ports", default="1093,8084", help="TCP service ports, comma-separated (default 1093,8084)")
    up.add_argument("--no-influx", action="store_true", help="no InfluxDB")
    up.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                    help=f"container engine of the container boxes (default {DEFAULT_ENGINE}; podman runs behind "
                         "a lab-owned `podman system service`, see `status`)")
    up.add_argument("--replace", action="store_true", help="take down an existing `lab up` lab first")
    up.add_argument("--new", action="store_true", help="make another lab even when one is already up")
    up.add_argument("--json", action="store_true", help="print the status as JSON")
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", parents=[common], help="show the lab, its boxes and their faults")
    status.add_argument("--json", action="store_true", help="as JSON")
    status.set_defaults(func=cmd_status)

    fault = sub.add_parser("fault", parents=[common], help="inject a fault into a box",
                           epilog="; ".join(f"{k}: {v}" for k, v in FAULT_HELP.items()))
    fault.add_argument("box")
    fault.add_argument("kind", choices=FAULT_KINDS)
    fault.set_defaults(func=cmd_fault)

    clear = sub.add_parser("clear", parents=[common], help="undo a box's fault and wait until it answers again")
    clear.add_argument("box")
    clear.set_defaults(func=cmd_clear)

    influx = sub.add_parser("influx", parents=[common], help="InfluxDB outage: stop or start the lab's influxd")
    influx.add_argument("action", choices=("stop", "start"))
    influx.set_defaults(func=cmd_influx)

    segment = sub.add_parser("segment", parents=[common],
                             help="take the whole L2 segment (macvlan parent) down or up: every box at once")
    segment.add_argument("action", choices=("down", "up"))
    segment.set_defaults(func=cmd_segment)

    loss = sub.add_parser("loss", parents=[common],
                          help="drop about PERCENT %% of the frames on the segment, each direction (nft numgen "
                               "random in the monitor namespace); 0 = off")
    loss.add_argument("percent", type=float, help="0..100 (steps of 0.01), 0 = off")
    loss.set_defaults(func=cmd_loss)

    down = sub.add_parser("down", parents=[common], help="remove the lab (everything `up` made, InfluxDB included)")
    down.add_argument("--all", action="store_true", help="remove every lab on this machine, live or not")
    down.set_defaults(func=cmd_down)

    config = sub.add_parser("config", parents=[common], help="print an agent config (TOML) for the lab")
    config.set_defaults(func=cmd_config)

    leftovers = sub.add_parser("cleanup", parents=[common], help="remove leftovers of crashed labs (never a live or `up` lab)")
    leftovers.set_defaults(func=cmd_cleanup)
    return sub


def _fail(message: str) -> int:
    print(f"vobox-lab: {message}", file=sys.stderr)
    return 1


def _load(args, sole: bool = False):
    """The lab --run-id names; without one, the newest up (sole: the only one up, for commands that change it)."""
    from lab import Lab

    return Lab.load(args.run_id, sole=sole)


def format_status(st: dict) -> str:
    """Human-readable status of a lab."""
    influx = st["influx"]
    if not influx.get("wanted"):
        influx_line = "none"
    elif influx.get("running"):
        influx_line = f"{influx.get('url')} (pid {influx.get('pid')}, inside {st['monitor_ns']})" + (
            "" if influx.get("answers", True) else " NOT ANSWERING")
    else:
        influx_line = "stopped"
    lines = [
        f"lab {st['run_id']}" + (" (persistent: `lab down` removes it)" if st["persistent"] else ""),
        f"  monitor   netns {st['monitor_ns']}  link {st['monitor_link']}  {st['monitor_ipv4']}  {st['monitor_ipv6']}",
        f"  engine    {st.get('engine', 'docker')}  DOCKER_HOST={st.get('docker_host', 'unix:///var/run/docker.sock')}",
        f"  segment   {st['parent_link']} ({st['segment']})  {st.get('engine', 'docker')} network {st['network']}"
        f"  {st['ipv4_subnet']}  {st['ipv6_subnet']}"
        + (f"  loss {st['loss_percent']:g} % each way" if st.get("loss_percent") else ""),
        f"  influxdb  {influx_line}",
        "  boxes:",
    ]
    for b in st["boxes"]:
        where = b["container"] if b["kind"] == "container" else b["netns"]
        ports = ",".join(str(p) for p in b["tcp_ports"]) + (f" tls {b['tls_port']}" if b.get("tls_port") else "")
        lines.append(f"    {b['name']:<6} {b['kind']:<9} {b['ipv4']:<16} {b['ipv6']:<24} {b['mac']}  tcp {ports}"
                     f"  {where}  {b['state']}  fault={b['fault'] or '-'}")
    lines.append(f"  probe from the monitor namespace: vobox-agent --netns {st['monitor_ns']} ...")
    return "\n".join(lines)


def _print_status(lab, as_json: bool) -> None:
    st = lab.status()
    print(json.dumps(st, indent=1) if as_json else format_status(st))


def cmd_up(args) -> int:
    """Create a persistent lab (or show the one that is up)."""
    from lab import Lab, LabError

    try:
        ports = tuple(int(p) for p in args.ports.split(",") if p.strip())
    except ValueError:
        return _fail(f"--ports: expected comma-separated integers, got {args.ports!r}")
    try:
        existing = None if args.new else Lab.load(args.run_id)
    except LabError:
        existing = None
    if existing is not None and existing.persistent:
        if not args.replace:
            print(f"lab {existing.run_id} is already up (use --replace for a new one, or `lab down`)",
                  file=sys.stderr)
            _print_status(existing, args.json)
            return 0
        existing.down()
    try:
        lab = Lab.create(containers=args.containers, vms=args.vms, tcp_ports=ports,
                         influx=not args.no_influx, persistent=True, engine=args.engine)
    except (LabError, ValueError) as exc:
        return _fail(f"up failed: {exc}")
    except KeyboardInterrupt:
        return _fail("up interrupted; what was made has been removed")
    print(f"lab {lab.run_id} up in {lab.create_s:.1f}s", file=sys.stderr)
    _print_status(lab, args.json)
    return 0


def cmd_status(args) -> int:
    """Show a lab."""
    from lab import LabError

    try:
        _print_status(_load(args), args.json)
    except LabError as exc:
        return _fail(str(exc))
    return 0


def cmd_fault(args) -> int:
    """Inject a fault."""
    from lab import LabError

    try:
        lab = _load(args, sole=True)
        lab.fault(args.box, args.kind)
    except LabError as exc:
        return _fail(str(exc))
    b = lab.box(args.box)
    print(f"box {b.name} ({b.kind}, {b.ipv4} {b.ipv6}): fault {args.kind} active; `lab clear {b.name}` undoes it")
    return 0


def cmd_clear(args) -> int:
    """Clear a fault and wait for the box."""
    from lab import LabError

    try:
        lab = _load(args, sole=True)
        before = lab.faults().get(args.box)
        lab.clear(args.box)
    except LabError as exc:
        return _fail(str(exc))
    print(f"box {args.box}: " + (f"fault {before} cleared" if before else "had no fault") + "; it answers")
    return 0


def cmd_influx(args) -> int:
    """Stop or start the lab's InfluxDB."""
    from lab import LabError

    try:
        lab = _load(args, sole=True)
        if not lab.status()["influx"].get("wanted"):
            return _fail(f"lab {lab.run_id} was made without InfluxDB (`lab up` without --no-influx)")
        lab.influx_stop() if args.action == "stop" else lab.influx_start()
    except LabError as exc:
        return _fail(str(exc))
    print(f"lab {lab.run_id}: influxd " + ("stopped" if args.action == "stop" else f"up at {lab.influx_url}"))
    return 0


def cmd_segment(args) -> int:
    """Take the lab's L2 segment down or up."""
    from lab import LabError

    try:
        lab = _load(args, sole=True)
        if args.action == "down":
            lab.segment_down()
        else:
            lab.segment_up()
            lab.wait_ready()
    except LabError as exc:
        return _fail(str(exc))
    print(f"lab {lab.run_id}: segment {lab.parent_link} {args.action}")
    return 0


def cmd_loss(args) -> int:
    """Set the random loss on the lab's segment."""
    from lab import LabError

    try:
        lab = _load(args)
        lab.loss(args.percent)
    except LabError as exc:
        return _fail(str(exc))
    print(f"lab {lab.run_id}: segment {lab.monitor_link} "
          + (f"drops about {args.percent:g} % of frames each way" if args.percent else "loss off"))
    return 0


def cmd_down(args) -> int:
    """Remove the lab (or every lab)."""
    from lab import LabError, remove_all
    from lab.cleanup import left_of_run

    if args.all:
        ids = remove_all()
        print("removed labs: " + (", ".join(ids) or "none"))
        return 0
    try:
        lab = _load(args, sole=True)
    except LabError as exc:
        return _fail(str(exc))
    lab.down()
    left = left_of_run(lab.run_id)
    if left:
        return _fail(f"lab {lab.run_id} removed except: {'; '.join(left)}")
    print(f"lab {lab.run_id} removed")
    return 0


def cmd_config(args) -> int:
    """Print an agent config for the lab."""
    from lab import LabError

    try:
        print(_load(args).agent_config(), end="")
    except LabError as exc:
        return _fail(str(exc))
    return 0


def cmd_cleanup(args) -> int:
    """Remove leftovers of crashed labs."""
    from lab import cleanup_leftovers
    from lab.cleanup import left_of_run

    ids = cleanup_leftovers()
    left = {i: left_of_run(i) for i in ids}
    print("removed leftover labs: " + (", ".join(i for i in ids if not left[i]) or "none"))
    for run_id, what in left.items():
        if what:
            _fail(f"lab {run_id} removed except: {'; '.join(what)}")
    return 1 if any(left.values()) else 0
