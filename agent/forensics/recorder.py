"""Packet flight recorder: the last few probe cycles' requests and replies, kept in memory, dumped to pcap on demand.

Hot path: `FlightRecorder.record` (the `recorder=` hook of `probes.sweep`) only
appends one tuple to a deque. Everything else (sealing a cycle, enforcing the
byte bound, picking one box's packets out, writing the pcap) happens once per
cycle or once per freeze, off the per-packet path.

One pcap file per dump, link type 1 (Ethernet): frames recorded as raw IP
(link type 101, from the ICMP raw sockets; or 228/229) get a fake Ethernet
header with all-zero MACs (00:00:00:00:00:00, so nobody mistakes it for a real
one) and the EtherType of their IP version. One file is easier to read than
one per link type, and libpcap cannot mix link types in one pcap.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import struct
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from agent import atomic

log = logging.getLogger(__name__)

# One recorded packet: (time_s, direction "out"|"in", probe, address, frame_bytes, linktype).
Record = tuple[float, str, str, str, bytes, int]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101       # raw IPv4 or IPv6, version from the first nibble
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
_RAW_IP_LINKTYPES = frozenset({LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6})
FAKE_MAC = b"\x00" * 6
_ETHERTYPE_IPV4 = b"\x08\x00"
_ETHERTYPE_IPV6 = b"\x86\xdd"
_PCAP_SNAPLEN = 65535

DEFAULT_CYCLES = 5
DEFAULT_MAX_BYTES = 32 * 1024 * 1024          # frame bytes over all cycles, all boxes
DEFAULT_MAX_BYTES_PER_BOX = 1024 * 1024       # frame bytes of one box in one dump (newest kept)
DEFAULT_MAX_RECORDS_PER_CYCLE = 200_000       # safety net when end_cycle() is never called


def normalize_address(address: str) -> str:
    """Canonical text of an IP address (IPv6 compressed, lower case); other strings unchanged."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


@dataclass(frozen=True, slots=True)
class DumpResult:
    """What one pcap dump wrote."""

    path: str
    packets: int
    skipped: int        # records of a link type that cannot be written as Ethernet
    bytes_written: int


def as_ethernet(frame: bytes, linktype: int) -> bytes | None:
    """The frame as an Ethernet frame (fake zero MACs for raw IP); None for a link type we cannot convert."""
    if linktype == LINKTYPE_ETHERNET:
        return frame
    if linktype in _RAW_IP_LINKTYPES and frame:
        version = frame[0] >> 4
        if linktype == LINKTYPE_IPV4 or (linktype == LINKTYPE_RAW and version == 4):
            return FAKE_MAC + FAKE_MAC + _ETHERTYPE_IPV4 + frame
        if linktype == LINKTYPE_IPV6 or (linktype == LINKTYPE_RAW and version == 6):
            return FAKE_MAC + FAKE_MAC + _ETHERTYPE_IPV6 + frame
    return None


def write_pcap(path: str, records: Iterable[Record]) -> DumpResult:
    """Write records to a classic pcap (microsecond timestamps, link type Ethernet); atomically replaces path."""
    packets = skipped = 0
    tmp = f"{path}.tmp.{os.getpid()}.{threading.get_ident()}"
    with atomic.open_private_file(tmp, "wb") as f:
        # Native-endian classic pcap header (magic a1b2c3d4, version 2.4), as libpcap writes it.
        f.write(struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, _PCAP_SNAPLEN, LINKTYPE_ETHERNET))
        for time_s, _direction, _probe, _address, frame, linktype in sorted(records, key=lambda r: r[0]):
            eth = as_ethernet(bytes(frame), int(linktype))
            if eth is None:
                skipped += 1
                continue
            sec = int(time_s)
            usec = int(round((time_s - sec) * 1_000_000))
            if usec >= 1_000_000:
                sec, usec = sec + 1, usec - 1_000_000
            caplen = min(len(eth), _PCAP_SNAPLEN)
            f.write(struct.pack("=IIII", sec, usec, caplen, len(eth)))
            f.write(eth[:caplen])
            packets += 1
        size = f.tell()
    os.replace(tmp, path)
    return DumpResult(path=path, packets=packets, skipped=skipped, bytes_written=size)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An immutable view of the recorder's cycles at one moment: cheap to take, filtered later (in a worker)."""

    cycles: tuple[tuple[Record, ...], ...]   # oldest first; the last one may be the unsealed current cycle

    def for_addresses(self, addresses: Iterable[str], max_bytes: int = DEFAULT_MAX_BYTES_PER_BOX,
                      ) -> tuple[tuple[Record, ...], ...]:
        """The records of these addresses, per cycle (empty cycles dropped), newest kept within max_bytes."""
        wanted = {normalize_address(a) for a in addresses}
        # Each distinct address spelling is normalized once (not once per record).
        canon: dict[str, bool] = {}

        def is_mine(address: str) -> bool:
            hit = canon.get(address)
            if hit is None:
                hit = canon[address] = address in wanted or normalize_address(address) in wanted
            return hit

        picked: list[list[Record]] = []
        for cycle in self.cycles:
            mine = [r for r in cycle if is_mine(r[3])]
            if mine:
                picked.append(mine)
        # Byte bound per box: drop oldest records first.
        total = 0
        kept_rev: list[list[Record]] = []
        for box_cycle in reversed(picked):
            keep: list[Record] = []
            for r in reversed(box_cycle):
                total += len(r[4])
                if total > max_bytes:
                    break
                keep.append(r)
            if keep:
                kept_rev.append(list(reversed(keep)))
            if total > max_bytes:
                break
        return tuple(tuple(c) for c in reversed(kept_rev))

    def records_for(self, addresses: Iterable[str], max_bytes: int = DEFAULT_MAX_BYTES_PER_BOX) -> list[Record]:
        """The records of these addresses, flat, oldest first."""
        return [r for cycle in self.for_addresses(addresses, max_bytes) for r in cycle]


class FlightRecorder:
    """Ring of the last `cycles` probe cycles' packets for every box; `record` is the sweep's recorder hook."""

    def __init__(self, box_addresses: Mapping[str, Sequence[str]] | None = None, *,
                 cycles: int = DEFAULT_CYCLES, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_bytes_per_box: int = DEFAULT_MAX_BYTES_PER_BOX,
                 max_records_per_cycle: int = DEFAULT_MAX_RECORDS_PER_CYCLE) -> None:
        if cycles < 1:
            raise ValueError(f"cycles must be >= 1, got {cycles}")
        if max_bytes < 1 or max_bytes_per_box < 1:
            raise ValueError(f"max_bytes and max_bytes_per_box must be >= 1, got {max_bytes}, {max_bytes_per_box}")
        self.cycles = cycles
        self.max_bytes = max_bytes
        self.max_bytes_per_box = max_bytes_per_box
        self._max_records = max_records_per_cycle
        self._current: deque[Record] = deque(maxlen=max_records_per_cycle)
        self._sealed: deque[tuple[tuple[Record, ...], int]] = deque()   # (records, frame bytes)
        self._sealed_bytes = 0
        self._lock = threading.Lock()
        self._boxes: dict[str, tuple[str, ...]] = {}
        self.set_boxes(box_addresses or {})
        # Bound method of the deque: the hook below stays one call + one append.
        self._append = self._current.append

    def set_boxes(self, box_addresses: Mapping[str, Sequence[str]]) -> None:
        """Set box name -> its probed addresses (the address -> box map used when dumping)."""
        self._boxes = {box: tuple(normalize_address(a) for a in addrs) for box, addrs in box_addresses.items()}

    def addresses_of(self, box: str) -> tuple[str, ...]:
        """The addresses recorded for box; KeyError naming the known boxes otherwise."""
        try:
            return self._boxes[box]
        except KeyError:
            raise KeyError(f"flight recorder: unknown box {box!r} (known: {', '.join(sorted(self._boxes))})") from None

    def record(self, time_s: float, direction: str, probe: str, address: str, frame_bytes: bytes,
               linktype: int) -> None:
        """The probes' recorder hook: keep one packet (nothing else happens here)."""
        self._append((time_s, direction, probe, address, frame_bytes, linktype))

    __call__ = record

    def end_cycle(self) -> None:
        """Seal the current cycle into the ring; drop the oldest cycles beyond `cycles` or `max_bytes`."""
        with self._lock:
            current = self._current
            self._current = deque(maxlen=self._max_records)
            self._append = self._current.append
            sealed = tuple(current)
            if len(sealed) == self._max_records:
                log.warning("flight recorder: a cycle hit %d records; older packets of it were dropped "
                            "(is end_cycle() called after every sweep?)", self._max_records)
            size = sum(len(r[4]) for r in sealed)
            self._sealed.append((sealed, size))
            self._sealed_bytes += size
            while len(self._sealed) > self.cycles or (self._sealed_bytes > self.max_bytes and len(self._sealed) > 1):
                _, dropped = self._sealed.popleft()
                self._sealed_bytes -= dropped

    def snapshot(self) -> Snapshot:
        """All cycles now held (sealed ones plus the current one); O(cycles), no copying of records."""
        with self._lock:
            cycles = [c for c, _ in self._sealed]
            current: tuple[Record, ...] = ()
            for _attempt in range(5):
                try:
                    current = tuple(self._current)
                    break
                except RuntimeError:  # a sweep appended while we copied: try again
                    continue
        if current:
            cycles.append(current)
        return Snapshot(cycles=tuple(cycles))

    @property
    def held_bytes(self) -> int:
        """Frame bytes in the sealed cycles."""
        return self._sealed_bytes

    def records(self, box: str) -> list[Record]:
        """The box's recorded packets, oldest first."""
        return self.snapshot().records_for(self.addresses_of(box), self.max_bytes_per_box)

    def dump(self, box: str, path: str) -> DumpResult:
        """Write the box's recorded packets to a pcap file at path."""
        result = write_pcap(path, self.records(box))
        log.debug("flight recorder: box %s: %d packets to %s", box, result.packets, path)
        return result
