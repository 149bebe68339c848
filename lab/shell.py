"""Run the system tools the lab is built with (ip, docker, nft, nsenter) and fail with clear messages."""
from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Sequence

from lab.errors import LabError

log = logging.getLogger(__name__)


def run(argv: Sequence[str], *, check: bool = True, timeout_s: float = 120.0,
        input_text: str | None = None) -> subprocess.CompletedProcess:
    """Run argv, capture text output; raise LabError naming the command and its stderr when check fails."""
    cmd = [str(a) for a in argv]
    log.debug("lab run: %s", shlex.join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, input=input_text,
                              stdin=None if input_text is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise LabError(f"{cmd[0]!r} is not installed (run scripts/setup)") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"`{shlex.join(cmd)}` did not finish within {timeout_s:.0f}s") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise LabError(f"`{shlex.join(cmd)}` failed (exit {proc.returncode}): {detail}")
    return proc


def ok(argv: Sequence[str], timeout_s: float = 120.0) -> bool:
    """Run argv, return True when it exits 0 (for best-effort steps such as cleanup)."""
    try:
        proc = run(argv, check=False, timeout_s=timeout_s)
    except LabError as exc:
        log.debug("lab run: %s", exc)
        return False
    if proc.returncode != 0:
        log.debug("lab run: `%s` exit %d: %s", shlex.join(map(str, argv)), proc.returncode, proc.stderr.strip())
    return proc.returncode == 0
