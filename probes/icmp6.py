"""ICMPv6 echo over one raw ICMPv6 socket per sweep."""
from __future__ import annotations

from collections.abc import Sequence

from probes.echo import sweep_echo
from probes.exchange import Recorder
from probes.types import ProbeResult, Target

NAME = "icmp6"
FAMILY = 6
NEEDS_RAW = True
SPEC = None  # takes no spec
LAYER = "l3"  # the layer a failure of this probe points at (probes.types.LAYERS)


def sweep(targets: Sequence[Target], timeout_s: float, interface: str | None = None,
          recorder: Recorder | None = None) -> list[ProbeResult]:
    """Ping every IPv6 target once; results in input order."""
    return sweep_echo(6, NAME, targets, timeout_s, interface, recorder)
