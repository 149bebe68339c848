"""Maintenance windows on disk: state_dir/maintenance.json (ad-hoc windows), and the source the pipeline asks.

The file is written atomically with mode 0600 under a lock (agent.atomic; `vobox-agent maintenance`
and a running agent may touch it at once); the running agent re-reads it when its mtime or size
changes, at most once per cycle, so a window started or ended by the command applies from the next
cycle without a restart, and windows survive restarts. Which box is in maintenance when is the
core's question (agent.core.maintenance).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence

from agent import atomic
from agent.core.maintenance import Active, Recurring, Window, end_boxes, from_json, in_maintenance, to_json

log = logging.getLogger(__name__)

MAINTENANCE_FILE = "maintenance.json"


def path_in(state_dir: str) -> str:
    """state_dir/maintenance.json."""
    return os.path.join(state_dir, MAINTENANCE_FILE)


def load(path: str) -> list[Window]:
    """The ad-hoc windows in PATH ([] when there is no file); ValueError naming the file when it is unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    try:
        return from_json(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        atomic.private_dir(directory)
    fd = atomic.open_private(path + ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update(path: str, change: Callable[[list[Window]], list[Window]]) -> list[Window]:
    """Read PATH, apply CHANGE, write the result atomically (mode 0600) under a lock; return it.

    OSError when it cannot be written; ValueError when the file there is not a maintenance file
    (it is left as it is: nothing is lost).
    """
    with _locked(path):
        windows = change(load(path))
        atomic.write_json(path, to_json(windows))   # 0600 (agent.atomic)
        return windows


def start(path: str, boxes: Sequence[str] | None, now_s: float, for_s: float | None, reason: str,
          who: str | None) -> Window:
    """Add a window for BOXES (None: every box) from now_s, for for_s seconds (None: until ended); return it."""
    w = Window(tuple(boxes) if boxes is not None else None, now_s, None if for_s is None else now_s + for_s,
               reason, who)
    update(path, lambda ws: [x for x in ws if x.end_s is None or x.end_s > now_s] + [w])
    return w


def end(path: str, boxes: Sequence[str] | None, all_boxes: Sequence[str], now_s: float) -> list[Window]:
    """End the ad-hoc windows of BOXES (None: every box) now; return the windows left."""
    return update(path, lambda ws: end_boxes(ws, boxes, all_boxes, now_s))


class MaintenanceSource:
    """`source(now_s, boxes) -> {box: Active}` for the pipeline: the config's recurring windows and the file's ad-hoc
    ones, for the boxes the pipeline has now (discovery may change them).

    The file is read again only when its mtime or size changed; an unreadable file is logged once
    and the windows read before are kept (a half-edited file never ends a maintenance).
    """

    def __init__(self, path: str, recurring: Sequence[Recurring] = ()) -> None:
        self.path = path
        self.recurring = tuple(recurring)
        self._windows: list[Window] = []
        self._seen: tuple[int, int] | None = None
        self._read_once = False

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
            key = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            key = None
        if key == self._seen and self._read_once:
            return
        first, self._seen, self._read_once = not self._read_once, key, True
        try:
            self._windows = load(self.path) if key is not None else []
        except ValueError as exc:
            log.error("maintenance windows unreadable, keeping the %d read before: %s", len(self._windows), exc)
            return
        # A change picked up by a running agent is news; the first read (every command does one) is not.
        log.log(logging.DEBUG if first else logging.INFO, "maintenance windows read from %s: %d", self.path,
                len(self._windows))

    def __call__(self, now_s: float, boxes: Sequence[str]) -> dict[str, Active]:
        """Box (of BOXES) -> why it is in maintenance at now_s."""
        self._refresh()
        return in_maintenance(boxes, self._windows, self.recurring, now_s)
