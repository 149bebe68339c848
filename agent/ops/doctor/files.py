"""Topic files: every file the config names exists and is usable (agent.core.config.file_errors, the one check),
and the in-container commands (`exec` steps, `exec` checks) exist inside their running containers."""
from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterable
from typing import Any

from agent.ops.doctor.results import CheckResult, cfg_value, failed, passed

# Where an argv[0] without a slash is looked up inside the container (agent.checks.runner.ENV's PATH).
CONTAINER_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def check_files(cfg: Any, file_errors: Callable[[Any], list[str]]) -> list[CheckResult]:
    """One FAIL per file the config names that is missing or unusable (FILE_ERRORS: agent.core.config.file_errors)."""
    name = "config files"
    errors = file_errors(cfg)
    if not errors:
        return [passed(name, "every file the config names (tokens, password, CA, client certificate, command "
                             "executables) is there and usable")]
    return [failed(name, err, "create the file (readable by the agent's user) or correct the key "
                              "(check-config lists the same problems)") for err in errors]


def _in_root(root: str, exe: str) -> str | None:
    """The host path of EXE as the container sees it under ROOT (/proc/PID/root), symlinks resolved inside ROOT."""
    candidates = [exe] if "/" in exe else [posixpath.join(d, exe) for d in CONTAINER_PATH]
    for path in candidates:
        host = root + path
        for _ in range(16):   # follow symlinks within the container's root (busybox applets are symlinks)
            if not os.path.islink(host):
                break
            target = os.readlink(host)
            path = target if target.startswith("/") else posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
            host = root + path
        if os.path.isfile(host) and os.access(host, os.X_OK):
            return path
    return None


def container_commands(box: Any, path: str) -> Iterable[tuple[str, str]]:
    """(key path, argv[0]) of the commands run inside BOX's container: its `exec` step and its exec checks.

    PATH names the box as config errors do (Config.box_path: `[[box]] "name" (#1, line 12)`)."""
    exec_argv = cfg_value(box, "exec") or ()
    if exec_argv and "exec" in (cfg_value(box, "remediate") or ()) and "{" not in exec_argv[0]:
        yield f"{path}.exec[0]", exec_argv[0]
    for j, check in enumerate(cfg_value(box, "checks") or ()):
        if getattr(check, "kind", None) == "exec" and check.argv:
            yield f"{path}.check[{j}].argv[0]", check.argv[0]


def check_container_commands(boxes: Iterable[tuple[str, Any, int | None]]) -> list[CheckResult]:
    """For each (key path of the box, box, PID of its running container): its in-container commands exist there.

    Looked up under /proc/PID/root (needs root and the host's PID namespace, as the checks themselves);
    a container that is not running is reported by the boxes topic, its commands are not judged here.
    """
    out = []
    for path, box, pid in boxes:
        name = f"box {cfg_value(box, 'name')} commands"
        wanted = list(container_commands(box, path))
        if not wanted or pid is None:
            continue
        root = f"/proc/{pid}/root"
        if not os.access(root, os.R_OK):
            out.append(failed(name, f"cannot look into the container ({root} not readable)",
                              "run doctor as root in the host's PID namespace"))
            continue
        missing = [f"{key}: {exe!r} not found (or not executable) in container {cfg_value(box, 'container')!r}"
                   for key, exe in wanted if _in_root(root, exe) is None]
        if missing:
            out += [failed(name, m, "install the command in the image or correct the key") for m in missing]
        else:
            out.append(passed(name, ", ".join(f"{k} {e}" for k, e in wanted) + " found in the container"))
    return out
