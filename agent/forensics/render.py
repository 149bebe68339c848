"""summary.txt: a bundle's summary.json as lines for a human."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def render_text(summary: Mapping[str, Any]) -> str:
    """summary.txt from summary.json's content."""
    lines = [f"box {summary['box']} ({summary.get('kind')}), freeze from {summary.get('start')}"
             f"{', layer ' + summary['layer'] if summary.get('layer') else ''}"]
    if summary.get("open"):
        lines.append("state: open (freeze not over when this was written)")
    else:
        lines.append(f"state: closed at {summary.get('end')} after {summary.get('duration_s')} s")
    lines.append(f"seen: {summary.get('headline')}")
    findings = summary.get("findings") or []
    if findings:
        lines.append("findings:")
        lines += [f"  - {f['text']}" for f in findings]
    exchanges = summary.get("exchanges") or []
    if exchanges:
        lines.append(f"captured exchange ({summary.get('onset', {}).get('pcap')}, last "
                     f"{summary.get('onset', {}).get('cycles')} cycles):")
        for e in exchanges:
            port = f":{e['port']}" if e.get("port") else ""
            silent = f", silent for the last {e['silent_cycles']} cycle(s)" if e.get("silent_cycles") else ""
            macs = f", MAC {' -> '.join(e['macs'])}" if e.get("macs") else ""
            lines.append(f"  {e['probe']:<6} {e['address']}{port}: {e['sent']} sent, {e['answered']} answered"
                         f"{silent}{macs}")
    if summary.get("docker_events"):
        lines.append("docker events (latest last):")
        lines += [f"  {line}" for line in summary["docker_events"]]
    rec = summary.get("recovery")
    if rec:
        lines.append(f"recovery: {rec.get('headline')} ({rec.get('pcap')}, {rec.get('packets')} packets)")
        if rec.get("docker_events"):
            lines.append("docker events at the end of the freeze (latest last):")
            lines += [f"  {line}" for line in rec["docker_events"]]
    lines.append("collectors:")
    for name, status in (summary.get("collectors") or {}).items():
        if status.get("ok"):
            lines.append(f"  {name}: ok ({', '.join(status.get('files', []))})")
        else:
            lines.append(f"  {name}: {status.get('error')}")
    return "\n".join(lines) + "\n"
