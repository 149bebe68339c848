"""Persist the engine's action history (JSON, atomic write, file lock) so every process counts towards the caps."""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator

from remediations.model import HistoryEntry

log = logging.getLogger(__name__)

FILE_NAME = "remediation-history.json"
KEEP_S = 3600.0


def path_in(state_dir: str) -> str:
    """The history file inside STATE_DIR."""
    return os.path.join(state_dir, FILE_NAME)


def _private_dir(directory: str) -> None:
    """The history's directory (the agent's state_dir) exists, 0700 when this makes it (whatever the umask)."""
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    _private_dir(os.path.dirname(os.path.abspath(path)))
    fd = os.open(path + ".lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_raw(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("remediation history %s unreadable (%s); starting empty", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _resets(data: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for box, t in (data.get("resets") or {}).items() if isinstance(data.get("resets"), dict) else ():
        try:
            out[str(box)] = float(t)
        except (TypeError, ValueError):
            log.warning("remediation history: skipping malformed reset %r: %r", box, t)
    return out


def _read(path: str) -> list[HistoryEntry]:
    data = _read_raw(path)
    resets = _resets(data)
    out = []
    for item in data.get("actions", []) or []:
        try:
            e = HistoryEntry(float(item["time_s"]), str(item["box"]), str(item["action"]),
                             str(item["trigger"]), bool(item.get("dry_run", False)))
            if not e.dry_run and e.time_s > resets.get(e.box, float("-inf")):
                out.append(e)
        except (KeyError, TypeError, ValueError):
            log.warning("remediation history %s: skipping malformed entry %r", path, item)
    return out


def _write(path: str, entries: list[HistoryEntry], resets: dict[str, float]) -> None:
    write_json_atomic(path, {"version": 1, "actions": [
        {"time_s": e.time_s, "box": e.box, "action": e.action, "trigger": e.trigger, "dry_run": e.dry_run}
        for e in entries], "resets": resets})


def write_json_atomic(path: str, payload: object) -> None:
    """Write PAYLOAD as JSON to PATH atomically (temp file, fsync, rename), 0600 whatever the umask."""
    _private_dir(os.path.dirname(os.path.abspath(path)))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def load(path: str, now_s: float) -> list[HistoryEntry]:
    """Entries of the last hour stored at PATH (empty when there is no file)."""
    with _locked(path):
        return [e for e in _read(path) if e.time_s > now_s - KEEP_S]


def merge_save(path: str, entries: Iterable[HistoryEntry], now_s: float) -> list[HistoryEntry]:
    """Merge ENTRIES into the file at PATH (under a lock, atomically); returns the merged last hour."""
    with _locked(path):
        resets = _resets(_read_raw(path))
        merged = sorted({e for e in _read(path) + list(entries)
                         if e.time_s > now_s - KEEP_S and not e.dry_run
                         and e.time_s > resets.get(e.box, float("-inf"))}, key=lambda e: e.time_s)
        _write(path, merged, resets)
        return merged


def load_resets(path: str) -> dict[str, float]:
    """box -> when an admin last reset its budget (`remediate reset`); actions before it no longer count."""
    with _locked(path):
        return _resets(_read_raw(path))


def reset_box(path: str, box: str, now_s: float) -> None:
    """Clear BOX's budget in the file at PATH from now_s back (the running agent picks it up)."""
    with _locked(path):
        resets = _resets(_read_raw(path))
        resets[box] = now_s
        _write(path, [e for e in _read(path) if e.time_s > now_s - KEEP_S and e.box != box], resets)
