"""Reversible per-box faults: an explicit registry of (box kind, fault kind) -> apply / clear."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from collections.abc import Callable
from typing import Protocol

from lab import cvmfs, shell
from lab.box import LabBox
from lab.engine import LabEngine
from lab.errors import LabError


class Lab(Protocol):
    """What the faults need of a lab (lab.lab.Lab provides it); faults never import the Lab itself."""

    @property
    def run_id(self) -> str: ...
    @property
    def cvmfs_mode_dir(self) -> str: ...
    @property
    def engine(self) -> LabEngine: ...

    def container_pid(self, name: str) -> int: ...

    def container_mac(self, ctr: str) -> str | None: ...

    @staticmethod
    def vm_addresses(ns: str, link: str, ipv4: str, ipv6: str) -> None: ...

    def start_vm_listeners(self, box: LabBox) -> list[int]: ...

    def stop_vm_listeners(self, box: LabBox) -> None: ...

log = logging.getLogger(__name__)

FAULT_KINDS = ("l2", "l3", "l4", "stop", "pause", "hang", "cvmfs-hang", "cvmfs-error")
FAULT_HELP = {
    "l2": "no ARP/NDP answer (container: network disconnect; vm: link down)",
    "l3": "ARP/NDP answered, IP dropped (nft table in the box's namespace)",
    "l4": "ping answered, service ports dead (container: nft drop of TCP to its service and TLS ports in its "
          "namespace, not paused; vm: listeners killed, ports closed)",
    "stop": "box stopped (container: docker/podman stop; vm: listeners killed and link down)",
    "pause": "container only: plain docker/podman pause (cgroup freezer); the kernel still answers ping and completes "
             "TCP handshakes until each listen backlog is full, nothing is ever served",
    "hang": "service hung, socket kept: its processes get SIGSTOP (container: httpd and the TLS server inside it, "
            "Docker state stays running; vm: its listeners); connects succeed while the backlog lasts, no byte "
            "is ever answered",
    "cvmfs-hang": "container only: every operation on /cvmfs blocks until cleared (a hung cvmfs2, cvmfs issue 3378)",
    "cvmfs-error": "container only: every operation on /cvmfs fails with ENOTCONN 'Transport endpoint is not "
                   "connected' (a dead cvmfs2, cvmfs issue 3512)",
}
NFT_TABLE = "vobox_lab_l3"
# inet = IPv4 + IPv6; ARP is its own family, so ARP still answers. NDP must pass for an l3 fault.
NFT_L3 = f"""
table inet {NFT_TABLE} {{
  chain input {{
    type filter hook input priority -300; policy drop;
    icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept
  }}
  chain output {{
    type filter hook output priority -300; policy drop;
    icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept
  }}
}}
"""

NFT_L4_TABLE = "vobox_lab_l4"

Action = Callable[["Lab", "LabBox"], None]


def check_kind(kind: str, box_kind: str | None = None) -> str:
    """Return kind when it is a fault kind (for box_kind, when given), else raise LabError listing the valid ones."""
    if kind not in FAULT_KINDS:
        raise LabError(f"unknown fault {kind!r}; valid: {', '.join(FAULT_KINDS)}")
    if box_kind is not None and (box_kind, kind) not in APPLY:
        valid = [k for k in FAULT_KINDS if (box_kind, k) in APPLY]
        raise LabError(f"fault {kind!r} is not made for {box_kind} boxes; valid for them: {', '.join(valid)}")
    return kind


def _in_box_ns(lab: Lab, box: LabBox) -> list[str]:
    if box.kind == "container":
        return ["nsenter", "-t", str(lab.container_pid(box.name)), "-n"]
    return ["ip", "netns", "exec", box.vm_netns]


def _nft_drop(lab: Lab, box: LabBox) -> None:
    shell.run([*_in_box_ns(lab, box), "nft", "-f", "-"], input_text=NFT_L3)


def _delete_table(lab: Lab, box: LabBox, table: str) -> None:
    """Delete an nft table in the box's namespace; already gone (e.g. a restarted container) is fine."""
    if box.kind == "container" and _ctr_state(lab, box) not in ("running", "paused"):
        return
    proc = shell.run([*_in_box_ns(lab, box), "nft", "delete", "table", "inet", table], check=False)
    if proc.returncode != 0 and "no such file" not in proc.stderr.lower():
        raise LabError(f"box {box.name}: cannot delete nft table {table}: {proc.stderr.strip()}")


def _nft_undrop(lab: Lab, box: LabBox) -> None:
    _delete_table(lab, box, NFT_TABLE)


def _ctr_state(lab: Lab, box: LabBox) -> str:
    return shell.run(lab.engine.cmd("inspect", "-f", "{{.State.Status}}", box.container_name)).stdout.strip()


def _ctr_networks(lab: Lab, box: LabBox) -> list[str]:
    out = shell.run(lab.engine.cmd("inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                     box.container_name)).stdout
    return out.split()


def _ctr_disconnect(lab: Lab, box: LabBox) -> None:
    shell.run(lab.engine.cmd("network", "disconnect", "-f", box.container_network, box.container_name))


def _ctr_reconnect(lab: Lab, box: LabBox) -> None:
    # Clears tolerate a box someone else healed meanwhile (e.g. a remediation test reconnected it).
    if box.network not in _ctr_networks(lab, box):
        # Podman picks a random MAC on every connect unless it is given one (LAB.md, Podman); dockerd 20.10
        # derives it from the IPv4 address, and its CLI has no --mac-address on connect.
        keep = ["--mac-address", box.mac] if lab.engine.name == "podman" and box.mac else []
        shell.run(lab.engine.cmd("network", "connect", "--ip", box.ipv4, "--ip6", box.ipv6, *keep,
                                 box.container_network, box.container_name))
    mac = lab.container_mac(box.container_name)
    if mac and box.mac and mac != box.mac:
        log.warning("lab %s: box %s came back with MAC %s (was %s)", lab.run_id, box.name, mac, box.mac)


def _service_ports(box: LabBox) -> tuple[int, ...]:
    return box.tcp_ports + ((box.tls_port,) if box.tls_port else ())


def _ctr_drop_ports(lab: Lab, box: LabBox) -> None:
    # Every TCP segment from the network to the service ports is dropped in the container's own
    # namespace; ARP, NDP, ICMP, loopback and the processes are untouched: the box answers ping and its
    # services still run (a host firewall or a dead port forwarding looks like this from outside).
    ports = ", ".join(str(p) for p in _service_ports(box))
    rules = (f"table inet {NFT_L4_TABLE} {{\n  chain input {{\n"
             f"    type filter hook input priority -300; policy accept;\n"
             f"    iifname != \"lo\" tcp dport {{ {ports} }} drop\n  }}\n}}\n")
    shell.run([*_in_box_ns(lab, box), "nft", "-f", "-"], input_text=rules)


def _ctr_undrop_ports(lab: Lab, box: LabBox) -> None:
    _ctr_start(lab, box)  # a box stopped behind the lab's back comes back too
    _delete_table(lab, box, NFT_L4_TABLE)


def _ctr_pause(lab: Lab, box: LabBox) -> None:
    # Nothing else: a paused container's kernel still answers ping and completes TCP handshakes into
    # each listen backlog until it is full; that is how a frozen VO-Box looks, and the lab keeps it so.
    shell.run(lab.engine.cmd("pause", box.container_name))


SERVICE_PROCESSES = ("httpd", "openssl")  # the container box's services (lab/image/serve.sh, tls.sh)


def _ctr_signal_services(lab: Lab, box: LabBox, sig: str) -> None:
    names = " ".join(SERVICE_PROCESSES)
    shell.run(lab.engine.cmd("exec", box.container_name, "sh", "-c",
                             f"pids=$(pidof {names}); [ -z \"$pids\" ] || kill -{sig} $pids"))


def _ctr_hang(lab: Lab, box: LabBox) -> None:
    # Only the service processes stop (PID 1 and the kernel run on): the listening sockets stay, the
    # kernel completes handshakes into their backlogs, nobody accept()s or answers; Docker says running.
    _ctr_signal_services(lab, box, "STOP")


def _ctr_unhang(lab: Lab, box: LabBox) -> None:
    if _ctr_state(lab, box) == "running":
        _ctr_signal_services(lab, box, "CONT")
    else:
        _ctr_start(lab, box)


def _ctr_cvmfs(mode: str | None) -> Action:
    def act(lab: Lab, box: LabBox) -> None:
        cvmfs.set_mode(lab.cvmfs_mode_dir, box.name, mode)
    return act


def _ctr_stop(lab: Lab, box: LabBox) -> None:
    shell.run(lab.engine.cmd("stop", "-t", "3", box.container_name))


def _ctr_start(lab: Lab, box: LabBox) -> None:
    status = _ctr_state(lab, box)
    if status == "paused":
        shell.run(lab.engine.cmd("unpause", box.container_name))
    elif status != "running":
        shell.run(lab.engine.cmd("start", box.container_name))


def _vm_link_down(lab: Lab, box: LabBox) -> None:
    shell.run(["ip", "-n", box.vm_netns, "link", "set", box.vm_link, "down"])


def _vm_link_up(lab: Lab, box: LabBox) -> None:
    shell.run(["ip", "-n", box.vm_netns, "link", "set", box.vm_link, "up"])
    lab.vm_addresses(box.vm_netns, box.vm_link, box.ipv4, box.ipv6)


def _vm_kill_listeners(lab: Lab, box: LabBox) -> None:
    lab.stop_vm_listeners(box)


def _vm_start_listeners(lab: Lab, box: LabBox) -> None:
    lab.stop_vm_listeners(box)  # never two of them on a port
    lab.start_vm_listeners(box)


def _vm_signal_listeners(box: LabBox, sig: signal.Signals) -> None:
    pids = [int(p) for p in shell.run(["ip", "netns", "pids", box.vm_netns]).stdout.split() if p.isdigit()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _vm_hang(lab: Lab, box: LabBox) -> None:
    _vm_signal_listeners(box, signal.SIGSTOP)


def _vm_unhang(lab: Lab, box: LabBox) -> None:
    _vm_signal_listeners(box, signal.SIGCONT)


def _vm_stop(lab: Lab, box: LabBox) -> None:
    _vm_kill_listeners(lab, box)
    _vm_link_down(lab, box)


def _vm_start(lab: Lab, box: LabBox) -> None:
    _vm_link_up(lab, box)
    _vm_start_listeners(lab, box)


APPLY: dict[tuple[str, str], Action] = {
    ("container", "l2"): _ctr_disconnect,
    ("container", "l3"): _nft_drop,
    ("container", "l4"): _ctr_drop_ports,
    ("container", "stop"): _ctr_stop,
    ("container", "pause"): _ctr_pause,
    ("container", "hang"): _ctr_hang,
    ("container", "cvmfs-hang"): _ctr_cvmfs(cvmfs.HANG),
    ("container", "cvmfs-error"): _ctr_cvmfs(cvmfs.ERROR),
    ("vm", "l2"): _vm_link_down,
    ("vm", "l3"): _nft_drop,
    ("vm", "l4"): _vm_kill_listeners,
    ("vm", "stop"): _vm_stop,
    ("vm", "hang"): _vm_hang,
}
CLEAR: dict[tuple[str, str], Action] = {
    ("container", "l2"): _ctr_reconnect,
    ("container", "l3"): _nft_undrop,
    ("container", "l4"): _ctr_undrop_ports,
    ("container", "stop"): _ctr_start,
    ("container", "pause"): _ctr_start,
    ("container", "hang"): _ctr_unhang,
    ("container", "cvmfs-hang"): _ctr_cvmfs(None),
    ("container", "cvmfs-error"): _ctr_cvmfs(None),
    ("vm", "l2"): _vm_link_up,
    ("vm", "l3"): _nft_undrop,
    ("vm", "l4"): _vm_start_listeners,
    ("vm", "stop"): _vm_start,
    ("vm", "hang"): _vm_unhang,
}


def apply(lab: Lab, box: LabBox, kind: str) -> None:
    """Inject fault `kind` into box."""
    check_kind(kind, box.kind)
    log.debug("lab %s: box %s apply fault %s", lab.run_id, box.name, kind)
    APPLY[(box.kind, kind)](lab, box)


def clear(lab: Lab, box: LabBox, kind: str) -> None:
    """Undo fault `kind` on box; a Podman container box also gets its recorded MAC back (restore_mac)."""
    check_kind(kind, box.kind)
    log.debug("lab %s: box %s clear fault %s", lab.run_id, box.name, kind)
    CLEAR[(box.kind, kind)](lab, box)
    if box.kind == "container" and lab.engine.name == "podman":
        restore_mac(lab, box)


def restore_container(lab: Lab, box: LabBox) -> None:
    """Bring a container box back as the lab made it, whatever was done to it behind the lab's back: running,
    not paused, on its network with its IPv4, IPv6 and (Podman) recorded MAC. Through the engine's CLI."""
    _ctr_start(lab, box)
    _ctr_reconnect(lab, box)
    if lab.engine.name == "podman":
        restore_mac(lab, box)


def restore_mac(lab: Lab, box: LabBox) -> bool:
    """Give a running container box its recorded MAC back when its engine gave it another; True when it did.

    Podman picks a random MAC at every start and restart (LAB.md, Podman; seen here: run, restart and
    stop + start each gave another), so a box the lab started again would come back under a new MAC and
    the monitor's neighbour cache would point at the old one for a while. The lab brings the box back as
    it was: disconnect, then connect with the same IPv4, IPv6 and MAC (Podman then keeps that MAC for
    later restarts of this container).
    """
    if not box.mac or _ctr_state(lab, box) != "running":
        return False
    mac = lab.container_mac(box.container_name)
    if mac == box.mac:
        return False
    if box.network in _ctr_networks(lab, box):
        shell.run(lab.engine.cmd("network", "disconnect", "-f", box.container_network, box.container_name))
    shell.run(lab.engine.cmd("network", "connect", "--ip", box.ipv4, "--ip6", box.ipv6, "--mac-address", box.mac,
                             box.container_network, box.container_name))
    log.info("lab %s: box %s came back with MAC %s; restored %s (%s)", lab.run_id, box.name, mac, box.mac,
             _announce(lab, box))
    return True


def _announce(lab: Lab, box: LabBox) -> str:
    """Gratuitous ARP and unsolicited NA for the box's addresses at its recorded MAC, from its namespace.

    A restored MAC is a MAC change the LAN hears of only this way: without it the monitor's neighbour
    entry keeps the MAC the engine gave meanwhile (REACHABLE for up to 45 s, RFC 4861's
    MAX_RANDOM_FACTOR * REACHABLE_TIME), and the box looks dead to it for that long."""
    from remediations.announce import announce_from_pid

    pid = shell.run(lab.engine.cmd("inspect", "-f", "{{.State.Pid}}", box.container_name)).stdout.strip()
    try:
        return "announced " + ",".join(announce_from_pid(int(pid), box.mac, box.ipv4, box.ipv6))
    except (OSError, ValueError) as exc:
        return f"not announced: {exc}"


# ----- segment-level random loss -------------------------------------------------------------------
NFT_LOSS_TABLE = "vobox_lab_loss"
LOSS_RESOLUTION = 10000   # numgen modulus: the loss share is set in steps of 0.01 %


def check_loss_percent(percent: float) -> float:
    """percent as a float when it is a loss share 0..100 (0 = off), else LabError."""
    try:
        value = float(percent)
    except (TypeError, ValueError):
        raise LabError(f"loss percent must be a number 0..100, got {percent!r}") from None
    if not 0.0 <= value <= 100.0:
        raise LabError(f"loss percent must be 0..100, got {value:g}")
    return value


def loss_rules(link: str, percent: float) -> str:
    """nft text of a netdev table dropping about PERCENT % of every frame arriving on LINK (ARP and NDP too).

    Only at ingress, on the receiving end: a drop at egress is reported to the sender (ENOBUFS from
    sendmsg), which may send again, so it is not what a lossy wire does. The netdev ingress hook sits below
    ARP, IP and protocol-bound AF_PACKET sockets. Named counters count the frames seen and dropped.
    """
    threshold = round(check_loss_percent(percent) / 100.0 * LOSS_RESOLUTION)
    return (f"table netdev {NFT_LOSS_TABLE} {{\n"
            f"  counter seen {{ }}\n  counter dropped {{ }}\n"
            f"  chain ingress {{\n"
            f"    type filter hook ingress device \"{link}\" priority -500; policy accept;\n"
            f"    counter name \"seen\"\n"
            f"    numgen random mod {LOSS_RESOLUTION} < {threshold} counter name \"dropped\" drop\n"
            f"  }}\n}}\n")


def set_loss(in_ns: list[str], link: str, percent: float) -> None:
    """Replace the loss table in the namespace IN_NS enters (a command prefix) by one for LINK; 0 = none."""
    proc = shell.run([*in_ns, "nft", "delete", "table", "netdev", NFT_LOSS_TABLE], check=False)
    if proc.returncode != 0 and "no such file" not in proc.stderr.lower():
        raise LabError(f"cannot remove nft table {NFT_LOSS_TABLE} ({' '.join(in_ns)}): {proc.stderr.strip()}")
    if check_loss_percent(percent) > 0:
        shell.run([*in_ns, "nft", "-f", "-"], input_text=loss_rules(link, percent))


def loss_counters(in_ns: list[str]) -> tuple[int, int] | None:
    """(frames seen, frames dropped) by the loss table in the namespace IN_NS enters; None without one."""
    proc = shell.run([*in_ns, "nft", "-j", "list", "counters", "table", "netdev", NFT_LOSS_TABLE], check=False)
    if proc.returncode != 0:
        if "no such file" in proc.stderr.lower():
            return None
        raise LabError(f"cannot read the loss counters ({' '.join(in_ns)}): {proc.stderr.strip()}")
    packets = {c["counter"]["name"]: int(c["counter"]["packets"])
               for c in json.loads(proc.stdout)["nftables"] if "counter" in c}
    return packets["seen"], packets["dropped"]


def box_loss_target(lab: Lab, box: LabBox) -> tuple[list[str], str] | None:
    """(namespace command prefix, link) where a box receives from the segment; None when it has no link now
    (a container stopped or disconnected: clear() sets the loss again)."""
    if box.kind == "vm":
        return ["ip", "netns", "exec", box.vm_netns], box.vm_link
    if _ctr_state(lab, box) not in ("running", "paused"):
        return None
    in_ns = _in_box_ns(lab, box)
    out = shell.run([*in_ns, "ip", "-o", "-4", "addr", "show"]).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3].split("/")[0] == box.ipv4:
            return in_ns, fields[1].split("@")[0]
    return None
