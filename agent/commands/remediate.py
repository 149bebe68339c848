"""`vobox-agent remediate -c FILE BOX ACTION [--dry-run] [--force --reason WHY]` and `remediate -c FILE reset BOX`.

One manual action under the same safety limits as the agent; --force bypasses cooldown and caps
once (recorded with who and why), never a maintenance window (refused, "maintenance: <reason>");
`reset BOX` clears a box's halt and hourly budget (recorded).
"""
from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import os
import sys
import time

from agent.commands import add_config_option

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_UNRECORDED = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the remediate subcommand."""
    p = subparsers.add_parser(
        "remediate",
        description=(
            "Run ACTION on BOX now, as the agent would (recorded with trigger=manual), then wait "
            "[remediation] verify seconds and re-probe the box to say whether it recovered; --no-verify skips"
            " that wait and re-probe. --dry-run prints and records what would be done, at once, without doing it. "
            "`remediate -c FILE reset BOX` clears the box's halt and hourly budget (recorded)."),
        help="run one remediation action on a box now (trigger=manual), or `reset BOX` to clear its halt and budget")
    add_config_option(p)
    p.add_argument("box", help="box name from the config (or `reset`)")
    p.add_argument("action", nargs="?",
                   help="reconnect_network, exec, restart_container or command (after `reset`: the box)")
    p.add_argument("--dry-run", action="store_true", help="print and record what would be done, do nothing")
    p.add_argument("--no-verify", action="store_true",
                   help="do not wait [remediation] verify seconds and re-probe the box afterwards")
    p.add_argument("--force", action="store_true", help="bypass cooldown and caps once (needs --reason)")
    p.add_argument("--reason", metavar="WHY", help="why (recorded with your user name; required with --force)")
    p.add_argument("--json", action="store_true", help="print each record as one JSON object a line")
    p.set_defaults(func=run)


def who_am_i() -> str:
    """The login user behind this command (the sudo caller when run with sudo)."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def run(args: argparse.Namespace) -> int:
    """Run ACTION on BOX once (or reset BOX); print the records as JSON.

    Exit 0 done (or dry run, or reset), 1 failed/deferred, 2 refused or bad arguments, 3 the
    record could not be written to InfluxDB (what was done is printed).
    """
    from agent.commands import countdown, load_config
    from agent.wiring import docker_factory, probe_box
    from remediations import ActionContext, Remediator, execute, history

    cfg = load_config(args.config)
    if cfg is None:
        return EXIT_REFUSED
    names = [b.name for b in cfg.boxes]
    resetting = args.box == "reset" and "reset" not in names
    if args.action is None:
        print("remediate: " + ("which box? `remediate -c FILE reset BOX`" if resetting else
                               f"which action on {args.box}? `remediate -c FILE BOX ACTION` (reconnect_network, "
                               "exec, restart_container or command)"), file=sys.stderr)
        return EXIT_REFUSED
    box = args.action if resetting else args.box
    if box not in names:
        print(f"remediate: unknown box {box!r}; configured: {', '.join(names)}", file=sys.stderr)
        return EXIT_REFUSED
    if args.force and not (args.reason or "").strip():
        print("remediate: --force needs --reason WHY (it is recorded with your user name)", file=sys.stderr)
        return EXIT_REFUSED
    box_cfg = cfg.box(box)
    if box_cfg.hostname and not resetting:   # a box by name: resolved now, before anything acts on it
        from agent.wiring import SetupError, resolve_boxes

        try:
            cfg, waits = resolve_boxes(cfg, [box], getattr(args, "netns", None))
        except SetupError as exc:
            print(f"remediate: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        box_cfg = cfg.box(box)
        if box in waits and not (args.force and box_cfg.addresses()):
            print(f"remediate: refused: {waits[box]}" + (" (--force --reason WHY acts at its last address)"
                                                         if box_cfg.addresses() else ""), file=sys.stderr)
            return EXIT_REFUSED
    policy = cfg.remediation.policy()
    path = history.path_in(cfg.agent.state_dir)
    now = time.time()
    engine = Remediator(policy, [b.remediation_target() for b in cfg.boxes],
                        reprobe=lambda _box: probe_box(box_cfg, cfg))
    from agent.wiring import maintenance_source
    in_maintenance = maintenance_source(cfg)(now, [box]).get(box)
    if in_maintenance is not None:   # refused even with --force (issue 18): the engine says why
        engine.maintenance(box, in_maintenance.reason, now)
    engine.apply_resets(history.load_resets(path))
    engine.merge_history(history.load(path, now))
    who, why = who_am_i(), args.reason
    if resetting:
        history.reset_box(path, box, now)
        engine.reset(box, now, who=who, why=why)
        return _finish(cfg, engine.take_records(), EXIT_OK, args.json)
    try:
        result = engine.request(box, args.action, "manual", now, force=args.force, who=who, why=why,
                                dry_run=args.dry_run)
    except ValueError as exc:
        print(f"remediate: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    plan = result.planned
    if not result.accepted or plan is None:   # an accepted request comes with its plan (Remediator.request)
        print(f"remediate: refused: {result.reason}", file=sys.stderr)
        return _finish(cfg, engine.take_records(), EXIT_REFUSED, args.json)
    ctx = ActionContext(docker_factory=docker_factory(socket=cfg.engine.socket), policy=policy)
    if not plan.dry_run:   # progress on stderr: stdout stays the records (--json)
        print(f"remediate: running {args.action} on {box} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    outcome = execute(plan, ctx)
    if not plan.dry_run:
        print(f"remediate: {args.action} on {box} " + ("done" if outcome.ok else "FAILED")
              + f" after {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    engine.on_outcome(plan, outcome, time.time())
    if plan.dry_run:  # at once: nothing ran, nothing to verify, no budget spent
        return _finish(cfg, engine.take_records(), EXIT_OK, args.json)
    if not (outcome.deferred_reason or outcome.refused_reason):
        history.merge_save(path, engine.history_entries(time.time()), time.time())
        if args.no_verify:
            engine.on_verified(box, False, time.time())
        else:
            if outcome.ok:
                countdown(policy.verify_s, _verify_what(box_cfg))
            engine.tick(time.time())
    return _finish(cfg, engine.take_records(), EXIT_OK if outcome.ok and not outcome.refused_reason
                   else EXIT_FAILED, args.json)


def _verify_what(box_cfg) -> str:
    """What the verify wait waits for: the box answering the probes its re-probe sends ("vm1 to answer icmp, arp,
    tcp/1093")."""
    from agent.core.cycle import plan_cycle

    kinds = dict.fromkeys(f"{t.probe}/{t.port}" if t.port else t.probe for t in plan_cycle([box_cfg]).targets)
    return f"{box_cfg.name} to answer {', '.join(kinds) or 'its probes'}"


def describe(rec) -> str:
    """One line a person reads for a remediations.ActionRecord (what was decided, and what came of it)."""
    head = f"{rec.action} on {rec.box} ({rec.trigger})"
    if rec.outcome == "reset":
        return f"reset {rec.box}: halt and hourly budget cleared (by {rec.who or '?'})"
    if rec.outcome == "dry_run":
        return f"{head}: DRY RUN, nothing done - {rec.detail}"
    if rec.outcome != "done":
        return f"{head}: {rec.outcome.upper()} - {rec.reason or rec.detail}"
    result = ("FAILED" if not rec.ok else "ok, recovered" if rec.recovered
              else "ok, NOT recovered" if rec.recovered is False else f"ok, {rec.reason or 'not verified'}")
    forced = f", FORCED by {rec.who} ({rec.why})" if rec.forced else ""
    return f"{head}: {result}{forced}, {rec.duration_s:.1f} s" + (f" - {rec.detail}" if rec.detail else "")


def _finish(cfg, records, code: int, as_json: bool = False) -> int:
    """Print the records (a line each, or JSON), write them; EXIT_UNRECORDED when they could not be written."""
    for rec in records:
        print(json.dumps({**dataclasses.asdict(rec)}) if as_json else describe(rec))
    if not store_records(cfg, records) and code in (EXIT_OK, EXIT_FAILED):
        return EXIT_UNRECORDED
    return code


def store_records(cfg, records) -> bool:
    """Write the records as `remediation` points straight to InfluxDB (not through the running agent's spool,
    which another process owns); False after saying so on stderr when that fails (the action itself stands)."""
    from agent.storage import points as P
    from agent.storage.influx import make_writer
    from agent.wiring import record_point

    if not records:
        return True
    if cfg.influxdb is None:   # stores are optional: the action stands, its record is in the history file only
        print("remediate: not recorded in InfluxDB: no [influxdb] in the config")
        return True
    pts = [record_point(r, cfg.agent.site) for r in records]
    writer = make_writer(cfg.influxdb)
    try:
        writer.send("\n".join(P.to_lines(pts)).encode())
        return True
    except Exception as exc:  # noqa: BLE001 - SinkError and connection trouble alike: say so, exit non-zero
        from agent.commands import INFLUX_CHECK, influx_reason

        print(f"remediate: NOT RECORDED: the record is not in InfluxDB ({influx_reason(exc)}); {INFLUX_CHECK}",
              file=sys.stderr)
        return False
    finally:
        writer.close()
