"""`vobox-agent audit [-c FILE] [BOX...] [--json]`: the isolation audit of container boxes now, with fixes;
`--suggest BOX [--try --yes]`: run flags of a least-privilege variant, derived by trial."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the audit subcommand."""
    p = subparsers.add_parser(
        "audit",
        description=(
            "Audit the isolation of container boxes from the engine's inspect and, for running ones, "
            "/proc/PID/status: each finding with its docker-bench-security 1.6.0 item, severity and a one-line "
            "fix; capabilities are compared with the engine's own default set read from this host. "
            "BOX: box names of the config (-c), else container names; none: every container box of the config "
            "(without -c: every container). --suggest BOX prints the run flags of a least-privilege variant; "
            "with --try --yes the variant is started next to the box (another name, no network, none of the "
            "box's writable mounts, removed afterwards), the box's in-container checks run in it, and a "
            "capability is added back only where a check fails without it. Exit 0 when no high-severity finding, "
            "1 when one is found or a box could not be audited, 2 for a bad config or an unknown box."),
        help="audit container boxes' privileges (docker-bench-security items, fixes); --suggest a least-privilege "
             "variant")
    p.add_argument("boxes", nargs="*", metavar="BOX", help="boxes (with -c) or containers to audit; default: all")
    p.add_argument("-c", "--config", metavar="FILE", help="agent config: its container boxes and their checks "
                                                         "(default: $VOBOX_AGENT_CONFIG, else "
                                                         "/etc/vobox-agent/agent.toml, when it exists)")
    p.add_argument("--json", action="store_true", help="print JSON (one object: boxes, each with its findings; "
                                                       "schema: docs/schemas/audit.json)")
    p.add_argument("--suggest", metavar="BOX", help="print run flags of a least-privilege variant of BOX")
    p.add_argument("--try", dest="trial", action="store_true",
                   help="with --suggest: start the variant next to the box and run its checks (needs -c and --yes)")
    p.add_argument("--yes", action="store_true", help="with --try: yes, start containers on this engine")
    p.set_defaults(func=run)


def _targets(args: argparse.Namespace, cfg: Any, client: Any) -> dict[str, str] | str:
    """box -> container to audit, or an error line."""
    names = list(args.boxes) + ([args.suggest] if args.suggest else [])
    if cfg is not None:
        boxes = {b.name: b.container for b in cfg.boxes if b.container}
        unknown = [n for n in names if n not in boxes]
        if unknown:
            return (f"audit: unknown container box {', '.join(repr(n) for n in unknown)} "
                    f"(container boxes: {', '.join(boxes) or 'none'})")
        return {n: boxes[n] for n in names} if names else boxes
    if names:
        return {n: n for n in names}
    return {c["Names"][0].lstrip("/"): c["Names"][0].lstrip("/") for c in client.api.containers(all=True)
            if not (c.get("Labels") or {}).get("vobox.audit.trial")}


def run(args: argparse.Namespace) -> int:
    """Audit, print (text or JSON); exit 0/1/2 as the description says."""
    from agent.commands import EXIT_BAD_CONFIG, engine_problem, load_config, optional_config

    if args.trial and not args.suggest:
        print("audit: --try needs --suggest BOX", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if args.trial and not (args.yes and args.config):
        print("audit: --try starts a container next to the box: give -c FILE (the box's checks) and --yes",
              file=sys.stderr)
        return EXIT_BAD_CONFIG
    cfg = None
    config_path = optional_config(args.config)   # -c, else the default config when it exists (issue 33)
    if config_path is not None:
        cfg = load_config(config_path, check_files=False)
        if cfg is None:
            return EXIT_BAD_CONFIG
    from agent import auditor
    from agent.wiring import docker_factory

    try:
        client = docker_factory(timeout_s=30, socket=cfg.engine.socket if cfg is not None else None)()
        targets = _targets(args, cfg, client)
        if isinstance(targets, str):
            print(targets, file=sys.stderr)
            return EXIT_BAD_CONFIG
        defaults = auditor.engine_defaults(client)
    except Exception as exc:  # noqa: BLE001 - the engine unreachable or refusing: one line, exit 1
        print(f"vobox-agent audit: {engine_problem(exc, cfg.engine.socket if cfg is not None else None)}",
              file=sys.stderr)
        return 1
    import time

    if args.suggest:
        return _suggest(args, cfg, client, targets[args.suggest], defaults)
    audits = [auditor.audit_container(client, box, ctr, defaults, time.time()) for box, ctr in targets.items()]
    failed = any(a.error is not None or any(f.severity == "high" for f in a.findings) for a in audits)
    if args.json:
        print(json.dumps({"engine": defaults.engine, "default_caps": sorted(defaults.default_caps),
                          "caps_source": defaults.caps_source, "lsms": sorted(defaults.lsms),
                          "boxes": [a.to_json() for a in audits]}, indent=2))
    else:
        print(format_text(audits, defaults))
    return 1 if failed else 0


def format_text(audits: list[Any], defaults: Any) -> str:
    """Per box: a head line (class, /proc), then FAIL (high) / WARN lines, each with its fix; PASS when none."""
    lines = [f"engine {defaults.engine}: default capabilities from {defaults.caps_source}; "
             f"LSMs: {', '.join(sorted(defaults.lsms)) or 'none'}"]
    for a in audits:
        lines.append("")
        if a.error is not None:
            lines.append(f"FAIL  {a.box}: not audited: {a.error}")
            continue
        lines.append(f"{a.box} (container {a.container}): class {a.audit_class}, /proc {a.proc}")
        if not a.findings:
            lines.append("PASS  no findings")
        for f in a.findings:
            lines.append(f"{'FAIL' if f.severity == 'high' else 'WARN'}  {f.id} {f.title} ({f.severity}): "
                         f"{f.detail}  [{f.evidence}]")
            lines.append(f"      fix: {f.fix}")
    return "\n".join(lines)


def _suggest(args: argparse.Namespace, cfg: Any, client: Any, container: str, defaults: Any) -> int:
    import time

    from agent import audit as A, auditor
    from agent.audit import suggest

    try:
        attrs = client.api.inspect_container(container)
    except Exception as exc:  # noqa: BLE001 - NotFound, APIError: one line
        print(f"audit: inspect {container}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    box = args.suggest
    inp = A.AuditInput(box, attrs, defaults)
    a = A.audit(inp, time.time())
    variant = suggest.variant_of(inp, a, for_trial=args.trial)
    out: dict[str, Any] = {"box": box, "container": container, "class": a.audit_class.value,
                           "left_out": list(variant.left_out), "candidates": list(variant.candidates)}
    if not args.trial:
        out |= {"cap_add": [], "flags": suggest.run_flags(variant), "tried": False}
        if args.json:
            print(json.dumps(out, indent=2))
            return 0
        print(f"{box} (container {container}), class {a.audit_class}: least-privilege variant (the engine's "
              f"default capabilities, the box's devices and mounts):")
        print(f"  {suggest.flags_text(suggest.run_flags(variant)) or '(no flags: the defaults are the variant)'}")
        for line in variant.left_out:
            print(f"  left out: {line}")
        if variant.candidates:
            print(f"  not tried: {', '.join(variant.candidates)} (beyond the default); "
                  f"`--try --yes -c FILE` adds back only those a check needs")
        return 0
    checks = cfg.box(box).checks
    name = f"{container}-audit-trial-{os.getpid()}"
    try:
        result = suggest.trial(variant.candidates, auditor.trial_runner(client, attrs, variant, checks, name))
    except Exception as exc:  # noqa: BLE001 - the engine refused the variant: one line
        print(f"audit: the trial variant {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        try:
            auditor.remove_trials(client, name)
        except Exception:  # noqa: BLE001 - best effort; the label finds it later
            print(f"audit: could not remove {name} (label vobox.audit.trial)", file=sys.stderr)
    flags = suggest.run_flags(variant, result.needed)
    out |= {"cap_add": sorted(result.needed), "flags": flags, "tried": True,
            "needed_by": {c: list(v) for c, v in result.needed.items()}, "not_needed": list(result.not_needed),
            "still_failing": list(result.still_failing), "runs": result.runs,
            "checks_with_defaults": dict(result.first)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{box} (container {container}): trial in {result.runs} variant run(s), "
              f"{len(checks)} check(s) + {suggest.RUNNING}")
        for cap, by in sorted(result.needed.items()):
            print(f"  {cap}: needed by {', '.join(by)}")
        for cap in result.not_needed:
            print(f"  {cap}: no check needed it (drop it)")
        for check in result.still_failing:
            print(f"  still failing: {check} (with the default set and each candidate alone)")
        print(f"  flags: {suggest.flags_text(flags)}")
        for line in variant.left_out:
            print(f"  left out: {line}")
    return 1 if result.still_failing else 0
