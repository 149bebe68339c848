"""ARP who-has (IPv4, L2): broadcast requests from the interface's own MAC and address, replies give the MAC."""
from __future__ import annotations

import socket
from collections.abc import Sequence

from probes import routing
from probes.exchange import Recorder
from probes.l2 import Built, sweep_l2
from probes.matching import ETH_P_ARP, ArpMatcher, arp_request, arp_template
from probes.types import ProbeResult, Target

NAME = "arp"
FAMILY = 4
NEEDS_RAW = True
SPEC = None  # takes no spec
LAYER = "l2"  # the layer a failure of this probe points at (probes.types.LAYERS)


def _build(route: routing.Route, own_mac: bytes, own_address: bytes, index_by_address: dict[bytes, int]) -> Built:
    template = arp_template(own_mac, own_address)
    matcher = ArpMatcher(index_by_address, own_address, own_mac)
    return (lambda target: arp_request(template, target)), matcher.match


def sweep(targets: Sequence[Target], timeout_s: float, interface: str | None = None,
          recorder: Recorder | None = None) -> list[ProbeResult]:
    """ARP-probe every IPv4 target once; results in input order, with the answering MAC."""
    return sweep_l2(NAME, ETH_P_ARP, socket.AF_INET, _build, targets, timeout_s, interface, recorder)
