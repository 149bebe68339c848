"""Storage facade: write(points) never raises; failed writes are spooled and replayed, refused points set aside."""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from agent.storage.influx import SinkError, Writer, make_writer
from agent.storage.points import Point
from agent.storage.spool import Spool

log = logging.getLogger(__name__)

REJECTED_FILE = "rejected.lp"
SPOOL_DIR = "spool"


@dataclass(frozen=True, slots=True)
class StorageCounters:
    """Storage health for the `agent` point (counts since start, except spool_*: now)."""

    spool_points: int
    spool_bytes: int
    written: int
    write_errors: int
    dropped: int
    rejected: int


class Storage:
    """Writes points to a sink in batches; spools on connection errors/5xx, sets 400s aside; thread-safe."""

    def __init__(self, writer: Writer, state_dir: str, *, spool_max_bytes: int = 100 * 2**20,
                 batch_points: int = 5000, retry_min_s: float = 1.0, retry_max_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.writer = writer
        self.state_dir = state_dir
        os.makedirs(state_dir, exist_ok=True)
        self.spool = Spool(os.path.join(state_dir, SPOOL_DIR), spool_max_bytes)
        self.rejected_path = os.path.join(state_dir, REJECTED_FILE)
        self.batch_points = batch_points
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self._clock = clock
        self._lock = threading.Lock()
        self._backoff_s = 0.0
        self._next_try = 0.0
        self._written = 0
        self._write_errors = 0
        self._rejected = 0

    @classmethod
    def from_config(cls, cfg: Any) -> Storage:
        """Build from an agent.core.config.Config ([influxdb] and agent.state_dir)."""
        ic = cfg.influxdb
        return cls(make_writer(ic), cfg.agent.state_dir, spool_max_bytes=int(ic.spool_max_mb * 2**20),
                   batch_points=ic.batch_points, retry_min_s=ic.retry_min_s,
                   retry_max_s=max(ic.retry_max_s, ic.retry_min_s))

    # --- public ---

    def write(self, points: Iterable[Point | str]) -> None:
        """Deliver points (or ready lines); whatever cannot be delivered now is spooled. Never raises."""
        try:
            lines = self._encode(points)
            if not lines:
                return
            with self._lock:
                if self._clock() < self._next_try:
                    self._to_spool(lines)
                    return
                if self.spool.points and not self._replay():
                    self._to_spool(lines)
                    return
                rest = self._deliver(lines)
                if rest:
                    self._to_spool(rest)
        except Exception:  # noqa: BLE001 - a storage bug must not stop the probe cycle
            log.exception("storage: unexpected error writing points; they may be lost")

    def flush(self) -> bool:
        """Replay the spool now (ignoring back-off); True when nothing is left in it. Never raises."""
        try:
            with self._lock:
                return self.spool.points == 0 or self._replay()
        except Exception:  # noqa: BLE001
            log.exception("storage: unexpected error replaying the spool")
            return False

    def counters(self) -> StorageCounters:
        """Current counters."""
        return StorageCounters(self.spool.points, self.spool.bytes, self._written, self._write_errors,
                               self.spool.dropped, self._rejected)

    def close(self) -> None:
        """Close the spool and the writer (no flush: call flush() first if wanted)."""
        with self._lock:
            self.spool.close()
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001
                log.exception("storage: closing %r", self.writer)

    # --- internals ---

    def _encode(self, points: Iterable[Point | str]) -> list[bytes]:
        lines = []
        for p in points:
            if isinstance(p, str):
                lines.append(p.encode())
                continue
            try:
                lines.append(p.to_line("ms").encode())
            except (ValueError, TypeError) as exc:
                self._rejected += 1
                log.error("storage: point %s %s cannot be encoded (%s); not written", p.measurement,
                          dict(p.tags), exc)
        return lines

    def _to_spool(self, lines: list[bytes]) -> None:
        self.spool.append(lines)

    def _deliver(self, lines: list[bytes]) -> list[bytes]:
        """Send in batches; return the lines not delivered because the sink is unavailable (empty: all done)."""
        for i in range(0, len(lines), self.batch_points):
            rest = self._send_isolating(lines[i:i + self.batch_points])
            if rest:
                return rest + lines[i + self.batch_points:]
        return []

    def _send_isolating(self, chunk: list[bytes]) -> list[bytes]:
        """Send a chunk; on a refusal bisect to set aside only the bad lines; return the undelivered rest."""
        pending = [chunk]
        while pending:
            part = pending.pop(0)
            try:
                try:
                    self.writer.send(b"\n".join(part) + b"\n")
                except SinkError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a writer bug: keep the points, retry later
                    log.exception("storage: %r failed unexpectedly; spooling", self.writer)
                    raise SinkError(f"{type(exc).__name__}: {exc}") from exc
            except SinkError as exc:
                self._write_errors += 1
                if exc.retryable:
                    self._fail(exc)
                    return [line for p in [part, *pending] for line in p]
                if len(part) == 1:
                    self._reject(part[0], exc)
                else:
                    mid = len(part) // 2
                    pending[0:0] = [part[:mid], part[mid:]]
                continue
            self._written += len(part)
            self._ok()
        return []

    def _replay(self) -> bool:
        """Deliver spooled segments oldest first; True when the spool is empty afterwards."""
        self.spool.seal()
        total = self.spool.points
        for name in self.spool.segments():
            lines = self.spool.read(name)
            rest = self._deliver(lines)
            if rest:
                self.spool.replace(name, rest)
                log.info("storage: spool replay stopped, %d points still spooled", self.spool.points)
                return False
            self.spool.remove(name)
        if total:
            log.info("storage: replayed %d spooled points to %r", total, self.writer)
        return True

    def _fail(self, exc: SinkError) -> None:
        first = self._backoff_s == 0
        self._backoff_s = min(self.retry_max_s, max(self.retry_min_s, self._backoff_s * 2))
        self._next_try = self._clock() + self._backoff_s
        (log.warning if first else log.debug)(
            "storage: %s; spooling, next try in %.0f s", exc, self._backoff_s)

    def _ok(self) -> None:
        if self._backoff_s:
            log.info("storage: sink %r is back", self.writer)
        self._backoff_s = 0.0
        self._next_try = 0.0

    def _reject(self, line: bytes, exc: SinkError) -> None:
        self._rejected += 1
        log.error("storage: point refused (%s), set aside in %s: %s", exc, self.rejected_path,
                  line[:200].decode(errors="replace"))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        reason = str(exc).replace("\n", " ")
        with open(self.rejected_path, "ab") as f:
            f.write(f"# {stamp} {reason}\n".encode() + line + b"\n")
            f.flush()
            os.fsync(f.fileno())
