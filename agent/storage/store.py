"""Storage facade: write(points) hands points to a writer thread and returns at once; it delivers, spools, retries.

The writer thread owns the sink and the spool. Order is kept: the spool (oldest) is replayed before
queued points are sent, and while the sink is failing queued points go to the end of the spool.
Back-off and durations use a monotonic clock, so a wall-clock step changes nothing.
The thread starts at the first write()/flush() and so lives in the caller's network namespace.
"""
from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from agent import atomic
from agent.storage.defaults import (
    DEFAULT_BATCH_POINTS,
    DEFAULT_QUEUE_MAX_POINTS,
    DEFAULT_RETRY_MAX_S,
    DEFAULT_RETRY_MIN_S,
    DEFAULT_SPOOL_MAX_BYTES,
    MIB,
)
from agent.storage.influx import SinkError, Writer, make_writer
from agent.storage.points import Point
from agent.storage.spool import Spool, SpoolWriteError

log = logging.getLogger(__name__)

REJECTED_FILE = "rejected.lp"
SPOOL_DIR = "spool"
DEFAULT_FLUSH_TIMEOUT_S = 30.0
MIN_BACKOFF_S = 0.05
# How often the retention is asked again (v1 SHOW RETENTION POLICIES, v2 buckets API), when not configured.
RETENTION_REFRESH_S = 3600.0


@dataclass(frozen=True, slots=True)
class StorageCounters:
    """Storage health for the `agent` point (counts since start, except spool_*, queued, backoff_s: now)."""

    spool_points: int
    spool_bytes: int
    written: int
    write_errors: int
    dropped: int           # points lost: spool over spool_max_mib, or the in-memory queue over its bound
    rejected: int          # points refused by InfluxDB (400/422, or 413 for one point) or not encodable
    queued: int = 0        # points handed over by write() and not yet delivered or spooled
    spool_errors: int = 0  # appends the disk refused (disk full, quota, I/O error); the points stayed queued
    backoff_s: float = 0.0  # current wait between write attempts (0: the sink is fine)
    retention_dropped: int = 0  # points older than the retention policy: dropped by InfluxDB (a retention
                                # partial write) or by the agent before sending (the retention is known)


class Storage:
    """Hands points to a writer thread (bounded queue); it writes them in batches, spools on failure, replays in order.

    Errors: write() never raises and never blocks on the sink; flush() waits at most its timeout.
    """

    def __init__(self, writer: Writer, state_dir: str, *, spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES,
                 batch_points: int = DEFAULT_BATCH_POINTS, retry_min_s: float = DEFAULT_RETRY_MIN_S,
                 retry_max_s: float = DEFAULT_RETRY_MAX_S,
                 queue_max_points: int = DEFAULT_QUEUE_MAX_POINTS,
                 flush_timeout_s: float = DEFAULT_FLUSH_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic, retention_s: float | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.writer = writer
        self.state_dir = state_dir
        atomic.private_dir(state_dir)   # 0700: spool, status, evidence and history live here
        self.spool = Spool(os.path.join(state_dir, SPOOL_DIR), spool_max_bytes)
        self.rejected_path = os.path.join(state_dir, REJECTED_FILE)
        self.batch_points = batch_points
        self.retry_min_s = retry_min_s
        self.retry_max_s = max(retry_max_s, retry_min_s)
        self.queue_max_points = queue_max_points
        self.flush_timeout_s = flush_timeout_s
        self._clock = clock
        self._wall = wall              # the points' clock: what is older than the retention is judged on it
        self._retention_config_s = retention_s      # [influxdb] retention (None: learn it)
        self._retention_learned_s: float | None = None
        self._retention_asked_at: float | None = None   # monotonic time of the last question to InfluxDB
        self._retention_dropped = 0
        self._cond = threading.Condition()
        self._queue: collections.deque[bytes] = collections.deque()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        self._busy = False
        self._flush_asked = 0          # flush requests made ...
        self._flush_done = 0           # ... and served by a finished pass
        self._backoff_s = 0.0
        self._next_try = 0.0           # monotonic time of the next attempt while backing off
        self._spool_retry_at = 0.0     # monotonic time the spool may be tried again after the disk refused
        self._spool_failing = False
        self._batch_now = batch_points  # shrinks after a 413
        self._last_error: tuple[int | None, str] | None = None
        self._written = 0
        self._write_errors = 0
        self._rejected = 0
        self._queue_dropped = 0
        self._spool_errors = 0
        self.last_write_ms = 0.0       # duration of the last write request (monotonic)

    @classmethod
    def from_config(cls, cfg: Any) -> Storage:
        """Build from an agent.core.config.Config ([influxdb] and agent.state_dir)."""
        ic = cfg.influxdb
        return cls(make_writer(ic), cfg.agent.state_dir, spool_max_bytes=int(ic.spool_max_mib * MIB),
                   batch_points=ic.batch_points, retry_min_s=ic.retry_min_s,
                   retry_max_s=max(ic.retry_max_s, ic.retry_min_s),
                   queue_max_points=getattr(ic, "queue_max_points", DEFAULT_QUEUE_MAX_POINTS),
                   retention_s=getattr(ic, "retention_s", None))

    # --- public ---

    def write(self, points: Iterable[Point | str]) -> None:
        """Hand points (or ready lines) to the writer thread; returns at once, never raises."""
        try:
            lines = self._encode(points)
            if not lines:
                return
            with self._cond:
                if self._closed:
                    log.error("storage: %d points written after close(); not delivered", len(lines))
                    self._queue_dropped += len(lines)
                    return
                self._queue.extend(lines)
                self._trim_queue()
                self._start()
                self._cond.notify_all()
        except Exception:  # a storage bug must not stop the probe cycle
            log.exception("storage: unexpected error queueing points; they may be lost")

    def flush(self, timeout_s: float | None = None) -> bool:
        """Deliver now (ignoring back-off) and wait, at most timeout_s; True when queue and spool are empty."""
        timeout_s = self.flush_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if self._closed:
                return self.spool.points == 0 and not self._queue
            self._start()
            self._flush_asked += 1
            ticket = self._flush_asked
            self._cond.notify_all()
            while self._flush_done < ticket:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread_alive():
                    log.warning("storage: flush gave up after %.1f s (%d queued, %d spooled)", timeout_s,
                                len(self._queue), self.spool.points)
                    return False
                self._cond.wait(left)
            return not self._queue and self.spool.points == 0

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait (at most timeout_s) until nothing is queued and the writer thread is between passes; no forcing."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread_alive():
                    return False
                self._cond.wait(left)
            return True

    def counters(self) -> StorageCounters:
        """Current counters (thread-safe)."""
        with self._cond:
            return StorageCounters(self.spool.points, self.spool.bytes, self._written, self._write_errors,
                                   self.spool.dropped + self._queue_dropped, self._rejected, len(self._queue),
                                   self._spool_errors, self._backoff_s, self._retention_dropped)

    def close(self, timeout_s: float | None = None) -> None:
        """Flush (bounded), stop the writer thread, close the spool and the writer; what is left stays spooled."""
        timeout_s = self.flush_timeout_s if timeout_s is None else timeout_s
        if self._thread is not None:
            self.flush(timeout_s)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                log.error("storage: writer thread still busy with %r after %.0f s; %d queued points not spooled",
                          self.writer, timeout_s, len(self._queue))
                return
        with self._cond:
            self._closed = True
            if self._queue:                       # no thread ran (never started) or it stopped with leftovers
                self._to_spool(self._drain())
        self.spool.close()
        try:
            self.writer.close()
        except Exception:
            log.exception("storage: closing %r", self.writer)

    # --- the writer thread ---

    def _start(self) -> None:
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._run, name="storage-writer", daemon=True)
            self._thread.start()

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _due(self, now: float) -> bool:
        if self._stopping or self._flush_asked > self._flush_done:
            return True
        backing_off = now < self._next_try
        if self._queue:
            # while backing off, queued points go to the spool, unless the disk refused them lately
            return not backing_off or now >= self._spool_retry_at
        return self.spool.points > 0 and not backing_off

    def _wait_s(self, now: float) -> float | None:
        times = []
        if self._queue or self.spool.points:
            times.append(self._next_try)
        if self._queue:
            times.append(self._spool_retry_at)
        later = [t - now for t in times if t > now]
        return min(later) if later else None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due(self._clock()):
                    self._cond.wait(self._wait_s(self._clock()))
                forced = self._flush_asked > self._flush_done
                ticket = self._flush_asked
                stopping = self._stopping
                self._busy = True
            try:
                self._pass(forced or stopping)
            except Exception:  # the writer thread must survive its own bugs
                log.exception("storage: unexpected error in the writer thread")
                with self._cond:
                    self._fail_backoff()
            with self._cond:
                self._busy = False
                self._flush_done = max(self._flush_done, ticket)
                self._cond.notify_all()
                if stopping:
                    return

    def _drain(self) -> list[bytes]:
        lines = list(self._queue)
        self._queue.clear()
        return lines

    def _pass(self, forced: bool) -> None:
        """One round: replay the spool, then deliver the queue; what is not delivered goes to the spool."""
        now = self._clock()
        if forced or now >= self._next_try:
            if self.spool.points and not self._replay():
                self._spool_queue()
                return
            while True:
                with self._cond:
                    lines = self._drain()
                if not lines:
                    return
                rest = self._deliver(lines)
                if rest:
                    self._to_spool(rest)
                    self._spool_queue()
                    return
        else:
            self._spool_queue()

    def _spool_queue(self) -> None:
        with self._cond:
            lines = self._drain()
        if lines:
            self._to_spool(lines)

    def _to_spool(self, lines: list[bytes]) -> None:
        """Append to the spool; when the disk refuses, put the lines back at the queue's head (they are older)."""
        if self._clock() < self._spool_retry_at and not self._stopping:
            self._requeue(lines)
            return
        try:
            self.spool.append(lines)
        except SpoolWriteError as exc:
            with self._cond:
                self._spool_errors += 1
                self._spool_retry_at = self._clock() + max(self.retry_min_s, self._backoff_s, 1.0)
                first, self._spool_failing = not self._spool_failing, True
            (log.error if first else log.debug)(
                "storage: the spool cannot grow (%s); keeping points in memory (up to %d, then the oldest are "
                "dropped and counted) and retrying", exc, self.queue_max_points)
            self._requeue(lines)
            return
        if self._spool_failing:
            self._spool_failing = False
            log.info("storage: the spool in %s is writable again", self.spool.directory)

    def _requeue(self, lines: list[bytes]) -> None:
        with self._cond:
            self._queue.extendleft(reversed(lines))
            self._trim_queue()

    def _trim_queue(self) -> None:
        over = len(self._queue) - self.queue_max_points
        if over > 0:
            for _ in range(over):
                self._queue.popleft()
            self._queue_dropped += over
            log.error("storage: %d queued points over the queue bound (%d) dropped, oldest first; %d dropped "
                      "from the queue in total", over, self.queue_max_points, self._queue_dropped)

    def _retention_s(self) -> float | None:
        """The retention in force: [influxdb] retention, else the one InfluxDB told (None: unknown, 0: infinite)."""
        return self._retention_config_s if self._retention_config_s is not None else self._retention_learned_s

    def _learn_retention(self) -> None:
        """Ask the writer for the retention (before a replay: old points wait in the spool), at most hourly."""
        if self._retention_config_s is not None:
            return
        now = self._clock()
        if self._retention_asked_at is not None and now - self._retention_asked_at < RETENTION_REFRESH_S:
            return
        ask = getattr(self.writer, "retention_s", None)
        try:
            learned = ask() if ask is not None else None
        except SinkError as exc:   # unreachable: ask again before the next replay
            log.debug("storage: cannot ask for the retention now: %s", exc)
            return
        except Exception:  # a writer bug never stops the writer thread
            log.exception("storage: asking %r for the retention failed", self.writer)
            learned = None
        self._retention_asked_at = now
        if learned != self._retention_learned_s:
            log.info("storage: the retention of %r is %s", self.writer,
                     "unknown" if learned is None else "infinite" if learned == 0 else f"{learned:g} s")
        self._retention_learned_s = learned

    def _drop_expired(self, lines: list[bytes]) -> list[bytes]:
        """Drop (and count, one log line) the lines stamped before now - retention: InfluxDB would drop them."""
        retention = self._retention_s()
        if not retention or not lines:
            return lines
        cutoff_ms = (self._wall() - retention) * 1000
        keep = [line for line in lines if not _older(line, cutoff_ms)]
        dropped = len(lines) - len(keep)
        if dropped:
            with self._cond:
                self._retention_dropped += dropped
            log.warning("storage: dropped %d of %d points older than the retention (%g s%s) before sending; "
                        "%d dropped for retention in total", dropped, len(lines), retention,
                        ", [influxdb] retention" if self._retention_config_s is not None else ", told by InfluxDB",
                        self._retention_dropped)
        return keep

    def _deliver(self, lines: list[bytes]) -> list[bytes]:
        """Send in batches; return the lines not delivered because the sink is unavailable (empty: all done)."""
        lines = self._drop_expired(lines)
        i = 0
        while i < len(lines):
            n = self._batch_now
            rest = self._send_isolating(lines[i:i + n])
            if rest:
                return rest + lines[i + n:]
            i += n
        return []

    def _send_isolating(self, chunk: list[bytes]) -> list[bytes]:
        """Send a chunk; 413: split it; 400/422: bisect to set aside only the bad lines; return the undelivered rest."""
        pending = [chunk]
        while pending:
            part = pending.pop(0)
            started = self._clock()
            try:
                try:
                    self.writer.send(b"\n".join(part) + b"\n")
                except SinkError:
                    raise
                except Exception as exc:  # a writer bug: keep the points, retry later
                    log.exception("storage: %r failed unexpectedly; spooling", self.writer)
                    raise SinkError(f"{type(exc).__name__}: {exc}") from exc
            except SinkError as exc:
                self.last_write_ms = max(0.0, (self._clock() - started) * 1000)
                if exc.retention_dropped is not None:
                    self._retention_partial(part, exc)
                    continue
                with self._cond:
                    self._write_errors += 1
                if exc.retryable:
                    self._fail(exc)
                    return [line for p in [part, *pending] for line in p]
                if len(part) == 1:
                    self._reject(part[0], exc)
                else:
                    if exc.status == 413 and len(part) <= self._batch_now:
                        self._batch_now = max(1, len(part) // 2)
                        log.warning("storage: %s; splitting: batches of at most %d points from now on",
                                    exc, self._batch_now)
                    mid = len(part) // 2
                    pending[0:0] = [part[:mid], part[mid:]]
                continue
            self.last_write_ms = max(0.0, (self._clock() - started) * 1000)
            with self._cond:
                self._written += len(part)
            self._ok()
        return []

    def _retention_partial(self, part: list[bytes], exc: SinkError) -> None:
        """A retention partial write: InfluxDB stored the batch but the N points older than its retention policy.
        Nothing is resent or bisected (the old points would be dropped again); one log line per batch."""
        dropped = min(int(exc.retention_dropped or 0), len(part))
        with self._cond:
            self._written += len(part) - dropped
            self._retention_dropped += dropped
            total = self._retention_dropped
        log.warning("storage: InfluxDB dropped %d of %d points of a batch as older than its retention policy and "
                    "stored the rest (HTTP %s, a partial write: nothing resent); %d dropped for retention in total",
                    dropped, len(part), exc.status, total)
        self._ok()

    def _replay(self) -> bool:
        """Deliver spooled segments oldest first; True when the spool is empty afterwards."""
        self._learn_retention()
        self.spool.seal()
        total = self.spool.points
        for name in self.spool.segments():
            lines = self.spool.read(name)
            rest = self._deliver(lines)
            if rest:
                if len(rest) < len(lines):
                    try:
                        self.spool.replace(name, rest)
                    except OSError as exc:  # disk full: keep it whole; a replay rewrites the same points (same time)
                        log.warning("storage: cannot shorten spool segment %s (%s); it is kept whole", name, exc)
                log.debug("storage: spool replay stopped, %d points still spooled", self.spool.points)
                return False
            self.spool.remove(name)
        if total:
            log.info("storage: replayed %d spooled points to %r", total, self.writer)
        return True

    def _fail_backoff(self) -> None:
        # never below MIN_BACKOFF_S: a dead sink must not turn the writer thread into a busy loop
        self._backoff_s = min(max(self.retry_max_s, MIN_BACKOFF_S),
                              max(self.retry_min_s, MIN_BACKOFF_S, self._backoff_s * 2))
        self._next_try = self._clock() + self._backoff_s

    def _fail(self, exc: SinkError) -> None:
        with self._cond:
            self._fail_backoff()
            backoff = self._backoff_s
        key = (exc.status, getattr(exc, "kind", ""))
        repeated = self._last_error == key
        self._last_error = key
        if exc.status in (401, 403):
            level = log.debug if repeated else log.error
            level("storage: InfluxDB refused the credentials: %s; points are spooled (not dropped); check "
                  "influxdb.username/password/password_file (v1) or token/token_file (v2); next try in %.1f s",
                  exc, backoff)
        else:
            (log.debug if repeated else log.error if getattr(exc, "kind", "") == "tls" else log.warning)(
                "storage: %s; spooling, next try in %.1f s", exc, backoff)

    def _ok(self) -> None:
        if self._backoff_s or self._last_error:
            log.info("storage: sink %r is back", self.writer)
        with self._cond:
            self._backoff_s = 0.0
            self._next_try = 0.0
        self._last_error = None

    def _reject(self, line: bytes, exc: SinkError) -> None:
        with self._cond:
            self._rejected += 1
        log.error("storage: point refused (%s), set aside in %s: %s", exc, self.rejected_path,
                  line[:200].decode(errors="replace"))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        reason = str(exc).replace("\n", " ")
        try:
            with atomic.open_private_file(self.rejected_path, "ab") as f:
                f.write(f"# {stamp} {reason}\n".encode() + line + b"\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc2:
            log.error("storage: cannot record the refused point in %s: %s", self.rejected_path, exc2)

    # --- encoding (caller's thread) ---

    def _encode(self, points: Iterable[Point | str]) -> list[bytes]:
        lines = []
        for p in points:
            if isinstance(p, str):
                lines.append(p.encode())
                continue
            try:
                lines.append(p.to_line("ms").encode())
            except (ValueError, TypeError) as exc:
                with self._cond:
                    self._rejected += 1
                log.error("storage: point %s %s cannot be encoded (%s); not written", p.measurement,
                          dict(p.tags), exc)
        return lines


def _older(line: bytes, cutoff_ms: float) -> bool:
    """True when the line's timestamp (the last field, ms: PRECISION) is before cutoff_ms; no timestamp: False.

    A string field ends with its closing quote, so a last token of digits is the timestamp."""
    head, _, last = line.rstrip().rpartition(b" ")
    if not head or not last.lstrip(b"-").isdigit():
        return False
    return int(last) < cutoff_ms
