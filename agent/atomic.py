"""Crash-safe file writes: temp file, fsync, rename, fsync the directory (survives kill -9 and power loss)."""
from __future__ import annotations

import json
import os
from typing import Any


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
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
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
