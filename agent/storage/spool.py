"""Bounded on-disk spool of line protocol: append-only, fsync'd segment files, read back oldest first."""
from __future__ import annotations

import logging
import os
import re

from agent import atomic

log = logging.getLogger(__name__)

_SEGMENT_RE = re.compile(r"^(\d{12})\.lp$")
MIN_SEGMENT_BYTES = 4096
MAX_SEGMENT_BYTES = 8 * 1024 * 1024


class Spool:
    """Line-protocol lines on disk under `directory`, at most max_bytes; the oldest segment goes first when full."""

    def __init__(self, directory: str, max_bytes: int, segment_bytes: int | None = None) -> None:
        self.directory = directory
        self.max_bytes = int(max_bytes)
        self.segment_bytes = segment_bytes or max(MIN_SEGMENT_BYTES, min(MAX_SEGMENT_BYTES, self.max_bytes // 8))
        os.makedirs(directory, exist_ok=True)
        self.dropped = 0                       # points dropped because the spool was full (since start)
        self._open_fd: int | None = None
        self._open_name: str | None = None
        self._open_size = 0
        self._sizes: dict[str, tuple[int, int]] = {}  # segment name -> (bytes, points)
        for name in self._names():
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                data = f.read()
            if data and not data.endswith(b"\n"):
                # a crash during an append left a partial last line: it was never acknowledged
                cut = data.rfind(b"\n") + 1
                log.warning("spool %s: dropping a partial last line (%d bytes) left by a crash",
                            path, len(data) - cut)
                with open(path, "r+b") as f:
                    f.truncate(cut)
                    os.fsync(f.fileno())
                data = data[:cut]
            self._sizes[name] = (len(data), data.count(b"\n"))
        self._next = max((int(_SEGMENT_RE.match(n).group(1)) for n in self._sizes), default=0) + 1
        if self.points:
            log.info("spool %s: %d points (%d bytes) waiting from before", directory, self.points, self.bytes)

    def _names(self) -> list[str]:
        return sorted(n for n in os.listdir(self.directory) if _SEGMENT_RE.match(n))

    @property
    def points(self) -> int:
        """Points waiting in the spool."""
        return sum(p for _, p in self._sizes.values())

    @property
    def bytes(self) -> int:
        """Bytes used by the spool."""
        return sum(b for b, _ in self._sizes.values())

    def __len__(self) -> int:
        return self.points

    def segments(self) -> list[str]:
        """Segment names, oldest first."""
        return sorted(self._sizes)

    def seal(self) -> None:
        """Close the segment being appended to, so the next append starts a new one."""
        if self._open_fd is not None:
            os.close(self._open_fd)
        self._open_fd, self._open_name, self._open_size = None, None, 0

    def append(self, lines: list[bytes]) -> None:
        """Append lines (without newlines), fsync'd; drop the oldest segments first when it would be too big."""
        if not lines:
            return
        data = b"\n".join(lines) + b"\n"
        if len(data) > self.max_bytes:
            keep, size = [], 0
            for line in reversed(lines):
                if size + len(line) + 1 > self.max_bytes:
                    break
                keep.append(line)
                size += len(line) + 1
            lost = len(lines) - len(keep)
            self.dropped += lost
            log.error("spool %s full: a batch of %d points exceeds spool_max_mb (%d bytes); dropped its %d oldest "
                      "points (%d dropped in total)", self.directory, len(lines), self.max_bytes, lost, self.dropped)
            lines = list(reversed(keep))
            data = b"\n".join(lines) + b"\n" if lines else b""
            if not lines:
                return
        self._make_room(len(data))
        if self._open_fd is None or self._open_size >= self.segment_bytes:
            self.seal()
            self._open_name = f"{self._next:012d}.lp"
            self._next += 1
            self._open_fd = os.open(os.path.join(self.directory, self._open_name),
                                    os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._fsync_dir()
        view = memoryview(data)
        while view:
            n = os.write(self._open_fd, view)
            view = view[n:]
        os.fsync(self._open_fd)
        self._open_size += len(data)
        b, p = self._sizes.get(self._open_name, (0, 0))
        self._sizes[self._open_name] = (b + len(data), p + len(lines))

    def _make_room(self, need: int) -> None:
        lost_points = lost_segments = 0
        while self._sizes and self.bytes + need > self.max_bytes:
            oldest = self.segments()[0]
            if oldest == self._open_name:
                self.seal()
            lost_points += self._sizes[oldest][1]
            lost_segments += 1
            self.remove(oldest)
        if lost_points:
            self.dropped += lost_points
            log.error("spool %s full (spool_max_mb = %.1f): dropped the %d oldest points (%d segment(s)); "
                      "%d dropped in total", self.directory, self.max_bytes / 2**20, lost_points, lost_segments,
                      self.dropped)

    def read(self, name: str) -> list[bytes]:
        """The lines of one segment."""
        with open(os.path.join(self.directory, name), "rb") as f:
            data = f.read()
        return data.split(b"\n")[:-1] if data else []

    def remove(self, name: str) -> None:
        """Delete a segment (its points were delivered, or dropped)."""
        if name == self._open_name:
            self.seal()
        try:
            os.unlink(os.path.join(self.directory, name))
        except FileNotFoundError:
            pass
        self._sizes.pop(name, None)

    def replace(self, name: str, lines: list[bytes]) -> None:
        """Rewrite a segment with only `lines` (the undelivered rest), atomically."""
        if not lines:
            self.remove(name)
            return
        if name == self._open_name:
            self.seal()
        path = os.path.join(self.directory, name)
        data = b"\n".join(lines) + b"\n"
        atomic.write_bytes(path, data)
        self._sizes[name] = (len(data), len(lines))

    def _fsync_dir(self) -> None:
        atomic.fsync_dir(self.directory)

    def close(self) -> None:
        """Close the open segment."""
        self.seal()
