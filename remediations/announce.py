"""Announce an address from inside a container's network namespace: gratuitous ARP and unsolicited NA."""
from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import socket
import struct
import threading

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


def _send_in_ns(ns_path: str, mac: str, frames: list[tuple[str, bytes]], result: dict) -> None:
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(ns_path, os.O_RDONLY)
        try:
            _setns(target)
            try:
                ifname = _interface_with_mac(mac)
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                try:
                    sock.bind((ifname, 0))
                    for label, frame in frames:
                        sock.send(frame)
                        result.setdefault("sent", []).append(f"{label}@{ifname}")
                finally:
                    sock.close()
            finally:
                _setns(own)
        finally:
            os.close(target)
    except OSError as exc:
        result["error"] = exc
    finally:
        os.close(own)


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
    result: dict = {}
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
