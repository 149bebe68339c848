"""Pure analysis of a freeze's captured probe exchange and probe results: what was seen, in words an engineer uses."""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.forensics.recorder import Record, as_ethernet, normalize_address
from probes import PROBES, Layer

log = logging.getLogger(__name__)

# Finding codes, most telling first: the headline is the first one found in this order.
FINDING_CODES: tuple[str, ...] = (
    "ping_ok_tcp_dead",      # l4: ICMP answered, a TCP port did not
    "arp_ok_ping_dead",      # l3: ARP/NDP answered, ICMP did not
    "mac_changed",           # ARP/NDP answered with a different MAC than before
    "mac_conflict",          # two MACs answered for one address in one cycle
    "arp_no_reply",
    "ndp_no_reply",
    "icmp_unreachable",
    "icmp_no_reply",
    "icmp6_no_reply",
    "tcp_rst",
    "tcp_no_synack",
    "tcp_error",
    "probe_failed",          # a failing probe of a kind not covered above
)
_RANK = {code: i for i, code in enumerate(FINDING_CODES)}
# Probe kinds by the layer they declare (probes/<kind>.py): ARP/NDP at l2, the echoes at l3.
_L2 = tuple(k for k, p in PROBES.items() if p.LAYER == Layer.L2)
_ICMP = tuple(k for k, p in PROBES.items() if p.LAYER == Layer.L3)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing seen, as a code (see FINDING_CODES) and a sentence."""

    code: str
    probe: str
    address: str
    port: int | None
    text: str


@dataclass(frozen=True, slots=True)
class Exchange:
    """Requests and replies of one probe to one address over the recorded cycles."""

    probe: str
    address: str
    port: int | None
    sent: int
    answered: int
    cycles: int              # recorded cycles in which requests left
    silent_cycles: int       # trailing cycles with requests and no reply
    macs: tuple[str, ...]    # answering MACs (ARP/NDP), oldest first, distinct


@dataclass(frozen=True, slots=True)
class Analysis:
    """The result of `analyze`: a headline, the findings (most telling first) and per-probe counts."""

    headline: str
    findings: tuple[Finding, ...]
    exchanges: tuple[Exchange, ...] = field(default=())

    def codes(self) -> tuple[str, ...]:
        """The finding codes, in order."""
        return tuple(f.code for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"headline": self.headline,
                "findings": [asdict(f) for f in self.findings],
                "exchanges": [asdict(e) | {"macs": list(e.macs)} for e in self.exchanges]}


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


@dataclass(slots=True)
class _Parsed:
    mac: str | None = None          # ARP/NDP: the answering link-layer address
    icmp_kind: str | None = None    # "echo-reply", "unreachable", "echo-request", other type number
    tcp_port: int | None = None     # box-side TCP port
    tcp_flags: str | None = None    # "SA", "RA", "S", ...


def _parse(record: Record) -> _Parsed:
    """Dissect one recorded frame far enough for the analysis; never raises."""
    out = _Parsed()
    _time_s, direction, probe, _address, frame, linktype = record
    eth_bytes = as_ethernet(bytes(frame), int(linktype))
    if eth_bytes is None:
        return out
    try:
        # Importing these modules also binds their layers, so Ether() dissects down to ICMP/TCP/NDP.
        from scapy.layers.inet import ICMP, TCP
        from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6ND_NA, ICMPv6NDOptDstLLAddr
        from scapy.layers.l2 import ARP, Ether

        pkt = Ether(eth_bytes)
        if ARP in pkt:
            if pkt[ARP].op == 2:
                out.mac = str(pkt[ARP].hwsrc).lower()
        elif ICMPv6ND_NA in pkt:
            if ICMPv6NDOptDstLLAddr in pkt:
                out.mac = str(pkt[ICMPv6NDOptDstLLAddr].lladdr).lower()
            elif pkt.src != "00:00:00:00:00:00":
                out.mac = str(pkt.src).lower()
        elif ICMPv6EchoReply in pkt:
            out.icmp_kind = "echo-reply"
        elif ICMPv6DestUnreach in pkt:
            out.icmp_kind = "unreachable"
        elif TCP in pkt:
            tcp = pkt[TCP]
            out.tcp_port = int(tcp.dport if direction == "out" else tcp.sport)
            out.tcp_flags = str(tcp.flags)
        elif ICMP in pkt:
            icmp_type = int(pkt[ICMP].type)
            out.icmp_kind = {0: "echo-reply", 3: "unreachable", 8: "echo-request"}.get(icmp_type, str(icmp_type))
    except Exception as exc:  # noqa: BLE001 - scapy raises anything on a malformed frame; it must not stop the analysis
        log.debug("summary: cannot dissect a %s frame of probe %s: %s", direction, probe, exc)
    return out


def _exchanges(cycles: Sequence[Sequence[Record]]) -> tuple[dict[tuple[str, str, int | None], dict], list]:
    """Per (probe, address, port): per-cycle counts, MACs and ICMP kinds."""
    table: dict[tuple[str, str, int | None], dict[str, Any]] = {}
    for index, cycle in enumerate(cycles):
        for record in cycle:
            direction, probe, address = record[1], record[2], normalize_address(record[3])
            parsed = _parse(record) if (direction == "in" or probe == "tcp") else _Parsed()
            port = parsed.tcp_port if probe == "tcp" else None
            entry = table.setdefault((probe, address, port), {"per_cycle": {}})
            c = entry["per_cycle"].setdefault(index, {"out": 0, "in": 0, "macs": [], "icmp": [], "tcp": []})
            c["out" if direction == "out" else "in"] += 1
            if direction == "in":
                if parsed.mac:
                    c["macs"].append(parsed.mac)
                if parsed.icmp_kind:
                    c["icmp"].append(parsed.icmp_kind)
                if parsed.tcp_flags:
                    c["tcp"].append(parsed.tcp_flags)
    return table, list(range(len(cycles)))


def _distinct(items: Sequence[str]) -> tuple[str, ...]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return tuple(seen)


def _no_reply_text(probe: str, address: str, sent: int, silent: int) -> tuple[str, str]:
    cycles = f"{silent} cycle{'s' if silent != 1 else ''}"
    if probe == "arp":
        return "arp_no_reply", f"ARP {address}: no ARP reply: requests left, nothing came back ({sent} requests, {cycles})"
    if probe == "ndp":
        return "ndp_no_reply", (f"NDP {address}: no NDP reply: neighbour solicitations left, nothing came back "
                                f"({sent} requests, {cycles})")
    if probe == "icmp":
        return "icmp_no_reply", f"ICMP {address}: echo requests left, no reply ({sent} requests, {cycles})"
    if probe == "icmp6":
        return "icmp6_no_reply", f"ICMPv6 {address}: echo requests left, no reply ({sent} requests, {cycles})"
    return "probe_failed", f"{probe} {address}: requests left, nothing came back ({sent} requests, {cycles})"


def _tcp_finding(address: str, port: int | None, error: str | None) -> Finding:
    where = f"TCP {address} port {port}"
    err = (error or "").lower()
    if err == "timeout" or "timed out" in err:
        return Finding("tcp_no_synack", "tcp", address, port, f"{where}: no SYN-ACK (timeout)")
    if err == "refused" or "refused" in err or err == "rst":
        return Finding("tcp_rst", "tcp", address, port, f"{where}: RST (refused)")
    return Finding("tcp_error", "tcp", address, port, f"{where}: {error or 'failed'}")


def analyze(cycles: Sequence[Sequence[Record]], results: Sequence[Any] = (),
            known_macs: Mapping[str, str] | None = None) -> Analysis:
    """What the capture (records per cycle, oldest first) and the probe results say about one box.

    results: the box's latest probe results (objects or dicts with target, probe,
    port, ok, error, mac); known_macs: address -> MAC last seen before the freeze.
    """
    known = {normalize_address(a): m.lower() for a, m in (known_macs or {}).items() if m}
    table, indexes = _exchanges(cycles)
    findings: list[Finding] = []
    exchanges: list[Exchange] = []
    covered: set[tuple[str, str]] = set()
    for (probe, address, port), entry in sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        per_cycle = entry["per_cycle"]
        sent = sum(c["out"] for c in per_cycle.values())
        answered = sum(c["in"] for c in per_cycle.values())
        with_requests = [i for i in indexes if per_cycle.get(i, {}).get("out", 0) > 0]
        silent = 0
        for i in reversed(with_requests):
            if per_cycle[i]["in"]:
                break
            silent += 1
        macs = _distinct([m for i in indexes for m in per_cycle.get(i, {}).get("macs", [])])
        exchanges.append(Exchange(probe, address, port, sent, answered, len(with_requests), silent, macs))
        if probe == "tcp":
            continue  # TCP outcomes come from the probe results (the handshake is the kernel's)
        covered.add((probe, address))
        last_icmp = [k for i in indexes for k in per_cycle.get(i, {}).get("icmp", [])]
        if probe in _ICMP and last_icmp and last_icmp[-1] == "unreachable":
            findings.append(Finding("icmp_unreachable", probe, address, port,
                                    f"{'ICMP' if probe == 'icmp' else 'ICMPv6'} {address}: destination unreachable"))
        elif silent:
            code, text = _no_reply_text(probe, address, sum(per_cycle[i]["out"] for i in with_requests[-silent:]),
                                        silent)
            findings.append(Finding(code, probe, address, port, text))
        if probe in _L2:
            name = probe.upper()
            for i in indexes:
                cycle_macs = _distinct(per_cycle.get(i, {}).get("macs", []))
                if len(cycle_macs) > 1:
                    findings.append(Finding("mac_conflict", probe, address, port,
                                            f"{name} {address}: {' and '.join(cycle_macs)} answered in one cycle "
                                            "(address conflict?)"))
                    break
            before = known.get(address)
            # One MAC per cycle (its last answer), so a conflict inside a cycle is not also a "change".
            cycle_macs_seq: list[str] = []
            for i in indexes:
                if per_cycle.get(i, {}).get("macs") and (not cycle_macs_seq
                                                         or cycle_macs_seq[-1] != per_cycle[i]["macs"][-1]):
                    cycle_macs_seq.append(per_cycle[i]["macs"][-1])
            if cycle_macs_seq:
                old = cycle_macs_seq[-2] if len(cycle_macs_seq) > 1 else before
                new = cycle_macs_seq[-1]
                if old and old != new:
                    findings.append(Finding("mac_changed", probe, address, port,
                                            f"{name} answered with a different MAC than before for {address} "
                                            f"({old} -> {new})"))
    # Probe results fill in what the capture does not show (TCP, or no recorder wired).
    ok_by_probe: dict[str, bool] = {}
    for r in results:
        probe = str(_get(r, "probe"))
        address = normalize_address(str(_get(r, "target")))
        ok = bool(_get(r, "ok"))
        ok_by_probe[probe] = ok_by_probe.get(probe, True) and ok
        if ok:
            mac = _get(r, "mac")
            if probe in _L2 and mac and (probe, address) not in covered:
                old = known.get(address)
                if old and old != mac.lower():
                    findings.append(Finding("mac_changed", probe, address, None,
                                            f"{probe.upper()} answered with a different MAC than before for "
                                            f"{address} ({old} -> {mac.lower()})"))
            continue
        if probe == "tcp":
            findings.append(_tcp_finding(address, _get(r, "port"), _get(r, "error")))
        elif (probe, address) not in covered:
            code, _ = _no_reply_text(probe, address, 0, 0)
            err = _get(r, "error") or "failed"
            label = {"arp": "ARP", "ndp": "NDP", "icmp": "ICMP", "icmp6": "ICMPv6"}.get(probe, probe)
            text = {"arp_no_reply": f"ARP {address}: no ARP reply ({err})",
                    "ndp_no_reply": f"NDP {address}: no NDP reply ({err})",
                    "icmp_no_reply": f"ICMP {address}: no echo reply ({err})",
                    "icmp6_no_reply": f"ICMPv6 {address}: no echo reply ({err})"}.get(code, f"{label} {address}: {err}")
            findings.append(Finding(code, probe, address, None, text))
    # Layer verdicts from what answered.
    icmp_ok = any(ok_by_probe.get(p) for p in _ICMP) or any(
        e.probe in _ICMP and e.answered and not e.silent_cycles for e in exchanges)
    l2_ok = any(ok_by_probe.get(p) for p in _L2) or any(
        e.probe in _L2 and e.answered and not e.silent_cycles for e in exchanges)
    icmp_dead = any(f.code in ("icmp_no_reply", "icmp6_no_reply", "icmp_unreachable") for f in findings)
    tcp_dead = [f for f in findings if f.probe == "tcp"]
    if icmp_ok and not icmp_dead and tcp_dead:
        findings.append(Finding("ping_ok_tcp_dead", "tcp", tcp_dead[0].address, tcp_dead[0].port,
                                "ping answered, TCP dead"))
    elif l2_ok and icmp_dead and not any(f.code in ("arp_no_reply", "ndp_no_reply") for f in findings):
        findings.append(Finding("arp_ok_ping_dead", "icmp", "", None, "ARP answered, ping dead"))
    findings.sort(key=lambda f: _RANK.get(f.code, len(_RANK)))
    return Analysis(headline=headline(findings), findings=tuple(findings), exchanges=tuple(exchanges))


def headline(findings: Sequence[Finding]) -> str:
    """One line: the most telling finding(s), or that nothing abnormal was seen."""
    if not findings:
        return "nothing abnormal seen in the capture or the probe results"
    first = findings[0]
    if first.code in ("ping_ok_tcp_dead", "arp_ok_ping_dead") and len(findings) > 1:
        text = f"{first.text}: {findings[1].text}"
        rest = len(findings) - 2
    else:
        text = first.text
        rest = len(findings) - 1
    return text + (f" (+{rest} more)" if rest > 0 else "")
