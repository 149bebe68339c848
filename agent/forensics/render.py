"""What a human reads of a bundle: summary.txt from summary.json, and the captures decoded by their link type."""
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
    tcp_seen = [f["text"] for f in findings if f.get("probe") == "tcp" and f.get("code") != "ping_ok_tcp_dead"]
    if tcp_seen and not any(e.get("probe") == "tcp" for e in exchanges):
        # The TCP probe uses the kernel's connect(): its SYN/SYN-ACK/RST are not in the recorder's capture.
        lines.append("TCP: not in the capture (the probe connects through the kernel); the TCP probe saw:")
        lines += [f"  - {text}" for text in tcp_seen]
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
    collectors = summary.get("collectors") or {}
    for name, status in collectors.items():
        if status.get("ok"):
            lines.append(f"  {name}: ok ({', '.join(status.get('files', []))})")
        elif not status.get("target_gone"):
            lines.append(f"  {name}: {status.get('error')}")
    gone = {n: s for n, s in collectors.items() if s.get("target_gone")}
    if gone:   # not errors: the box changed under the collector (e.g. restart_container ran meanwhile)
        lines.append("target gone during collection (not errors):")
        lines += [f"  {name}: {s.get('error')}" for name, s in gone.items()]
    return "\n".join(lines) + "\n"


# pcap link types (https://www.tcpdump.org/linktypes.html) -> the scapy layer that dissects them.
LINKTYPE_NAMES = {1: "Ethernet", 101: "raw IP", 228: "raw IPv4", 229: "raw IPv6"}


def _dissector(linktype: int) -> Any:
    """The scapy class for a capture's link type; ValueError naming it when we do not decode it."""
    # Importing the layers binds ICMP/TCP/ARP/NDP under Ether and IP, so the summaries go down to them.
    from scapy.layers import inet, inet6, l2

    if linktype == 1:
        return l2.Ether
    if linktype in (101, 228):
        return inet.IP if linktype == 228 else _RawIP
    if linktype == 229:
        return inet6.IPv6
    raise ValueError(f"link type {linktype} is not decoded (Ethernet 1, raw IP 101/228/229 are)")


def _RawIP(data: bytes) -> Any:  # named as the scapy class it stands in for: a raw IP packet of either version
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6

    return IPv6(data) if data and data[0] >> 4 == 6 else IP(data)


def decode_pcap(path: str, around_s: float | None, packets: int) -> tuple[str, list[str]]:
    """(link type name, summary lines) of a classic pcap, times relative to around_s, at most `packets` centred on it.

    Each packet is dissected with the class of the file's own link type; raises OSError/ValueError on a bad file.
    """
    from scapy.utils import RawPcapReader

    with RawPcapReader(path) as reader:
        linktype = int(reader.linktype)
        scale = 1e9 if getattr(reader, "nano", False) else 1e6
        records = [(data, meta.sec + meta.usec / scale) for data, meta in reader]
    cls = _dissector(linktype)
    name = LINKTYPE_NAMES.get(linktype, str(linktype))
    if not records:
        return name, ["  (no packets recorded)"]
    times = [t for _, t in records]
    base = times[0] if around_s is None else around_s
    first_after = next((i for i, t in enumerate(times) if t >= base), len(times))
    lo = max(0, min(first_after - packets // 2, len(times) - packets))
    hi = min(len(times), lo + packets)
    lines = [f"  ... {lo} earlier packet(s)"] if lo else []
    lines += [f"  {times[i] - base:+9.3f}s  {cls(records[i][0]).summary()}" for i in range(lo, hi)]
    if hi < len(times):
        lines.append(f"  ... {len(times) - hi} later packet(s)")
    return name, lines
