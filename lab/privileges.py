"""The lab's privilege boxes (the isolation audit, issue 32): containers of the lab image with one privilege each.

This machine cannot start a privileged container ("unable to apply caps: operation not permitted", LAB.md):
the privileged box is CREATED, not started, and audited from inspect alone. The others run, with no network
(the audit reads inspect and /proc; nothing is probed). Names follow lab.names (vbl-<run>-ctr<N>, N from 100),
so the lab's leftover cleanup removes them too.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lab import cleanup, names, shell, state
from lab.image import ensure_image

FIRST_INDEX = 100
ENGINE_SOCKET = "/var/run/docker.sock"


@dataclass(frozen=True)
class PrivilegeBox:
    """One box: its role, container name, the `docker run` flags that give it its privilege, started or not."""

    role: str
    container: str
    flags: tuple[str, ...]
    started: bool


def claim_run() -> str:
    """A new run id recorded as owned by this process (a state file, not visible to `vobox-lab status`), so the
    leftover cleanup of other labs running at the same time leaves its containers alone; lab.cleanup.remove_run
    removes the containers, the run directory and the state file."""
    with state.locked():
        existing = cleanup.all_run_ids()
        run_id = names.new_run_id()
        while run_id in existing:
            run_id = names.new_run_id()
        state.write({"run_id": run_id, "owner_pid": os.getpid(), "owner_start": state.process_start_ticks(os.getpid()),
                     "persistent": False, "visible": False, "complete": True, "privilege_boxes": True})
    return run_id


def specs(cvmfs_dir: str) -> dict[str, tuple[tuple[str, ...], bool]]:
    """role -> (flags, started). `clean` is hardened so that it has no finding at all (every finding's absence);
    `cvmfs` mounts CVMFS_DIR on /cvmfs without propagation (rprivate: the host's autofs mounts never appear)."""
    return {
        "privileged": (("--privileged",), False),
        "sysadmin": (("--cap-add", "SYS_ADMIN"), True),
        "netadmin": (("--cap-add", "NET_ADMIN"), True),
        "socket": (("-v", f"{ENGINE_SOCKET}:{ENGINE_SOCKET}"), True),
        "pidhost": (("--pid", "host"), True),
        "seccomp": (("--security-opt", "seccomp=unconfined"), True),
        "cvmfs": (("-v", f"{cvmfs_dir}:/cvmfs:ro"), True),
        # inspect-only findings that would reach the host if started (host network/IPC/UTS/user namespace,
        # a device, a sensitive directory read-write, shared propagation, restart always): created, not started
        "hostwide": (("--network", "host", "--ipc", "host", "--uts", "host", "--userns", "host", "--device",
                      "/dev/fuse", "--restart", "always", "-v", "/etc:/host-etc", "-v", f"{cvmfs_dir}:/shared:rshared"),
                     False),
        "clean": (("--memory", "256m", "--pids-limit", "256", "--restart", "on-failure:5",
                   "--security-opt", "no-new-privileges", "-v", f"{cvmfs_dir}:/cvmfs:ro,rslave"), True),
    }


def container_name(run_id: str, index: int) -> str:
    """vbl-<run>-ctr<index> (lab.names.CONTAINER_RE)."""
    return f"vbl-{run_id}-ctr{index}"


def create(run_id: str, roles: Sequence[str] | None = None, *, cvmfs_dir: str,
           extra: Mapping[str, Sequence[str]] | None = None) -> dict[str, PrivilegeBox]:
    """Create (and start, except the privileged one) the privilege boxes of ROLES (default all); role -> box.

    extra: role -> more flags (e.g. a recreation with more privileges). LabError when the engine refuses.
    """
    image = ensure_image()
    make_shared(cvmfs_dir)
    table = specs(cvmfs_dir)
    out = {}
    for role in roles or list(table):
        flags, started = table[role]
        flags = (*flags, *((extra or {}).get(role, ())))
        name = container_name(run_id, FIRST_INDEX + list(table).index(role))
        network = () if "--network" in flags else ("--network", "none")
        shell.run(["docker", "create", "--name", name, *network, "--label", f"vobox.lab.role={role}",
                   *flags, image, "1093"])
        if started:
            shell.run(["docker", "start", name])
        out[role] = PrivilegeBox(role, name, tuple(flags), started)
    return out


def make_shared(path: str) -> None:
    """PATH as a shared mount point of its own (a bind mount of itself, made shared), as /cvmfs is on a VO-Box host
    (an autofs mount point; systemd makes / shared): rslave needs a shared or slave source ("not a shared or slave
    mount" otherwise), and a mount made under it later reaches only the boxes that mount it rslave."""
    os.makedirs(path, exist_ok=True)
    if not shell.ok(["mountpoint", "-q", path]):
        shell.run(["mount", "--bind", path, path])
    shell.run(["mount", "--make-shared", path])


def release(path: str) -> None:
    """Unmount PATH and everything under it (make_shared's bind mount; best effort)."""
    shell.ok(["umount", "-R", "-l", path])


def remove(boxes: Mapping[str, PrivilegeBox] | Sequence[str]) -> None:
    """Remove the boxes' containers (best effort)."""
    names = [b.container for b in boxes.values()] if isinstance(boxes, Mapping) else list(boxes)
    if names:
        shell.ok(["docker", "rm", "-f", *names])
