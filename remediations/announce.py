"""Announce an address from inside a container's network namespace: gratuitous ARP and unsolicited NA."""
from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
SIOCGIFHWADDR = 0x8927
ETH_P_ALL = 0x0003

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def garp_frame(mac: str, ipv4: str) -> bytes:
    """A broadcast gratuitous ARP request: sender and target are IPV4 at MAC."""
    from scapy.layers.l2 import ARP, Ether
    return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") /
                 ARP(op=1, hwsrc=mac, psrc=ipv4, hwdst="00:00:00:00:00:00", pdst=ipv4))


def unsolicited_na_frame(mac: str, ipv6: str) -> bytes:
    """An unsolicited neighbour advertisement for IPV6 at MAC to all-nodes, override flag set."""
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
    from scapy.layers.l2 import Ether
    return bytes(Ether(src=mac, dst="33:33:00:00:00:01") /
                 IPv6(src=ipv6, dst="ff02::1", hlim=255) /
                 ICMPv6ND_NA(tgt=ipv6, R=0, S=0, O=1) /
                 ICMPv6NDOptDstLLAddr(lladdr=mac))


def _interface_with_mac(mac: str) -> str:
    """Name of the interface carrying MAC in the calling thread's namespace."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _, name in socket.if_nameindex():
            req = struct.pack("256s", name.encode()[:15])
            try:
                res = fcntl.ioctl(probe.fileno(), SIOCGIFHWADDR, req)
            except OSError:
                continue
            if ":".join(f"{b:02x}" for b in res[18:24]) == mac.lower():
                return name
    finally:
        probe.close()
    raise OSError(f"no interface with MAC {mac} in the container's namespace")


def _send_in_ns(ns_path: str, mac: str, frames: list[tuple[str, bytes]], result: dict[str, Any]) -> None:
    """Send FRAMES from the interface carrying MAC in the namespace NS_PATH (entered by `_in_ns`)."""
    _in_ns(ns_path, lambda r: _send_frames(mac, frames, r), result)


def _send_frames(mac: str, frames: list[tuple[str, bytes]], result: dict[str, Any]) -> None:
    """In the calling thread's namespace: FRAMES out of the interface carrying MAC; "label@ifname" into
    result["sent"]."""
    ifname = _interface_with_mac(mac)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        sock.bind((ifname, 0))
        for label, frame in frames:
            sock.send(frame)
            result.setdefault("sent", []).append(f"{label}@{ifname}")
    finally:
        sock.close()


SIOCGIFADDR = 0x8915


def _macs_by_address(result: dict[str, Any]) -> None:
    """In the calling thread's namespace: interface name -> (MAC, primary IPv4 or None), into result["ifs"]."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifs = {}
        for _, name in socket.if_nameindex():
            req = struct.pack("256s", name.encode()[:15])
            try:
                hw = fcntl.ioctl(probe.fileno(), SIOCGIFHWADDR, req)
            except OSError:
                continue
            try:
                v4: str | None = socket.inet_ntoa(fcntl.ioctl(probe.fileno(), SIOCGIFADDR, req)[20:24])
            except OSError:   # EADDRNOTAVAIL: no IPv4 address on it
                v4 = None
            ifs[name] = (":".join(f"{b:02x}" for b in hw[18:24]), v4)
        result["ifs"] = ifs
    finally:
        probe.close()


def _in_ns(ns_path: str, work: Callable[[dict[str, Any]], None], result: dict[str, Any]) -> None:
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(ns_path, os.O_RDONLY)
        try:
            _setns(target)
            try:
                work(result)
            finally:
                _setns(own)
        finally:
            os.close(target)
    except OSError as exc:
        result["error"] = exc
    finally:
        os.close(own)


def mac_of_address(pid: int, ipv4: str | None, ipv6: str | None) -> str | None:
    """The MAC of the interface carrying IPV4 (else IPV6) in process PID's network namespace, read there
    (SIOCGIFHWADDR); None when no interface carries them. OSError when the namespace cannot be entered.

    Podman 4.3 sometimes inspects a restarted container with an empty NetworkSettings.Networks.*.MacAddress
    (measured here): the namespace is the one source that cannot be stale.
    """
    result: dict[str, Any] = {}
    worker = threading.Thread(target=_in_ns, args=(f"/proc/{pid}/ns/net", _macs_by_address, result),
                              name=f"macs-{pid}", daemon=True)
    worker.start()
    worker.join(timeout=10)
    if "error" in result:
        raise result["error"]
    ifs: dict[str, tuple[str, str | None]] = result.get("ifs", {})
    for mac, v4 in ifs.values():
        if ipv4 and v4 == ipv4:
            return mac
    if ipv6:
        want = socket.inet_pton(socket.AF_INET6, ipv6.split("%", 1)[0]).hex()
        try:
            with open(f"/proc/{pid}/net/if_inet6", encoding="ascii") as fh:
                for line in fh:
                    fields = line.split()
                    if len(fields) >= 6 and fields[0] == want and fields[5] in ifs:
                        return ifs[fields[5]][0]
        except OSError:
            return None
    return None


IFA_F_TENTATIVE = 0x40     # linux/if_addr.h: the address is under Duplicate Address Detection
IFA_F_DADFAILED = 0x08     # linux/if_addr.h: DAD found a duplicate; the address will not be used
DAD_WAIT_S = 3.0           # RFC 4862 DAD: up to 1 s MAX_RTR_SOLICITATION_DELAY + 1 RetransTimer of 1 s, margin
DAD_POLL_S = 0.1


def ipv6_flags(pid: int, ipv6: str) -> int | None:
    """IFA_F_* flags of IPV6 in process PID's network namespace (/proc/PID/net/if_inet6), None when absent."""
    want = socket.inet_pton(socket.AF_INET6, ipv6.split("%", 1)[0]).hex()
    try:
        with open(f"/proc/{pid}/net/if_inet6", encoding="ascii") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) >= 5 and fields[0] == want:
                    return int(fields[4], 16)
    except OSError:
        return None
    return None


def wait_ipv6_usable(pid: int, ipv6: str, timeout_s: float = DAD_WAIT_S,
                     clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> str:
    """Wait until IPV6 in PID's namespace has left Duplicate Address Detection; what was seen, in a few words.

    A restarted or reconnected container's IPv6 address is tentative for about a second (RFC 4862 5.4;
    netavark leaves DAD on, dockerd sets IFA_F_NODAD): it receives nothing and must not be announced
    (RFC 4861 7.2.6) until DAD ends, so the announce and the verification after it would see a dead box.
    """
    end = clock() + timeout_s
    while True:
        flags = ipv6_flags(pid, ipv6)
        if flags is None:
            return f"{ipv6} not on the container"
        if flags & IFA_F_DADFAILED:
            return f"{ipv6} DAD failed (duplicate address)"
        if not flags & IFA_F_TENTATIVE:
            return f"{ipv6} usable"
        if clock() >= end:
            return f"{ipv6} still tentative after {timeout_s:g} s"
        sleep(DAD_POLL_S)


def announce_from_pid(pid: int, mac: str, ipv4: str | None, ipv6: str | None, count: int = 2) -> list[str]:
    """Send gratuitous ARP / unsolicited NA for the addresses from process PID's network namespace."""
    frames: list[tuple[str, bytes]] = []
    for _ in range(count):
        if ipv4:
            frames.append((f"garp {ipv4}", garp_frame(mac, ipv4)))
        if ipv6:
            frames.append((f"na {ipv6}", unsolicited_na_frame(mac, ipv6)))
    if not frames:
        return []
    result: dict[str, Any] = {}
    # A throwaway thread: setns affects only the calling thread, so the caller's namespace is never at risk.
    worker = threading.Thread(target=_send_in_ns, args=(f"/proc/{pid}/ns/net", mac, frames, result),
                              name=f"announce-{pid}", daemon=True)
    worker.start()
    worker.join(timeout=10)
    if "error" in result:
        raise result["error"]
    sent = result.get("sent", [])
    # Each address is sent `count` times; report each once.
    return sorted(set(s for s in sent), key=sent.index)
