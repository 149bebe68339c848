"""`vobox-agent remediate -c FILE BOX ACTION [--dry-run]`: one manual action under the same safety limits."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the remediate subcommand."""
    p = subparsers.add_parser(
        "remediate",
        description=(
            "Run ACTION on BOX now, as the agent would (recorded with trigger=manual), then wait "
            "[remediation] verify seconds and re-probe the box to say whether it recovered; --no-verify skips"
            " that wait and re-probe. --dry-run records what would be done without doing it."),
        help="run one remediation action on a box now (trigger=manual)")
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="agent config (TOML)")
    p.add_argument("box", help="box name from the config")
    p.add_argument("action", help="reconnect_network, restart_container or command")
    p.add_argument("--dry-run", action="store_true", help="record what would be done, do nothing")
    p.add_argument("--no-verify", action="store_true",
                   help="do not wait [remediation] verify seconds and re-probe the box afterwards")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ACTION on BOX once; print the record as JSON; exit 0 ok, 1 failed/deferred, 2 refused."""
    from agent.commands import load_config
    from agent.wiring import docker_factory, probe_box
    from remediations import ActionContext, Remediator, execute, history

    cfg = load_config(args.config)
    if cfg is None:
        return EXIT_REFUSED
    names = [b.name for b in cfg.boxes]
    if args.box not in names:
        print(f"remediate: unknown box {args.box!r}; configured: {', '.join(names)}", file=sys.stderr)
        return EXIT_REFUSED
    box_cfg = cfg.box(args.box)
    policy = cfg.remediation.policy(dry_run=args.dry_run)
    path = history.path_in(cfg.agent.state_dir)
    now = time.time()
    engine = Remediator(policy, [b.remediation_target() for b in cfg.boxes],
                        reprobe=lambda _box: probe_box(box_cfg, cfg),
                        history=history.load(path, now))
    try:
        result = engine.request(args.box, args.action, "manual", now)
    except ValueError as exc:
        print(f"remediate: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    refusals = engine.take_records()  # a cap refusal is a record too
    for rec in refusals:
        print(json.dumps(dataclasses.asdict(rec)))
    store_records(cfg, refusals)
    if not result.accepted:
        print(f"remediate: refused: {result.reason}", file=sys.stderr)
        return EXIT_REFUSED
    ctx = ActionContext(docker_factory=docker_factory(), policy=policy)
    outcome = execute(result.planned, ctx)
    engine.on_outcome(result.planned, outcome, time.time())
    if not outcome.deferred_reason:
        history.merge_save(path, engine.history_entries(time.time()), time.time())
        if args.no_verify:
            engine.on_verified(args.box, False, time.time())
        else:
            time.sleep(policy.verify_s if outcome.ok else 0)
            engine.tick(time.time())
    records = engine.take_records()
    for rec in records:
        print(json.dumps(dataclasses.asdict(rec)))
    store_records(cfg, records)
    return EXIT_OK if outcome.ok else EXIT_FAILED


def store_records(cfg, records) -> None:
    """Write the records as `remediation` points straight to InfluxDB (not through the running agent's spool,
    which another process owns); say so on stderr when that fails, the action itself stands."""
    from agent.storage import points as P
    from agent.storage.influx import SinkError, make_writer

    if not records:
        return
    pts = [P.remediation_point(r.box, r.kind, cfg.agent.site, r.action, r.trigger, r.ok, r.recovered, r.dry_run,
                               r.duration_s, r.detail, r.time_s) for r in records]
    writer = make_writer(cfg.influxdb)
    try:
        writer.send("\n".join(P.to_lines(pts)).encode())
    except SinkError as exc:
        print(f"remediate: the record is not in InfluxDB ({exc})", file=sys.stderr)
    finally:
        writer.close()
