"""Linux capabilities: the bit numbers of /proc/PID/status (CapEff, CapBnd) and the names engines use.

Source of the table: the kernel's include/uapi/linux/capability.h (CAP_CHOWN = 0 ...
CAP_CHECKPOINT_RESTORE = 40, Linux 5.9+). A bit the table does not know is named `CAP_<bit>`.
"""
from __future__ import annotations

from collections.abc import Iterable

# include/uapi/linux/capability.h, in bit order
CAP_NAMES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
ALL_CAPS: frozenset[str] = frozenset(CAP_NAMES)


def normalize(name: str) -> str:
    """An engine's capability name as the kernel's: "sys_admin", "SYS_ADMIN", "CAP_SYS_ADMIN" -> "CAP_SYS_ADMIN"."""
    n = name.strip().upper()
    return n if n.startswith("CAP_") or n == "ALL" else f"CAP_{n}"


def names(values: Iterable[str] | None) -> frozenset[str]:
    """Normalized names of an inspect list (HostConfig.CapAdd/CapDrop; None is empty); "ALL" -> every capability."""
    out = {normalize(v) for v in values or () if isinstance(v, str) and v.strip()}
    if "ALL" in out:
        return ALL_CAPS | (out - {"ALL"})
    return frozenset(out)


def from_mask(mask: int) -> frozenset[str]:
    """The capabilities set in a /proc/PID/status mask (e.g. int("00000000a80425fb", 16))."""
    return frozenset(CAP_NAMES[b] if b < len(CAP_NAMES) else f"CAP_{b}"
                     for b in range(mask.bit_length()) if mask >> b & 1)


def to_mask(caps: Iterable[str]) -> int:
    """The mask of known capability names (the inverse of from_mask for CAP_NAMES)."""
    return sum(1 << CAP_NAMES.index(c) for c in caps if c in CAP_NAMES)


def short(cap: str) -> str:
    """The name `docker run --cap-add` takes: CAP_SYS_ADMIN -> SYS_ADMIN."""
    return cap.removeprefix("CAP_")
