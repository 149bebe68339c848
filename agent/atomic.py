"""Crash-safe, private file writes: temp file, fsync, rename, fsync the directory (survives kill -9 and power loss).

Everything the agent keeps (state_dir, evidence bundles) is created 0600 (files) / 0700 (directories),
whatever the umask: status, evidence and history can name boxes, addresses and container details.
"""
from __future__ import annotations

import json
import os
from typing import IO, Any

FILE_MODE = 0o600
DIR_MODE = 0o700
# Where the agent keeps everything (freeze state, spool, status.json, evidence, history) unless [agent] state_dir
# says otherwise (FHS 5.8: /var/lib/<package>); the config and the commands that run without one read it here.
DEFAULT_STATE_DIR = "/var/lib/vobox-agent"


def private_dir(path: str) -> str:
    """Make directory PATH (and each missing parent) 0700, umask-independent; PATH itself is made 0700 if it exists."""
    path = os.path.abspath(path)
    missing = []
    head = path
    while not os.path.isdir(head):
        missing.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            pass
        os.chmod(d, DIR_MODE)
    if not missing:
        os.chmod(path, DIR_MODE)
    return path


def open_private(path: str, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """os.open PATH with mode 0600 whatever the umask (an existing file is made 0600 too); returns the fd."""
    fd = os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private_file(path: str, mode: str = "w", encoding: str | None = "utf-8") -> IO[Any]:
    """open() for writing ("w", "wb", "a", "ab"), the file created 0600 whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    fd = open_private(path, flags)
    return os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)


def fsync_dir(directory: str) -> None:
    """fsync a directory so a rename in it is durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: str, data: bytes) -> None:
    """Replace PATH with DATA atomically: readers see the old or the new content, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        private_dir(directory)
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = open_private(tmp)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(directory)


def write_json(path: str, payload: Any) -> None:
    """Replace PATH with PAYLOAD as compact JSON, atomically."""
    write_bytes(path, json.dumps(payload, separators=(",", ":")).encode())
