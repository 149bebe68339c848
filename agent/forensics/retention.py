"""Bounded retention of evidence bundles: at most N bundles and B bytes overall, oldest freeze removed first."""
from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger(__name__)

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
DEFAULT_MAX_BUNDLES = 200
DEFAULT_MAX_BYTES = 500 * 1024 * 1024


def stamp(time_s: float) -> str:
    """A freeze start as UTC ISO basic, e.g. 20261127T231500Z (the bundle directory name)."""
    return datetime.fromtimestamp(time_s, tz=UTC).strftime(STAMP_FORMAT)


def parse_stamp(name: str) -> float | None:
    """Epoch seconds of a bundle directory name; None when it is not one."""
    try:
        return datetime.strptime(name, STAMP_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """One bundle on disk."""

    path: str
    box: str
    start_s: float
    size_bytes: int


def _size(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def scan(root: str) -> list[BundleInfo]:
    """Bundles under root (root/<box>/<stamp>/), oldest first."""
    found: list[BundleInfo] = []
    try:
        boxes = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    for box in boxes:
        box_dir = os.path.join(root, box)
        if not os.path.isdir(box_dir):
            continue
        for name in sorted(os.listdir(box_dir)):
            start_s = parse_stamp(name)
            path = os.path.join(box_dir, name)
            if start_s is None or not os.path.isdir(path):
                continue
            found.append(BundleInfo(path=path, box=box, start_s=start_s, size_bytes=_size(path)))
    found.sort(key=lambda b: (b.start_s, b.path))
    return found


def plan(bundles: Sequence[BundleInfo], max_bundles: int, max_bytes: int,
         keep: Iterable[str] = ()) -> list[BundleInfo]:
    """Which bundles to remove (oldest first) so at most max_bundles and max_bytes remain; never those in keep."""
    protected = {os.path.normpath(p) for p in keep}
    ordered = sorted(bundles, key=lambda b: (b.start_s, b.path))
    count = len(ordered)
    total = sum(b.size_bytes for b in ordered)
    remove: list[BundleInfo] = []
    for b in ordered:
        if count <= max_bundles and total <= max_bytes:
            break
        if os.path.normpath(b.path) in protected:
            continue
        remove.append(b)
        count -= 1
        total -= b.size_bytes
    return remove


def prune(root: str, max_bundles: int = DEFAULT_MAX_BUNDLES, max_bytes: int = DEFAULT_MAX_BYTES,
          keep: Iterable[str] = ()) -> list[str]:
    """Remove the oldest bundles under root beyond the bounds; returns the removed paths."""
    removed: list[str] = []
    for b in plan(scan(root), max_bundles, max_bytes, keep):
        try:
            shutil.rmtree(b.path)
        except OSError as exc:
            log.warning("evidence retention: box %s: cannot remove %s: %s", b.box, b.path, exc)
            continue
        removed.append(b.path)
        log.info("evidence retention: box %s: removed bundle %s (%d bytes)", b.box, b.path, b.size_bytes)
        try:
            os.rmdir(os.path.dirname(b.path))  # the box directory, when now empty
        except OSError:
            pass
    return removed
