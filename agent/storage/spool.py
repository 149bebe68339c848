"""Bounded on-disk spool of line protocol: append-only, fsync'd segment files, read back oldest first.

A segment holds one record per line. Line protocol may carry a raw newline inside a quoted string
field, so a record is stored with backslash -> "\\\\" and newline -> "\\n" (segments named *.lps);
segments written before that (*.lp) are read as raw lines.
"""
from __future__ import annotations

import errno
import logging
import os
import re

from agent import atomic

log = logging.getLogger(__name__)

_SEGMENT_RE = re.compile(r"^(\d{12})\.lps?$")


def _segment_number(name: str) -> int:
    """The sequence number of a segment file name (one _SEGMENT_RE matches)."""
    m = _SEGMENT_RE.match(name)
    if m is None:
        raise ValueError(f"not a spool segment name: {name!r}")
    return int(m.group(1))
_SUFFIX = ".lps"
_UNESCAPE_RE = re.compile(rb"\\(.)", re.S)


class SpoolWriteError(OSError):
    """The spool could not grow (disk full, quota, file-size limit, I/O error); nothing of the batch was kept."""


def _escape(line: bytes) -> bytes:
    if b"\\" in line or b"\n" in line:
        return line.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
    return line


def _unescape(rec: bytes) -> bytes:
    if b"\\" not in rec:
        return rec
    return _UNESCAPE_RE.sub(lambda m: b"\n" if m.group(1) == b"n" else m.group(1), rec)
MIN_SEGMENT_BYTES = 4096
MAX_SEGMENT_BYTES = 8 * 1024 * 1024


class Spool:
    """Line-protocol lines on disk under `directory`, at most max_bytes; the oldest segment goes first when full.

    Not thread-safe: one owner (the Storage writer thread). `points`/`bytes`/`dropped` are plain ints that
    other threads may read.
    """

    def __init__(self, directory: str, max_bytes: int, segment_bytes: int | None = None) -> None:
        self.directory = directory
        self.max_bytes = int(max_bytes)
        self.segment_bytes = segment_bytes or max(MIN_SEGMENT_BYTES, min(MAX_SEGMENT_BYTES, self.max_bytes // 8))
        atomic.private_dir(directory)
        self.dropped = 0                       # points dropped because the spool was full (since start)
        self.points = 0                        # points waiting in the spool
        self.bytes = 0                         # bytes used by the spool
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
            self._set(name, len(data), data.count(b"\n"))
        self._next = max((_segment_number(n) for n in self._sizes), default=0) + 1
        if self.points:
            log.info("spool %s: %d points (%d bytes) waiting from before", directory, self.points, self.bytes)

    def _names(self) -> list[str]:
        return sorted(n for n in os.listdir(self.directory) if _SEGMENT_RE.match(n))

    def _set(self, name: str, nbytes: int, npoints: int) -> None:
        ob, op = self._sizes.get(name, (0, 0))
        self._sizes[name] = (nbytes, npoints)
        self.bytes += nbytes - ob
        self.points += npoints - op

    def _forget(self, name: str) -> None:
        ob, op = self._sizes.pop(name, (0, 0))
        self.bytes -= ob
        self.points -= op

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
        """Append lines, fsync'd; drop the oldest segments first when over max_bytes.

        Raises SpoolWriteError when the disk refuses (ENOSPC, EDQUOT, EFBIG, EIO): the segment is cut back,
        so none of `lines` is in the spool and the caller still owns them.
        """
        if not lines:
            return
        recs = [_escape(line) for line in lines]
        data = b"\n".join(recs) + b"\n"
        if len(data) > self.max_bytes:
            keep, size = [], 0
            for rec in reversed(recs):
                if size + len(rec) + 1 > self.max_bytes:
                    break
                keep.append(rec)
                size += len(rec) + 1
            lost = len(recs) - len(keep)
            self.dropped += lost
            log.error("spool %s full: a batch of %d points exceeds spool_max_mib (%d bytes); dropped its %d oldest "
                      "points (%d dropped in total)", self.directory, len(recs), self.max_bytes, lost, self.dropped)
            recs = list(reversed(keep))
            if not recs:
                return
            data = b"\n".join(recs) + b"\n"
        self._make_room(len(data))
        created = False
        try:
            if self._open_fd is None or self._open_name is None or self._open_size >= self.segment_bytes:
                self.seal()
                name = f"{self._next:012d}{_SUFFIX}"
                self._open_fd = os.open(os.path.join(self.directory, name),
                                        os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                self._open_name, created = name, True
                self._next += 1
                self._fsync_dir()
            view = memoryview(data)
            while view:
                n = os.write(self._open_fd, view)
                view = view[n:]
            os.fsync(self._open_fd)
        except OSError as exc:
            self._undo_append(created)
            raise SpoolWriteError(exc.errno or errno.EIO, f"spool {self.directory}: cannot append "
                                  f"{len(recs)} points: {exc.strerror or exc}") from None
        self._open_size += len(data)
        b, p = self._sizes.get(self._open_name, (0, 0))
        self._set(self._open_name, b + len(data), p + len(recs))

    def _undo_append(self, created: bool) -> None:
        """Cut the open segment back to what was acknowledged (a partial write must not become a record)."""
        if self._open_fd is None or self._open_name is None:   # both set together by append, cleared by seal
            return
        name = self._open_name
        try:
            os.ftruncate(self._open_fd, self._open_size)
        except OSError:
            log.exception("spool %s: cannot cut %s back after a failed append", self.directory, name)
        self.seal()
        if created:
            try:
                os.unlink(os.path.join(self.directory, name))
            except OSError:
                pass

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
            log.error("spool %s full (spool_max_mib = %.1f): dropped the %d oldest points (%d segment(s)); "
                      "%d dropped in total", self.directory, self.max_bytes / 2**20, lost_points, lost_segments,
                      self.dropped)

    def read(self, name: str) -> list[bytes]:
        """The lines of one segment."""
        with open(os.path.join(self.directory, name), "rb") as f:
            data = f.read()
        recs = data.split(b"\n")[:-1] if data else []
        return [_unescape(r) for r in recs] if name.endswith(_SUFFIX) else recs

    def remove(self, name: str) -> None:
        """Delete a segment (its points were delivered, or dropped)."""
        if name == self._open_name:
            self.seal()
        try:
            os.unlink(os.path.join(self.directory, name))
        except FileNotFoundError:
            pass
        self._forget(name)

    def replace(self, name: str, lines: list[bytes]) -> None:
        """Rewrite a segment with only `lines` (the undelivered rest), atomically."""
        if not lines:
            self.remove(name)
            return
        if name == self._open_name:
            self.seal()
        path = os.path.join(self.directory, name)
        recs = [_escape(line) for line in lines] if name.endswith(_SUFFIX) else lines
        data = b"\n".join(recs) + b"\n"
        atomic.write_bytes(path, data)
        self._set(name, len(data), len(recs))

    def _fsync_dir(self) -> None:
        atomic.fsync_dir(self.directory)

    def close(self) -> None:
        """Close the open segment."""
        self.seal()
