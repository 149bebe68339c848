"""One small function per finding, as Docker Bench for Security's tests/5_container_runtime.sh (v1.6.0) has one
check per item: each takes an AuditInput and returns a Found (what, evidence, privileges) or None.

`FINDINGS` is the registry (id -> Check: the function with its id, title, severity, fix and benchmark item);
`run(inp)` applies every check and returns the Findings. Where this differs from docker-bench it says so in
the check's docstring (e.g. 5.3 compares with the engine's own default set read from the host, never a fixed
list; 5.1/5.2 apply only where the engine has that LSM on).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from agent.audit import caps
from agent.audit.model import BENCH, AuditInput, Finding, Severity


@dataclass(frozen=True, slots=True)
class Found:
    """What a check found on a box: detail (one line), the evidence it rests on, the privileges it grants."""

    detail: str
    evidence: str
    privileges: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Check:
    """A finding's definition: id, title, severity, one-line fix, the benchmark item, whether it widens isolation
    (counts for the elevated class), and its function."""

    id: str
    title: str
    severity: Severity
    fix: str
    bench: str
    elevates: bool
    func: Callable[[AuditInput], Found | None]

    def __call__(self, inp: AuditInput) -> Finding | None:
        """The Finding of this check on a box, or None when absent."""
        found = self.func(inp)
        if found is None:
            return None
        return Finding(self.id, self.title, self.severity, found.detail, found.evidence, self.fix, self.bench,
                       found.privileges, self.elevates)


FINDINGS: dict[str, Check] = {}


def _check(id_: str, title: str, severity: Severity, fix: str, *, bench: str | None = None,
           elevates: bool = True) -> Callable[[Callable[[AuditInput], Found | None]], Callable[[AuditInput], Found | None]]:
    """Register a check function under id_ (bench: the benchmark item; default "<BENCH> check_<id_>")."""
    def register(func: Callable[[AuditInput], Found | None]) -> Callable[[AuditInput], Found | None]:
        item = bench or f"{BENCH} check_{id_.replace('.', '_')}"
        FINDINGS[id_] = Check(id_, title, severity, fix, item, elevates, func)
        return func
    return register


def run(inp: AuditInput) -> tuple[Finding, ...]:
    """Every check on one box, in registry order: the findings present."""
    return tuple(f for c in FINDINGS.values() if (f := c(inp)) is not None)


def _opt(inp: AuditInput, key: str) -> str | None:
    """The value of a security option KEY ("seccomp", "label", "apparmor", "no-new-privileges"), "" when given
    bare; None when absent. Docker writes `key=value`, older engines `key:value`."""
    for opt in inp.security_opt:
        k, sep, v = opt.replace(":", "=", 1).partition("=")
        if k.strip() == key:
            return v.strip() if sep else ""
    return None


def _mode(inp: AuditInput, key: str) -> str:
    v = inp.host_config.get(key)
    return v if isinstance(v, str) else ""


@_check("5.1", "AppArmor profile", Severity.MEDIUM, "drop --security-opt apparmor=unconfined (the engine's "
        "docker-default profile applies) or give a profile: --security-opt apparmor=PROFILE")
def apparmor(inp: AuditInput) -> Found | None:
    """5.1: no AppArmor profile (AppArmorProfile empty or "unconfined"); only where the engine has AppArmor on."""
    if "apparmor" not in inp.engine.lsms:
        return None
    profile = inp.inspect.get("AppArmorProfile") or ""
    if profile and profile != "unconfined":
        return None
    return Found(f"AppArmor profile {profile or 'none'}", f"inspect AppArmorProfile={profile!r}",
                 ("apparmor=unconfined",))


@_check("5.2", "SELinux label", Severity.MEDIUM, "drop --security-opt label=disable (the engine labels the "
        "container container_t) or set one: --security-opt label=type:TYPE")
def selinux(inp: AuditInput) -> Found | None:
    """5.2: no SELinux process label (ProcessLabel empty or label=disable); only where the engine has SELinux on.

    docker-bench looks for any SecurityOpt; an engine with SELinux on labels every container itself, so the
    label it applied (ProcessLabel) is the evidence here.
    """
    if "selinux" not in inp.engine.lsms:
        return None
    label = inp.inspect.get("ProcessLabel") or ""
    disabled = _opt(inp, "label") in ("disable", "disabled")
    if label and not disabled:
        return None
    return Found("SELinux label disabled" if disabled else "no SELinux process label",
                 f"inspect ProcessLabel={label!r}, HostConfig.SecurityOpt={inp.security_opt}", ("selinux=disabled",))


@_check("5.3", "capabilities beyond the engine's default", Severity.MEDIUM,
        "drop the --cap-add flags the box does not need (vobox-agent audit --suggest BOX finds them by trial)")
def capabilities(inp: AuditInput) -> Found | None:
    """5.3: capabilities beyond the engine's default set (EngineDefaults.default_caps, read from the host).

    Running: the bounding set of its main process (/proc/PID/status CapBnd); created or stopped, or with the
    default set unknown: HostConfig.CapAdd.
    A privileged box is 5.4's (it has every capability). docker-bench compares CapAdd with a fixed list of
    Docker's defaults; Podman's default set is smaller, so the list is the engine's own.
    """
    if inp.host_config.get("Privileged") is True:
        return None
    if inp.proc is not None and inp.engine.caps_known:
        beyond, evidence = inp.proc.cap_bnd - inp.engine.default_caps, "/proc/PID/status CapBnd"
    else:
        beyond, evidence = caps.names(inp.host_config.get("CapAdd")) - inp.engine.default_caps, "HostConfig.CapAdd"
    if not beyond:
        return None
    listed = sorted(beyond)
    return Found(f"{', '.join(caps.short(c) for c in listed)} beyond the {inp.engine.engine} default",
                 f"{evidence} vs the default set ({inp.engine.caps_source})", tuple(listed))


@_check("5.4", "privileged container", Severity.HIGH, "run without --privileged; add back only the capabilities, "
        "devices and mounts it needs (vobox-agent audit --suggest BOX)")
def privileged(inp: AuditInput) -> Found | None:
    """5.4: HostConfig.Privileged (every capability, every device, no seccomp/LSM confinement)."""
    if inp.host_config.get("Privileged") is not True:
        return None
    return Found("privileged: every capability and device of the host", "inspect HostConfig.Privileged=true",
                 ("privileged",))


# docker-bench 1.6.0 check_5_5's list
SENSITIVE_DIRS: tuple[str, ...] = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr")


@_check("5.5", "sensitive host directory mounted read-write", Severity.HIGH,
        "mount only the subdirectory the box needs, read-only (-v HOST:CTR:ro)")
def sensitive_mounts(inp: AuditInput) -> Found | None:
    """5.5: a host directory of SENSITIVE_DIRS (exactly) bind-mounted read-write (Mounts[].Source, RW)."""
    hits = sorted({os.path.normpath(str(m.get("Source"))) for m in inp.mounts
                   if m.get("Type", "bind") == "bind" and m.get("RW") is True
                   and os.path.normpath(str(m.get("Source") or "-")) in SENSITIVE_DIRS})
    if not hits:
        return None
    return Found(f"host {', '.join(hits)} mounted read-write", "inspect Mounts[].Source, RW=true",
                 tuple(f"mount:{h}:rw" for h in hits))


def _host_ns(inp: AuditInput, key: str, flag: str) -> Found | None:
    if _mode(inp, key) != "host":
        return None
    return Found(f"shares the host's {flag.split('=')[0].upper()} namespace", f"inspect HostConfig.{key}=host",
                 (flag,))


@_check("5.9", "host network namespace", Severity.MEDIUM, "run on the site's macvlan network, not --network host")
def host_network(inp: AuditInput) -> Found | None:
    """5.9: HostConfig.NetworkMode host."""
    return _host_ns(inp, "NetworkMode", "network=host")


@_check("5.10", "no memory limit", Severity.LOW, "set --memory (e.g. --memory 8g)", elevates=False)
def memory_limit(inp: AuditInput) -> Found | None:
    """5.10: HostConfig.Memory 0 (unlimited)."""
    if inp.host_config.get("Memory") not in (0, None):
        return None
    return Found("no memory limit", "inspect HostConfig.Memory=0")


@_check("5.14", "restart policy without a bound", Severity.LOW, "--restart on-failure:5", elevates=False)
def restart_policy(inp: AuditInput) -> Found | None:
    """5.14: a restart policy that restarts for ever (always, unless-stopped, on-failure without a count).

    docker-bench also warns about no policy; a box without one is not restarted in a loop (the agent's own
    remediation restarts it, within its budget), so "no" passes here.
    """
    rp = inp.host_config.get("RestartPolicy")
    name = rp.get("Name", "") if isinstance(rp, dict) else ""
    count = rp.get("MaximumRetryCount", 0) if isinstance(rp, dict) else 0
    if name in ("", "no") or (name == "on-failure" and isinstance(count, int) and 0 < count <= 5):
        return None
    return Found(f"restart policy {name}" + (f":{count}" if name == "on-failure" else ""),
                 f"inspect HostConfig.RestartPolicy={{Name: {name!r}, MaximumRetryCount: {count}}}")


@_check("5.15", "host PID namespace", Severity.HIGH, "run without --pid host")
def host_pid(inp: AuditInput) -> Found | None:
    """5.15: HostConfig.PidMode host (sees and signals every host process)."""
    return _host_ns(inp, "PidMode", "pid=host")


@_check("5.16", "host IPC namespace", Severity.MEDIUM, "run without --ipc host")
def host_ipc(inp: AuditInput) -> Found | None:
    """5.16: HostConfig.IpcMode host."""
    return _host_ns(inp, "IpcMode", "ipc=host")


@_check("5.17", "host devices", Severity.LOW, "pass only the devices the box needs (e.g. --device /dev/fuse)")
def devices(inp: AuditInput) -> Found | None:
    """5.17: host devices passed in (HostConfig.Devices[].PathOnHost)."""
    ds = inp.host_config.get("Devices")
    paths = sorted({str(d.get("PathOnHost")) for d in ds if isinstance(d, dict)}) if isinstance(ds, list) else []
    if not paths:
        return None
    return Found(f"devices {', '.join(paths)}", "inspect HostConfig.Devices[].PathOnHost",
                 tuple(f"device:{p}" for p in paths))


@_check("5.19", "shared mount propagation", Severity.MEDIUM,
        "mount with rslave (e.g. -v /cvmfs:/cvmfs:rslave), never shared")
def shared_propagation(inp: AuditInput) -> Found | None:
    """5.19: a mount with shared or rshared propagation (Mounts[].Propagation): the box's mounts reach the host."""
    hits = sorted(str(m.get("Destination")) for m in inp.mounts if m.get("Propagation") in ("shared", "rshared"))
    if not hits:
        return None
    return Found(f"shared propagation on {', '.join(hits)}", "inspect Mounts[].Propagation",
                 tuple(f"propagation:{h}=shared" for h in hits))


@_check("5.20", "host UTS namespace", Severity.MEDIUM, "run without --uts host")
def host_uts(inp: AuditInput) -> Found | None:
    """5.20: HostConfig.UTSMode host."""
    return _host_ns(inp, "UTSMode", "uts=host")


@_check("5.21", "seccomp disabled", Severity.HIGH, "drop --security-opt seccomp=unconfined (the engine's default "
        "profile applies) or give a profile: --security-opt seccomp=FILE.json")
def seccomp(inp: AuditInput) -> Found | None:
    """5.21: seccomp=unconfined in SecurityOpt, or (running) Seccomp 0 in /proc while the engine has seccomp on.

    A privileged box is 5.4's (privileged turns seccomp off).
    """
    if inp.host_config.get("Privileged") is True:
        return None
    if _opt(inp, "seccomp") == "unconfined":
        return Found("seccomp unconfined", f"inspect HostConfig.SecurityOpt={inp.security_opt}",
                     ("seccomp=unconfined",))
    if inp.proc is not None and inp.proc.seccomp == 0 and "seccomp" in inp.engine.lsms:
        return Found("seccomp off in the running process", "/proc/PID/status Seccomp=0", ("seccomp=unconfined",))
    return None


@_check("5.25", "new privileges allowed", Severity.LOW, "--security-opt no-new-privileges", elevates=False)
def no_new_privileges(inp: AuditInput) -> Found | None:
    """5.25: setuid binaries may gain privileges: no no-new-privileges option (running: /proc NoNewPrivs 0)."""
    if inp.proc is not None and inp.proc.no_new_privs is not None:
        if inp.proc.no_new_privs:
            return None
        return Found("processes may gain privileges (setuid)", "/proc/PID/status NoNewPrivs=0")
    value = _opt(inp, "no-new-privileges")
    if value is not None and value in ("", "true"):
        return None
    return Found("processes may gain privileges (setuid)", f"inspect HostConfig.SecurityOpt={inp.security_opt}")


@_check("5.28", "no PIDs limit", Severity.LOW, "set --pids-limit (e.g. --pids-limit 4096)", elevates=False)
def pids_limit(inp: AuditInput) -> Found | None:
    """5.28: HostConfig.PidsLimit unset, 0 or -1 (unlimited: a fork bomb reaches the host's limit)."""
    limit = inp.host_config.get("PidsLimit")
    if isinstance(limit, int) and limit > 0:
        return None
    return Found("no PIDs limit", f"inspect HostConfig.PidsLimit={limit}")


@_check("5.30", "host user namespace", Severity.MEDIUM, "run without --userns host")
def host_userns(inp: AuditInput) -> Found | None:
    """5.30: HostConfig.UsernsMode host."""
    return _host_ns(inp, "UsernsMode", "userns=host")


@_check("5.31", "engine socket mounted", Severity.HIGH, "remove the engine socket mount; if the box must see its "
        "containers, give it a read-only socket proxy")
def engine_socket(inp: AuditInput) -> Found | None:
    """5.31: the engine's API socket mounted (a Mounts[].Source among EngineDefaults.sockets, or named docker.sock
    or podman.sock): whoever is in the box controls the host's engine."""
    hits = sorted({str(m.get("Source")) for m in inp.mounts
                   if str(m.get("Source")) in inp.engine.sockets
                   or os.path.basename(str(m.get("Source"))) in ("docker.sock", "podman.sock")})
    if not hits:
        return None
    return Found(f"engine socket {', '.join(hits)} mounted", "inspect Mounts[].Source",
                 tuple(f"engine-socket:{h}" for h in hits))


@_check("cvmfs", "CVMFS without rslave propagation", Severity.MEDIUM,
        "mount it -v /cvmfs:/cvmfs:rslave (rslave, never shared)",
        bench=f"none (VO-Box specific; {BENCH} check_5_19 forbids shared)", elevates=False)
def cvmfs_propagation(inp: AuditInput) -> Found | None:
    """/cvmfs mounted without rslave propagation: autofs mounts the host makes later under /cvmfs (each
    repository on first use) never appear in the box. The fix is rslave: shared would also send the box's
    mounts to the host (5.19)."""
    hits = sorted(f"{m.get('Destination')} ({m.get('Propagation') or 'none'})" for m in inp.mounts
                  if str(m.get("Destination", "")).rstrip("/") == "/cvmfs" and m.get("Propagation") != "rslave")
    if not hits:
        return None
    return Found(f"{', '.join(hits)}: the host's later autofs mounts never appear", "inspect Mounts[].Propagation")
