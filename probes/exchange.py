"""The send/receive loop shared by the packet probes: paced sending, poll-driven receiving, kernel timestamps.

One socket, many requests: requests go out in small bursts at a fixed packet
rate (so neither our socket buffers nor the receiving side's backlog overflow),
replies are drained between bursts, and the loop ends as soon as every request
is answered (plus `linger_s`, for the L2 probes) or the last request's timeout has
passed. The first in-time match for a request wins; a later in-time match from
another MAC is kept in `Outcome.macs` (two hosts answering one ARP/NDP request: an
address conflict); other duplicates and late replies are ignored.

A request still unanswered after RESEND_SHARE of the timeout is sent once more (as
fping and arping retry): on a lossy link one lost frame is not a failed probe. The
timeout still counts from the first send; an answer after the resend is timed from it.

Time: the loop runs on the monotonic clock (a wall-clock step during a sweep can neither
stretch a wait to an hour nor make every reply "late"); stamps are turned into wall-clock
time with one offset per sweep, so an RTT is a monotonic difference. A kernel receive
stamp (CLOCK_REALTIME) is used only when it falls between the sweep's start and now on
that scale, else the reply is timed when read (the wall clock stepped, or a process-local
clock such as libfaketime's disagrees with the kernel's).
"""
from __future__ import annotations

import errno
import logging
import select
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from probes.matching import Match

log = logging.getLogger(__name__)

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
RCVBUF_BYTES = 16 * 1024 * 1024
SNDBUF_BYTES = 4 * 1024 * 1024
_TIMESPEC = struct.Struct("qq")
_ANC_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)
_RETRY_ERRNOS = (errno.ENOBUFS, errno.EAGAIN)
# A kernel receive stamp and our reading of the clocks may disagree by this much (two clock reads apart).
KERNEL_STAMP_SLACK_S = 0.005
RESEND_SHARE = 0.5   # resend an unanswered request once, this share of the timeout after its first send
_UNREACHABLE_ERRNOS = (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN, errno.EADDRNOTAVAIL)

# recorder(time_s, direction, probe, address, frame_bytes, linktype)
Recorder = Callable[[float, str, str, str, bytes, int], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one request: when it left, when (and how) it was answered."""

    sent_s: float | None     # wall clock when sent, None if it could not be sent
    answered_s: float | None  # wall clock of the matching reply (kernel receive timestamp)
    error: str | None        # None: answered fine; else "timeout", "unreachable", "send failed: ..."
    mac: str | None
    macs: tuple[str, ...] = ()   # every MAC that answered in time, the first first (ARP/NDP)


def tune_socket(sock: socket.socket) -> None:
    """Non-blocking, large buffers (forced as root), kernel receive timestamps."""
    sock.setblocking(False)
    for force, plain, size in ((SO_RCVBUFFORCE, socket.SO_RCVBUF, RCVBUF_BYTES),
                               (SO_SNDBUFFORCE, socket.SO_SNDBUF, SNDBUF_BYTES)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, plain, size)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def _wall_clock_recorder(recorder: Recorder, wall_offset_s: float) -> Recorder:
    """RECORDER taking the loop's monotonic stamps as wall-clock time."""
    def record(time_s: float, direction: str, probe: str, address: str, frame: bytes, linktype: int) -> None:
        recorder(time_s + wall_offset_s, direction, probe, address, frame, linktype)
    return record


def _safe_record(recorder: Recorder, time_s: float, direction: str, probe: str, address: str, frame: bytes,
                 linktype: int) -> bool:
    try:
        recorder(time_s, direction, probe, address, frame, linktype)
    except Exception:  # one bad consumer must not stop a sweep
        log.exception("probe %s: recorder failed; not calling it again in this sweep", probe)
        return False
    return True


def run(sock: socket.socket, requests: Sequence[tuple[Any, bytes]], match: Callable[[bytes, Any], Match | None],
        timeout_s: float, *, probe: str, addresses: Sequence[str], rate_pps: float, burst: int,
        recorder: Recorder | None = None, linktype: int = 101,
        frame_out: Callable[[int, bytes], bytes] | None = None,
        frame_in: Callable[[bytes, Any], bytes] | None = None, linger_s: float = 0.0) -> list[Outcome]:
    """Send every (sockaddr, bytes) request in order, collect replies through MATCH(data, sockaddr).

    LINGER_S: once every request is answered, keep receiving this long after the last answer
    (never past the last timeout), so a second answerer of a request is seen too.

    sockaddr None means `send` on a bound socket (AF_PACKET). FRAME_OUT/FRAME_IN
    turn what the socket sees into the frame handed to RECORDER (e.g. prepend an
    IP header), and are only called when a recorder is set.
    """
    sock.setblocking(False)
    count = len(requests)
    sent_s: list[float | None] = [None] * count
    resent_s: list[float | None] = [None] * count
    answered_s: list[float | None] = [None] * count
    errors: list[str | None] = ["timeout"] * count
    macs: list[str | None] = [None] * count
    all_macs: list[list[str]] = [[] for _ in range(count)]
    finished = 0  # answered, or failed to send
    linger_until_s = float("inf")
    interval_s = burst / rate_pps
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    recvmsg = sock.recvmsg
    sendto = sock.sendto
    send = sock.send
    clock = time.monotonic
    wall_offset_s = time.time() - clock()   # monotonic -> wall clock, fixed for the sweep
    sweep_start_s = clock()
    if recorder is not None:
        recorder = _wall_clock_recorder(recorder, wall_offset_s)
    next_index = 0
    next_burst_s = clock()
    last_sent_s = next_burst_s
    retry_since_s: float | None = None
    resend_after_s = timeout_s * RESEND_SHARE
    resend_index = 0  # requests before it were resent or needed no resend (first sends go out in index order)

    while True:
        now_s = clock()
        while resend_index < next_index:
            first = sent_s[resend_index]
            if first is not None and answered_s[resend_index] is None:
                if now_s < first + resend_after_s:
                    break
                addr, data = requests[resend_index]
                when_s = clock()
                try:
                    if addr is None:
                        send(data)
                    else:
                        sendto(data, addr)
                except OSError as exc:
                    log.debug("probe %s: resend to %s failed: %s", probe, addresses[resend_index], exc)
                else:
                    resent_s[resend_index] = when_s
                    if recorder is not None:
                        frame = frame_out(resend_index, data) if frame_out else data
                        if not _safe_record(recorder, when_s, "out", probe, addresses[resend_index], frame, linktype):
                            recorder = None
            resend_index += 1
        if next_index < count and now_s >= next_burst_s:
            stop = min(count, next_index + burst)
            while next_index < stop:
                addr, data = requests[next_index]
                when_s = clock()
                try:
                    if addr is None:
                        send(data)
                    else:
                        sendto(data, addr)
                except OSError as exc:
                    if exc.errno in _RETRY_ERRNOS and when_s - (retry_since_s or when_s) < timeout_s:
                        retry_since_s = retry_since_s or when_s
                        break  # queue full: drain replies, retry this request at the next slot
                    retry_since_s = None
                    errors[next_index] = ("unreachable" if exc.errno in _UNREACHABLE_ERRNOS
                                          else f"send failed: {exc.strerror}")
                    answered_s[next_index] = when_s
                    finished += 1
                    next_index += 1
                    continue
                retry_since_s = None
                sent_s[next_index] = last_sent_s = when_s
                if recorder is not None:
                    frame = frame_out(next_index, data) if frame_out else data
                    if not _safe_record(recorder, when_s, "out", probe, addresses[next_index], frame, linktype):
                        recorder = None
                next_index += 1
            next_burst_s = max(next_burst_s + interval_s, now_s - interval_s)

        # Drain everything queued without blocking.
        while True:
            try:
                data, anc, _flags, addr = recvmsg(65535, _ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. a pending ICMP error on the socket: reported once, then cleared
                log.debug("probe %s: receive error ignored: %s", probe, exc)
                break
            found = match(data, addr)
            if found is None:
                continue
            index = found.index
            when_s = clock()
            if anc:
                seconds, nanoseconds = _TIMESPEC.unpack(anc[0][2])
                stamped_s = seconds + nanoseconds / 1e9 - wall_offset_s
                if sweep_start_s <= stamped_s <= when_s + KERNEL_STAMP_SLACK_S:
                    when_s = stamped_s
            if recorder is not None:
                frame = frame_in(data, addr) if frame_in else data
                if not _safe_record(recorder, when_s, "in", probe, addresses[index], frame, linktype):
                    recorder = None
            sent = sent_s[index]
            if (found.mac and answered_s[index] is not None and errors[index] is None and sent is not None
                    and when_s - sent <= timeout_s and found.mac not in all_macs[index]):
                all_macs[index].append(found.mac)   # another host answers the same request
                continue
            if sent is None or answered_s[index] is not None or when_s - sent > timeout_s:
                continue  # not ours to take yet, a duplicate, or late
            # Timed from the resend when it had gone out (a reply cannot say which copy it answers).
            resent = resent_s[index]
            if resent is not None and when_s >= resent:
                sent_s[index] = resent
            answered_s[index] = when_s
            errors[index] = found.error
            macs[index] = found.mac
            if found.mac:
                all_macs[index].append(found.mac)
            finished += 1

        if finished >= count:
            if linger_s <= 0:
                break
            if linger_until_s == float("inf"):
                linger_until_s = clock() + linger_s
            if clock() >= min(linger_until_s, last_sent_s + timeout_s):
                break
        now_s = clock()
        if next_index >= count:
            wait_s = min(last_sent_s + timeout_s, linger_until_s) - now_s
            if wait_s <= 0:
                break
        else:
            wait_s = max(0.0, next_burst_s - now_s)
        first_unanswered = sent_s[resend_index] if resend_index < next_index else None
        if first_unanswered is not None:
            wait_s = min(wait_s, max(0.0, first_unanswered + resend_after_s - now_s))
        poller.poll(wait_s * 1000.0)

    sent_s = [None if t is None else t + wall_offset_s for t in sent_s]            # wall-clock stamps out
    answered_s = [None if t is None else t + wall_offset_s for t in answered_s]
    return [Outcome(sent_s[i], answered_s[i] if errors[i] != "timeout" else None, errors[i], macs[i],
                    tuple(all_macs[i]))
            for i in range(count)]
