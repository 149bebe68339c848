"""Per-lab state files under /run/vobox-lab: what a lab made, who owns it, which faults are active."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator

STATE_DIR = os.environ.get("VOBOX_LAB_STATE_DIR", "/run/vobox-lab")


def state_path(run_id: str) -> str:
    """The JSON state file of one lab."""
    return os.path.join(STATE_DIR, f"{run_id}.json")


def run_dir(run_id: str) -> str:
    """Directory for one lab's files (InfluxDB data, web root, agent state)."""
    return os.path.join(STATE_DIR, run_id)


def read(run_id: str) -> dict | None:
    """The state of one lab, or None when it has no (readable) state file."""
    try:
        with open(state_path(run_id)) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write(state: dict) -> None:
    """Atomically write a lab's state file."""
    os.makedirs(STATE_DIR, exist_ok=True)
    path = state_path(state["run_id"])
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def remove(run_id: str) -> None:
    """Delete a lab's state and lock files."""
    for path in (state_path(run_id), os.path.join(STATE_DIR, f"{run_id}.lock")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def run_ids() -> list[str]:
    """Run ids that have a state file."""
    try:
        names = os.listdir(STATE_DIR)
    except FileNotFoundError:
        return []
    return sorted(n[:-5] for n in names if n.endswith(".json"))


@contextlib.contextmanager
def locked(name: str = "global") -> Iterator[None]:
    """Hold an exclusive flock on STATE_DIR/<name>.lock (across processes) for the body."""
    os.makedirs(STATE_DIR, exist_ok=True)
    fd = os.open(os.path.join(STATE_DIR, f"{name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def process_start_ticks(pid: int) -> int | None:
    """Start time of a process (clock ticks since boot), or None when it does not exist or is a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def owner_alive(state: dict) -> bool:
    """True while the process that created the lab still runs (same pid and start time)."""
    pid = state.get("owner_pid")
    if not isinstance(pid, int):
        return False
    return process_start_ticks(pid) == state.get("owner_start")
