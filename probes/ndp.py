"""NDP neighbour solicitation (IPv6, L2): NS to the solicited-node group with our link-layer address."""
from __future__ import annotations

import socket
from collections.abc import Sequence

from probes import routing
from probes.exchange import Recorder
from probes.l2 import Built, sweep_l2
from probes.matching import ETH_P_IPV6, NdpMatcher, ndp_solicit, ndp_template
from probes.types import ProbeResult, Target

NAME = "ndp"
FAMILY = 6
NEEDS_RAW = True
SPEC = None  # takes no spec
LAYER = "l2"  # the layer a failure of this probe points at (probes.types.LAYERS)


def _build(route: routing.Route, own_mac: bytes, own_address: bytes, index_by_address: dict[bytes, int]) -> Built:
    template = ndp_template(own_mac, own_address)
    matcher = NdpMatcher(index_by_address, own_address)
    return (lambda target: ndp_solicit(template, target)), matcher.match


def sweep(targets: Sequence[Target], timeout_s: float, interface: str | None = None,
          recorder: Recorder | None = None) -> list[ProbeResult]:
    """Solicit every IPv6 target once; results in input order, with the answering MAC."""
    return sweep_l2(NAME, ETH_P_IPV6, socket.AF_INET6, _build, targets, timeout_s, interface, recorder)
