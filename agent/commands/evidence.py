"""`vobox-agent evidence [-c FILE] [BOX] [--since 24h]` lists freeze evidence bundles; `evidence show PATH` prints one."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from agent.atomic import DEFAULT_STATE_DIR
from agent.commands import EXIT_BAD_CONFIG, load_config, number_in, optional_config
from agent.timeparse import format_age, parse_duration_s

DEFAULT_PACKETS = 40
MAX_PACKETS = 100_000


def _add_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    p.add_argument("-c", "--config", metavar="FILE", default=d(None),
                   help="agent config (TOML): its agent.state_dir is used (default: $VOBOX_AGENT_CONFIG, else "
                        "/etc/vobox-agent/agent.toml, when it exists)")
    p.add_argument("--state-dir", metavar="DIR", default=d(None),
                   help=f"state directory (default: from -c, else {DEFAULT_STATE_DIR})")
    p.add_argument("--since", default=d("24h"), help="list bundles of freezes that started this recently (default 24h)")
    p.add_argument("--json", action="store_true", default=d(False), help="list: one JSON object per line")
    packets = number_in(int, 1, MAX_PACKETS, f"a number of packets 1-{MAX_PACKETS}")
    p.add_argument("--packets", type=packets, default=d(DEFAULT_PACKETS),
                   help=f"show: packets printed around the onset and the recovery (default {DEFAULT_PACKETS})")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the evidence subcommand (listing, and `show PATH`)."""
    p = subparsers.add_parser(
        "evidence", help="freeze evidence bundles: list them, or `evidence show PATH`",
        description="List evidence bundles with one-line summaries (oldest first), optionally only BOX's; "
                    "or `evidence show PATH` to print a bundle's summary and the decoded exchange around the onset.",
        usage="vobox-agent evidence [-c FILE | --state-dir DIR] [--since 24h] [--json] [BOX]\n"
              "       vobox-agent evidence show [--packets N] PATH")
    _add_options(p, defaults=True)
    # REMAINDER, re-parsed in run(): options may then come before or after BOX / show PATH.
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="BOX | show PATH",
                   help="a box name, or `show` and a bundle path")
    p.set_defaults(func=run)


def _reparse(args: argparse.Namespace) -> argparse.Namespace:
    """Options given after the positional words end up in args.words: parse them (in any order)."""
    p = argparse.ArgumentParser(prog="vobox-agent evidence", add_help=False)
    _add_options(p, defaults=False)
    p.add_argument("words", nargs="*")
    base = {k: v for k, v in vars(args).items() if k != "words"}
    return p.parse_intermixed_args(args.words, namespace=argparse.Namespace(**base))


def run(args: argparse.Namespace) -> int:
    """Dispatch: `show PATH` or a listing; exit 2 on bad arguments, 1 when a bundle cannot be read."""
    try:
        args = _reparse(args)
    except SystemExit as exc:  # argparse already printed what is wrong
        return int(exc.code or 2)
    words = list(args.words)
    if words and words[0] == "show":
        if len(words) != 2:
            print("vobox-agent evidence show: expected exactly one PATH (a bundle directory)", file=sys.stderr)
            return 2
        return show(words[1], args.packets)
    if len(words) > 1:
        print(f"vobox-agent evidence: expected at most one BOX, got {' '.join(words)} "
              "(to print a bundle: evidence show PATH)", file=sys.stderr)
        return 2
    try:
        since_s = parse_duration_s(args.since)
    except ValueError as exc:
        print(f"vobox-agent evidence: --since: {exc}", file=sys.stderr)
        return 2
    state_dir = _state_dir(args)
    if state_dir is None:
        return EXIT_BAD_CONFIG
    return list_bundles(state_dir, words[0] if words else None, since_s, args.json)


def _state_dir(args: argparse.Namespace) -> str | None:
    """--state-dir, else the config's agent.state_dir (-c, else the default config when it exists; None after
    printing the config's errors), else the default state directory."""
    if args.state_dir:
        return args.state_dir
    config_path = optional_config(args.config)
    if config_path is not None:
        cfg = load_config(config_path, check_files=False)
        return None if cfg is None else cfg.agent.state_dir
    return DEFAULT_STATE_DIR


def _read(path: str) -> dict[str, Any] | None:
    from agent.forensics.bundle import SUMMARY_JSON

    try:
        with open(os.path.join(path, SUMMARY_JSON), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def list_bundles(state_dir: str, box: str | None, since_s: float, as_json: bool, now_s: float | None = None) -> int:
    """Print one line per bundle (oldest first): start, box, state, duration, headline, path."""
    from agent.forensics import retention
    from agent.forensics.bundle import evidence_root

    now_s = time.time() if now_s is None else now_s
    bundles = [b for b in retention.scan(evidence_root(state_dir))
               if (box is None or b.box == box) and b.start_s >= now_s - since_s]
    if not bundles:
        print(f"no evidence bundles{' for box ' + box if box else ''} in the last {format_age(since_s)} "
              f"under {evidence_root(state_dir)}", file=sys.stderr)
        return 0
    for b in bundles:
        s = _read(b.path) or {}
        headline = s.get("headline", "(no summary yet)")
        if as_json:
            print(json.dumps({"path": b.path, "box": b.box, "start_s": b.start_s, "open": s.get("open"),
                              "layer": s.get("layer"), "duration_s": s.get("duration_s"), "headline": headline,
                              "size_bytes": b.size_bytes}, sort_keys=True))
            continue
        start = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(b.start_s))
        state = "open" if s.get("open") else (f"{s['duration_s']:.0f}s" if s.get("duration_s") is not None else "?")
        print(f"{start}  {b.box:<20} {s.get('layer') or '-':<4} {state:>7}  {headline}  {b.path}")
    return 0


def decode(pcap: str, around_s: float | None, packets: int) -> list[str]:
    """Summary lines of the capture, decoded by its own link type (render.decode_pcap), at most `packets`."""
    from agent.forensics.render import decode_pcap

    return decode_pcap(pcap, around_s, packets)[1]


def show(path: str, packets: int = DEFAULT_PACKETS) -> int:
    """Print a bundle's summary and its decoded captures (onset, recovery)."""
    from agent.forensics.bundle import ONSET_PCAP, RECOVERY_PCAP, SUMMARY_JSON, SUMMARY_TXT
    from agent.forensics.render import decode_pcap, render_text

    if os.path.isfile(path):
        path = os.path.dirname(path) or "."
    summary = _read(path)
    if summary is None:
        print(f"vobox-agent evidence show: {path}: no readable {SUMMARY_JSON} (not a bundle directory?)",
              file=sys.stderr)
        return 1
    txt = os.path.join(path, SUMMARY_TXT)
    try:
        with open(txt, encoding="utf-8") as f:
            sys.stdout.write(f.read())
    except OSError:
        sys.stdout.write(render_text(summary))
    print("  (Ethernet frames with MACs 00:00:00:00:00:00 were recorded as raw IP; the MACs are not real)")
    for name, around_s, label in ((ONSET_PCAP, summary.get("start_s"), "freeze start"),
                                  (RECOVERY_PCAP, summary.get("end_s"), "freeze end")):
        pcap = os.path.join(path, name)
        if not os.path.exists(pcap):
            continue
        try:
            linktype, lines = decode_pcap(pcap, around_s, packets)
        except Exception as exc:  # noqa: BLE001 - any damage in a capture file: say so, keep the rest
            print(f"\n{name}: cannot decode {pcap}: {exc}")
            continue
        print(f"\n{name}: decoded exchange ({linktype} frames), times relative to the {label}:")
        for line in lines:
            print(line)
    return 0
