"""Topic privileges: the raw sockets the probes need, and every capability the agent uses (CapEff), per feature."""
from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.ops.doctor.results import CheckResult, failed, passed, warned

# The safe order (issue 33): the unit's AmbientCapabilities; in a container --cap-add; only where neither applies a
# file capability, on a copy of the interpreter that root and the agent's group alone may run (never the system's
# /usr/bin/python3.X, which every local user runs). The operator guide, "Privileges", says it at length.
SETCAP_FIX = ("run as root, or grant the capability: under systemd AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN "
              "(the unit shipped in share/vobox-agent does); in a container --cap-add NET_RAW --cap-add NET_ADMIN; "
              "else a copy of the interpreter for the agent alone: `install -m 0750 -o root -g vobox "
              "$(readlink -f venv/bin/python3) venv/bin/python3-caps && setcap cap_net_raw,cap_net_admin+ep "
              "venv/bin/python3-caps` (never setcap the system's python3: every local user would hold the capability)")
XATTR_CAPS = "security.capability"   # the file capabilities (linux/capability.h, struct vfs_cap_data)


def check_raw_socket(open_socket: Callable[..., socket.socket] = socket.socket) -> CheckResult:
    """Can this process open the raw sockets the ICMP and ARP probes need (CAP_NET_RAW)?"""
    name = "raw-socket privilege"
    tried = []
    for family, kind, proto, what in (
        (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP, "raw ICMP"),
        (socket.AF_PACKET, socket.SOCK_RAW, 0x0806, "packet (ARP)"),
    ):
        try:
            open_socket(family, kind, proto).close()
        except PermissionError as exc:
            return failed(name, f"cannot open a {what} socket: {exc}", SETCAP_FIX)
        except OSError as exc:
            return failed(name, f"cannot open a {what} socket: {exc}",
                         "the kernel refused a raw socket for a reason other than privilege; see the error")
        tried.append(what)
    return passed(name, f"{' and '.join(tried)} sockets open")


# --- capabilities: which the process has (CapEff), and which features each missing one disables ---

# Bit numbers from linux/capability.h (only those the agent uses).
CAP_BITS = {"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21}
# Docker's default capability set of a container process (CapPrm 00000000a80425fb): CHOWN, DAC_OVERRIDE,
# FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE,
# SETFCAP. Opening /proc/PID/ns/* of such a process needs CAP_SYS_PTRACE unless the agent runs as the same
# user (root) with every one of these (the kernel's ptrace access check; measured with setpriv + nsenter).
DOCKER_DEFAULT_CAPS = 0xA80425FB


@dataclass(frozen=True, slots=True)
class Feature:
    """Something the agent does that needs a capability; in_use(cfg) says whether this config uses it."""

    text: str
    in_use: Callable[[Any], bool]
    needed: bool = False          # without it `run` does not start (a FAIL, not a WARN)


def _containers(cfg: Any) -> bool:
    return any(getattr(b, "kind", None) == "container" for b in getattr(cfg, "boxes", ()) or ())


def _checks(cfg: Any) -> bool:
    return any(getattr(b, "checks", ()) for b in getattr(cfg, "boxes", ()) or ())


def _forensics_in_containers(cfg: Any) -> bool:
    return bool(getattr(getattr(cfg, "forensics", None), "enabled", False)) and _containers(cfg)


def _announce(cfg: Any) -> bool:
    return bool(getattr(getattr(cfg, "remediation", None), "enabled", False)) and _containers(cfg)


def _always(_cfg: Any) -> bool:
    return True


def _never(_cfg: Any) -> bool:
    return False


_NS = "setns into a container's namespaces (opening /proc/PID/ns/*)"
# Capability -> the features that need it (what `grep` of agent/, probes/, remediations/ shows).
CAPABILITIES: dict[str, tuple[Feature, ...]] = {
    "CAP_NET_RAW": (
        Feature("icmp, icmp6, arp and ndp probes (raw and packet sockets); `run` refuses to start without it",
                _always, needed=True),
        Feature("the gratuitous ARP / unsolicited NA after reconnect_network (a packet socket)", _announce),
    ),
    "CAP_NET_ADMIN": (
        Feature("probe socket buffers beyond net.core.rmem_max/wmem_max (SO_RCVBUFFORCE/SO_SNDBUFFORCE): "
                "without it large sweeps (thousands of targets) may drop replies, seen as loss", _always),
    ),
    "CAP_SYS_ADMIN": (
        Feature("`--netns NAME` (setns into the monitor namespace)", _never),
        Feature("the announce after reconnect_network (setns into the container's network namespace)", _announce),
        Feature("evidence read in the container's network namespace (container_net: nsenter -n)",
                _forensics_in_containers),
        Feature("in-container checks ([[box.check]]: nsenter -m)", _checks),
    ),
    "CAP_SYS_CHROOT": (
        Feature("in-container checks ([[box.check]]: setns into a mount namespace needs it with CAP_SYS_ADMIN)",
                _checks),
    ),
    "CAP_SYS_PTRACE": (
        Feature(_NS + " unless the agent is root with every capability of Docker's default set: the announce, "
                "container_net evidence and in-container checks",
                lambda cfg: _announce(cfg) or _forensics_in_containers(cfg) or _checks(cfg)),
    ),
}


def effective_caps(status_text: str) -> int:
    """The CapEff bit mask from the text of /proc/self/status; ValueError when the line is missing."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split(":", 1)[1].strip(), 16)
    raise ValueError("no CapEff line in /proc/self/status")


def read_proc_status() -> str:
    """/proc/self/status of this process."""
    with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
        return fh.read()


def check_capabilities(cfg: Any, status_text: str, as_root: bool) -> list[CheckResult]:
    """One line per capability the agent uses: present, or missing and which features that disables here.

    STATUS_TEXT: /proc/self/status (CapEff); AS_ROOT: euid 0 (without CAP_SYS_PTRACE, only a root agent holding
    Docker's default capability set may open a container process's namespaces).
    """
    try:
        eff = effective_caps(status_text)
    except ValueError as exc:
        return [failed("capabilities", f"cannot read the effective capabilities: {exc}")]
    out = []
    for cap, features in CAPABILITIES.items():
        name = f"capability {cap}"
        if eff >> CAP_BITS[cap] & 1:
            out.append(passed(name, "present (" + "; ".join(f.text.split(" (")[0] for f in features) + ")"))
            continue
        if cap == "CAP_SYS_PTRACE" and as_root and eff & DOCKER_DEFAULT_CAPS == DOCKER_DEFAULT_CAPS:
            out.append(passed(name, "missing, not needed: the agent is root and holds Docker's default capability "
                                    "set, so it may open its containers' namespaces (a container running as "
                                    "another user, or with added capabilities, needs it)"))
            continue
        used = [f for f in features if f.in_use(cfg)]
        fix = (f"grant it: AmbientCapabilities={cap} in the unit (and CapabilityBoundingSet), "
               f"--cap-add {cap[4:]} for a container, or setcap {cap.lower()}+ep on the interpreter")
        if not used:
            out.append(passed(name, "missing, not needed by this config (it would disable: "
                                    + "; ".join(f.text for f in features) + ")"))
        elif any(f.needed for f in used):
            out.append(failed(name, "missing: disables " + "; ".join(f.text for f in used), fix))
        else:
            out.append(warned(name, "missing: disables " + "; ".join(f.text for f in used), fix))
    return out


def file_caps(raw: bytes) -> int:
    """The permitted capability mask of a `security.capability` value (struct vfs_cap_data, little-endian: magic,
    then permitted/inheritable pairs of 32 bits, one pair for revision 1, two for 2 and 3); ValueError when short."""
    if len(raw) < 12:
        raise ValueError(f"{len(raw)} bytes")
    words = [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw) - len(raw) % 4, 4)]
    permitted = words[1]
    if len(words) >= 5:
        permitted |= words[3] << 32
    return permitted


def _cap_names(mask: int) -> str:
    names = {bit: name for name, bit in CAP_BITS.items()}
    return ",".join(names.get(b, f"cap {b}") for b in range(64) if mask >> b & 1) or "no capability"


def check_interpreter_caps(executable: str, getxattr: Callable[[str, str], bytes] = os.getxattr,
                           stat: Callable[[str], os.stat_result] = os.stat) -> CheckResult:
    """Does the interpreter running the agent carry file capabilities that other users may use too?

    EXECUTABLE is resolved (a venv's python3 is a link to the system's). With file capabilities and the execute bit
    for others (mode & 0o001), every local user gets them by running it: a warning with the safe set-up (the unit's
    AmbientCapabilities; else a 0750 root:<agent group> copy). GETXATTR and STAT are injected for tests.
    """
    name = "interpreter capabilities"
    path = os.path.realpath(executable)
    try:
        raw = getxattr(path, XATTR_CAPS)
    except OSError:   # ENODATA: no file capabilities (the usual case); ENOTSUP: a filesystem without them
        return passed(name, f"{path} carries no file capability (the unit's AmbientCapabilities, or root, give "
                            "the agent its capabilities)")
    try:
        caps = _cap_names(file_caps(raw))
    except ValueError as exc:
        caps = f"an unreadable capability set ({exc})"
    mode = stat(path).st_mode
    if mode & 0o001:
        return warned(name, f"{path} carries {caps} and every local user may run it (mode {mode & 0o7777:04o}): "
                            "any user's script gets those capabilities",
                      f"`setcap -r {path}` and use AmbientCapabilities= in the unit; where a file capability is "
                      f"needed, put it on a copy only the agent's group may run: `install -m 0750 -o root -g "
                      f"GROUP {path} COPY && setcap cap_net_raw,cap_net_admin+ep COPY`, and run the agent with COPY")
    return passed(name, f"{path} carries {caps}; only its owner and group may run it (mode {mode & 0o7777:04o})")


def check_proc(read: Callable[[str], str]) -> CheckResult:
    """Can this process see other processes in /proc (container PIDs for checks, evidence, the announce)?"""
    name = "/proc access"
    try:
        read("/proc/1/cgroup")
    except OSError as exc:
        return warned(name, f"cannot read /proc/1/cgroup ({exc}): other processes are hidden (ProtectProc= or "
                            "hidepid): in-container checks, container_net evidence and the announce cannot find "
                            "container processes",
                      "run with ProtectProc=default (not invisible) where those features are wanted")
    return passed(name, "other processes visible (container PIDs for checks, evidence, the announce)")
