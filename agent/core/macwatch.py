"""MAC memory: the last MAC that answered ARP/NDP per (box, address), a record when it changes, and address conflicts.

Two different MACs answering the same ARP/NDP request within one sweep (the probes keep every
reply: ProbeResult.macs) is an address conflict, open until a sweep hears one MAC again: a
state of its own, not a MAC change. A MAC that differs from one sweep to the next is a MAC
change (a Podman reconnect or a restart legitimately gives a new MAC).
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from probes import PROBES, Layer, ProbeResult

# The kinds whose answers carry the answering MAC: the layer-2 probes (ARP, NDP).
L2_PROBES: tuple[str, ...] = tuple(k for k, p in PROBES.items() if p.LAYER == Layer.L2)


@dataclass(frozen=True, slots=True)
class MacChange:
    """ARP/NDP for address answered with `new` where it answered with `old` before."""

    box: str
    address: str
    old: str
    new: str
    time_s: float


@dataclass(frozen=True, slots=True)
class AddressConflict:
    """ARP/NDP for address answered from several MACs in one sweep (open), or from one again (closed)."""

    box: str
    address: str
    macs: tuple[str, ...]   # open: every MAC that answered; closed: the ones that had, when it opened
    open: bool
    time_s: float


def _canon_address(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


class MacWatch:
    """Last answering MAC per (box, address); `observe` returns the changes. No I/O: the caller persists to_json()."""

    def __init__(self, last: Mapping[tuple[str, str], str] | None = None) -> None:
        self._last: dict[tuple[str, str], str] = dict(last or {})
        self._conflicts: dict[tuple[str, str], tuple[str, ...]] = {}

    def observe_conflicts(self, box: str, results: Iterable[ProbeResult]) -> list[AddressConflict]:
        """Feed one cycle's results of a box; the conflicts that opened, changed their MACs, or closed.

        An address answered from two or more MACs opens (or keeps) a conflict; answered from one
        MAC it closes; unanswered, the conflict stays as it was (nothing new is known).
        """
        out: list[AddressConflict] = []
        for r in results:
            if r.probe not in L2_PROBES or not r.ok:
                continue
            macs = tuple(dict.fromkeys(m.lower() for m in r.macs if m))
            key = (box, _canon_address(r.target))
            old = self._conflicts.get(key)
            time_s = float(r.time_s)
            if len(macs) > 1:
                if old is None or set(old) != set(macs):
                    out.append(AddressConflict(box, key[1], macs, True, time_s))
                self._conflicts[key] = macs
            elif old is not None:
                del self._conflicts[key]
                out.append(AddressConflict(box, key[1], old, False, time_s))
        return out

    def conflicts(self, box: str) -> dict[str, tuple[str, ...]]:
        """address -> the MACs answering it, for BOX's open address conflicts."""
        return {address: macs for (b, address), macs in self._conflicts.items() if b == box}

    def observe(self, box: str, results: Iterable[ProbeResult]) -> list[MacChange]:
        """Feed one cycle's results of a box; failed and non-ARP/NDP results are ignored."""
        changes: list[MacChange] = []
        for r in results:
            if r.probe not in L2_PROBES or not r.ok or not r.mac:
                continue
            if len(set(r.macs)) > 1:
                continue   # several answered: an address conflict (observe_conflicts), not a change
            mac = r.mac.lower()
            key = (box, _canon_address(r.target))
            old = self._last.get(key)
            if old is not None and old != mac:
                changes.append(MacChange(box=box, address=key[1], old=old, new=mac, time_s=float(r.time_s)))
            self._last[key] = mac
        return changes

    def last(self, box: str) -> dict[str, str]:
        """address -> last MAC seen for box (what evidence bundles call known_macs)."""
        return {address: mac for (b, address), mac in self._last.items() if b == box}

    def forget(self, keep_boxes: Iterable[str]) -> None:
        """Drop boxes no longer configured."""
        keep = set(keep_boxes)
        self._last = {k: v for k, v in self._last.items() if k[0] in keep}
        self._conflicts = {k: v for k, v in self._conflicts.items() if k[0] in keep}

    def to_json(self) -> dict[str, dict[str, str]]:
        """{box: {address: mac}}, for the caller to persist."""
        out: dict[str, dict[str, str]] = {}
        for (box, address), mac in sorted(self._last.items()):
            out.setdefault(box, {})[address] = mac
        return out

    @classmethod
    def from_json(cls, data: Any) -> MacWatch:
        """Restore from to_json(); ValueError naming what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError(f"macwatch state: expected an object of boxes, got {type(data).__name__}")
        last: dict[tuple[str, str], str] = {}
        for box, addresses in data.items():
            if not isinstance(addresses, Mapping):
                raise ValueError(f"macwatch state: box {box!r}: expected an object of address -> MAC")
            for address, mac in addresses.items():
                if not isinstance(mac, str):
                    raise ValueError(f"macwatch state: box {box!r} address {address!r}: MAC must be a string")
                last[(str(box), _canon_address(str(address)))] = mac.lower()
        return cls(last)

    def restore(self, data: Any) -> None:
        """Replace the memory with to_json() data, in place (whoever holds this MacWatch reads the restored one);
        ValueError naming what is wrong (the memory is then unchanged)."""
        self._last = MacWatch.from_json(data)._last
