"""The lab's naming scheme: every name carries the run id, so leftovers can be found by name alone."""
from __future__ import annotations

import re
import secrets

RUN_ID_LEN = 6
_ID = r"([0-9a-f]{6})"
NETNS_RE = re.compile(rf"^vbl-{_ID}-[a-z0-9]+$")
LINK_RE = re.compile(rf"^vbl{_ID}[a-z][0-9]*$")
CONTAINER_RE = re.compile(rf"^vbl-{_ID}-ctr[0-9]+$")
NETWORK_RE = re.compile(rf"^vbl-{_ID}-[a-z0-9]+$")   # the lab's -net and networks tests add (-other)
RUN_ID_RE = re.compile(rf"^{_ID}$")


def new_run_id() -> str:
    """A fresh short hex run id."""
    return secrets.token_hex(RUN_ID_LEN // 2)


def check_run_id(run_id: str) -> str:
    """Return run_id when it is well formed, else raise ValueError."""
    if not RUN_ID_RE.match(run_id or ""):
        raise ValueError(f"lab run id must be {RUN_ID_LEN} lower-case hex digits, got {run_id!r}")
    return run_id


def parent_link(run_id: str) -> str:
    """Root-side veth end, the macvlan parent (the L2 segment)."""
    return f"vbl{run_id}p"


def monitor_link(run_id: str) -> str:
    """Monitor-side veth end, inside the monitor namespace."""
    return f"vbl{run_id}m"


def vm_link(run_id: str, index: int) -> str:
    """The macvlan of VM stand-in number `index` (1-based), inside its namespace."""
    return f"vbl{run_id}v{index}"


def monitor_netns(run_id: str) -> str:
    """The monitor namespace: everything that probes runs in it."""
    return f"vbl-{run_id}-mon"


def vm_netns(run_id: str, index: int) -> str:
    """Namespace of VM stand-in number `index`."""
    return f"vbl-{run_id}-vm{index}"


def network(run_id: str) -> str:
    """The Docker macvlan network."""
    return f"vbl-{run_id}-net"


def container(run_id: str, index: int) -> str:
    """Docker name of container box number `index`."""
    return f"vbl-{run_id}-ctr{index}"


def container_box(index: int) -> str:
    """Box name (and hostname) of container box number `index`."""
    return f"ctr{index}"


def vm_box(index: int) -> str:
    """Box name of VM stand-in number `index`."""
    return f"vm{index}"


def vm_mac(run_id: str, index: int) -> str:
    """Locally administered unicast MAC of a VM stand-in, derived from the run id."""
    b = bytes.fromhex(run_id)
    return f"06:{b[0]:02x}:{b[1]:02x}:{b[2]:02x}:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}"


for _n in (parent_link("abcdef"), monitor_link("abcdef"), vm_link("abcdef", 99)):
    assert len(_n) <= 15, _n
