"""agent.audit: every finding present AND absent, on inspect dicts of the Docker Engine API's shape (20.10)."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from agent import audit as A
from agent.audit import caps
from agent.audit.model import AuditClass, AuditInput, EngineDefaults, ProcStatus

# Docker 20.10's default set (what the lab measures from a clean box's CapBnd); Podman's (containers.conf) is smaller
DOCKER_DEFAULT = frozenset(caps.normalize(c) for c in [
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP", "SETPCAP",
    "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"])
PODMAN_DEFAULT = DOCKER_DEFAULT - {"CAP_MKNOD", "CAP_NET_RAW", "CAP_AUDIT_WRITE"}
ENGINE = EngineDefaults("docker", DOCKER_DEFAULT, "test: Docker 20.10's set", frozenset({"seccomp"}))

CLEAN: dict[str, Any] = {
    "Id": "0" * 64, "Name": "/box-clean", "AppArmorProfile": "docker-default",
    "ProcessLabel": "system_u:system_r:container_t:s0:c1,c2",
    "HostConfig": {"Privileged": False, "CapAdd": None, "CapDrop": None, "NetworkMode": "docknet", "PidMode": "",
                   "IpcMode": "private", "UTSMode": "", "UsernsMode": "", "Memory": 8 << 30, "PidsLimit": 4096,
                   "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 5}, "Devices": [],
                   "SecurityOpt": ["no-new-privileges"]},
    "Mounts": [{"Type": "bind", "Source": "/srv/cvmfs", "Destination": "/cvmfs", "Mode": "", "RW": False,
                "Propagation": "rslave"}],
}


def inp(change: dict[str, Any] | None = None, *, mounts: list[dict[str, Any]] | None = None,
        proc: ProcStatus | None = None, engine: EngineDefaults = ENGINE, **top: Any) -> AuditInput:
    d = copy.deepcopy(CLEAN)
    d["HostConfig"].update(change or {})
    d.update(top)
    if mounts is not None:
        d["Mounts"] = mounts
    return AuditInput("b1", d, engine, proc)


def proc_of(cap_bnd: frozenset[str] = DOCKER_DEFAULT, nnp: bool | None = True, seccomp: int | None = 2) -> ProcStatus:
    return ProcStatus(frozenset(), cap_bnd, nnp, seccomp)


def ids(i: AuditInput) -> set[str]:
    return {f.id for f in A.audit(i, 0.0).findings}


def test_the_clean_box_has_no_finding_and_is_default():
    a = A.audit(inp(), 100.0)
    assert a.findings == () and a.audit_class is AuditClass.DEFAULT and a.privileges == frozenset()
    assert a.proc == "not running" and a.container == "box-clean"
    assert A.audit(inp(proc=proc_of()), 0).findings == ()


SELINUX = EngineDefaults("docker", DOCKER_DEFAULT, "t", frozenset({"selinux", "seccomp"}))
APPARMOR = EngineDefaults("docker", DOCKER_DEFAULT, "t", frozenset({"apparmor", "seccomp"}))
SOCK = {"Type": "bind", "Source": "/var/run/docker.sock", "Destination": "/var/run/docker.sock", "RW": True,
        "Propagation": "rprivate"}

# (finding id, an input that has it, the privileges it names)
PRESENT = [
    pytest.param("5.1", inp(AppArmorProfile="unconfined", engine=APPARMOR), ("apparmor=unconfined",), id="5.1-unconfined"),
    pytest.param("5.1", inp(AppArmorProfile="", engine=APPARMOR), ("apparmor=unconfined",), id="5.1-none"),
    pytest.param("5.2", inp({"SecurityOpt": ["label=disable"]}, engine=SELINUX), ("selinux=disabled",), id="5.2-disable"),
    pytest.param("5.2", inp(ProcessLabel="", engine=SELINUX), ("selinux=disabled",), id="5.2-nolabel"),
    pytest.param("5.3", inp({"CapAdd": ["CAP_SYS_ADMIN"]}), ("CAP_SYS_ADMIN",), id="5.3-inspect"),
    pytest.param("5.3", inp({"CapAdd": ["net_admin"]}), ("CAP_NET_ADMIN",), id="5.3-lowercase"),
    pytest.param("5.3", inp(proc=proc_of(DOCKER_DEFAULT | {"CAP_NET_ADMIN"})), ("CAP_NET_ADMIN",), id="5.3-proc"),
    pytest.param("5.4", inp({"Privileged": True}), ("privileged",), id="5.4"),
    pytest.param("5.5", inp(mounts=[{"Type": "bind", "Source": "/etc", "Destination": "/host/etc", "RW": True}]),
                 ("mount:/etc:rw",), id="5.5-etc"),
    pytest.param("5.5", inp(mounts=[{"Type": "bind", "Source": "/", "Destination": "/host", "RW": True}]),
                 ("mount:/:rw",), id="5.5-root"),
    pytest.param("5.9", inp({"NetworkMode": "host"}), ("network=host",), id="5.9"),
    pytest.param("5.10", inp({"Memory": 0}), (), id="5.10"),
    pytest.param("5.14", inp({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}), (), id="5.14-always"),
    pytest.param("5.14", inp({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 0}}), (),
                 id="5.14-on-failure-unbounded"),
    pytest.param("5.15", inp({"PidMode": "host"}), ("pid=host",), id="5.15"),
    pytest.param("5.16", inp({"IpcMode": "host"}), ("ipc=host",), id="5.16"),
    pytest.param("5.17", inp({"Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse",
                                           "CgroupPermissions": "rwm"}]}), ("device:/dev/fuse",), id="5.17"),
    pytest.param("5.19", inp(mounts=[{"Type": "bind", "Source": "/srv/x", "Destination": "/x", "RW": True,
                                      "Propagation": "rshared"}]), ("propagation:/x=shared",), id="5.19"),
    pytest.param("5.20", inp({"UTSMode": "host"}), ("uts=host",), id="5.20"),
    pytest.param("5.21", inp({"SecurityOpt": ["seccomp=unconfined", "no-new-privileges"]}), ("seccomp=unconfined",),
                 id="5.21-opt"),
    pytest.param("5.21", inp({"SecurityOpt": ["seccomp:unconfined", "no-new-privileges"]}), ("seccomp=unconfined",),
                 id="5.21-old-colon"),
    pytest.param("5.21", inp(proc=proc_of(seccomp=0)), ("seccomp=unconfined",), id="5.21-proc"),
    pytest.param("5.25", inp({"SecurityOpt": []}), (), id="5.25-opt"),
    pytest.param("5.25", inp(proc=proc_of(nnp=False)), (), id="5.25-proc"),
    pytest.param("5.28", inp({"PidsLimit": None}), (), id="5.28-none"),
    pytest.param("5.28", inp({"PidsLimit": -1}), (), id="5.28-unlimited"),
    pytest.param("5.30", inp({"UsernsMode": "host"}), ("userns=host",), id="5.30"),
    pytest.param("5.31", inp(mounts=[SOCK]), ("engine-socket:/var/run/docker.sock",), id="5.31-docker"),
    pytest.param("5.31", inp(mounts=[{**SOCK, "Source": "/run/podman/podman.sock"}]),
                 ("engine-socket:/run/podman/podman.sock",), id="5.31-podman"),
    pytest.param("cvmfs", inp(mounts=[{"Type": "bind", "Source": "/srv/cvmfs", "Destination": "/cvmfs",
                                       "RW": False, "Propagation": "rprivate"}]), (), id="cvmfs-rprivate"),
    pytest.param("cvmfs", inp(mounts=[{"Type": "bind", "Source": "/srv/cvmfs", "Destination": "/cvmfs",
                                       "RW": False, "Propagation": "rshared"}]), (), id="cvmfs-rshared"),
]


@pytest.mark.parametrize(("fid", "i", "privileges"), PRESENT)
def test_finding_present(fid, i, privileges, request):
    found = {f.id: f for f in A.audit(i, 0.0).findings}
    assert fid in found, found
    f = found[fid]
    assert f.privileges == privileges and f.fix and "\n" not in f.fix and f.evidence and f.detail
    assert f.bench == A.FINDINGS[fid].bench
    if fid != "cvmfs":
        assert f.bench == f"docker-bench-security 1.6.0 check_{fid.replace('.', '_')}"
    # only this finding, but where the case's input also has another one (SecurityOpt replaced: 5.25; rshared: 5.19)
    also = {"5.2-disable": {"5.25"}, "cvmfs-rshared": {"5.19"}}
    assert set(found) - {fid} <= also.get(request.node.callspec.id, set())


ABSENT = [
    pytest.param("5.1", inp(AppArmorProfile="unconfined"), id="5.1-host-without-apparmor"),
    pytest.param("5.1", inp(engine=APPARMOR), id="5.1-docker-default"),
    pytest.param("5.2", inp(ProcessLabel="", SecurityOpt=["label=disable"]), id="5.2-host-without-selinux"),
    pytest.param("5.2", inp(engine=SELINUX), id="5.2-labelled"),
    pytest.param("5.3", inp({"CapAdd": ["CAP_CHOWN", "NET_RAW"]}), id="5.3-default-caps-added"),
    pytest.param("5.3", inp({"CapAdd": ["CAP_NET_RAW"]}, engine=EngineDefaults("docker", DOCKER_DEFAULT, "t")),
                 id="5.3-docker-default-has-net-raw"),
    pytest.param("5.3", inp({"Privileged": True}), id="5.3-privileged-is-5.4s"),
    pytest.param("5.3", inp(proc=proc_of(DOCKER_DEFAULT - {"CAP_NET_RAW"})), id="5.3-proc-dropped"),
    pytest.param("5.4", inp(), id="5.4"),
    pytest.param("5.5", inp(mounts=[{"Type": "bind", "Source": "/etc", "Destination": "/host/etc", "RW": False}]),
                 id="5.5-readonly"),
    pytest.param("5.5", inp(mounts=[{"Type": "bind", "Source": "/etc/grid-security", "Destination": "/g",
                                     "RW": True}]), id="5.5-subdirectory"),
    pytest.param("5.9", inp({"NetworkMode": "default"}), id="5.9"),
    pytest.param("5.14", inp({"RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}}), id="5.14-no"),
    pytest.param("5.15", inp({"PidMode": "container:abc"}), id="5.15"),
    pytest.param("5.17", inp({"Devices": None}), id="5.17"),
    pytest.param("5.19", inp(mounts=[{"Type": "bind", "Source": "/x", "Destination": "/x", "Propagation": "rslave"}]),
                 id="5.19-rslave"),
    pytest.param("5.21", inp({"SecurityOpt": ["seccomp=/etc/profile.json", "no-new-privileges"]}), id="5.21-profile"),
    pytest.param("5.21", inp(proc=proc_of(seccomp=0), engine=EngineDefaults("docker", DOCKER_DEFAULT, "t")),
                 id="5.21-engine-without-seccomp"),
    pytest.param("5.25", inp({"SecurityOpt": ["no-new-privileges:true"]}), id="5.25-colon-true"),
    pytest.param("5.25", inp({"SecurityOpt": []}, proc=proc_of(nnp=True)), id="5.25-proc-says-1"),
    pytest.param("5.30", inp({"UsernsMode": ""}), id="5.30"),
    pytest.param("5.31", inp(mounts=[{"Type": "bind", "Source": "/var/run/other.sock", "Destination": "/s"}]),
                 id="5.31-other-socket"),
    pytest.param("cvmfs", inp(), id="cvmfs-rslave"),
    pytest.param("cvmfs", inp(mounts=[]), id="cvmfs-none"),
]


@pytest.mark.parametrize(("fid", "i"), ABSENT)
def test_finding_absent(fid, i):
    assert fid not in ids(i)


def test_every_registered_finding_has_a_present_and_an_absent_case():
    present = {p.values[0] for p in PRESENT}
    absent = {p.values[0] for p in ABSENT}
    assert set(A.FINDINGS) <= present and set(A.FINDINGS) - {"5.10", "5.16", "5.20", "5.28"} <= absent
    assert set(A.FINDINGS) == {"5.1", "5.2", "5.3", "5.4", "5.5", "5.9", "5.10", "5.14", "5.15", "5.16", "5.17",
                               "5.19", "5.20", "5.21", "5.25", "5.28", "5.30", "5.31", "cvmfs"}


def test_capabilities_compare_with_the_engines_own_default_set():
    """The same CapAdd is beyond Podman's default and within Docker's (never a fixed list)."""
    podman = EngineDefaults("podman", PODMAN_DEFAULT, "containers.conf default_capabilities")
    i = {"CapAdd": ["CAP_NET_RAW", "CAP_MKNOD"]}
    assert "5.3" not in ids(inp(i))
    f = {f.id: f for f in A.audit(inp(i, engine=podman), 0).findings}["5.3"]
    assert f.privileges == ("CAP_MKNOD", "CAP_NET_RAW") and "podman default" in f.detail
    assert "containers.conf" in f.evidence


def test_cap_add_all_is_every_capability():
    f = {f.id: f for f in A.audit(inp({"CapAdd": ["ALL"]}), 0).findings}["5.3"]
    assert set(f.privileges) == caps.ALL_CAPS - DOCKER_DEFAULT


def test_cvmfs_fix_is_rslave_never_shared():
    f = A.FINDINGS["cvmfs"]
    assert "rslave" in f.fix and "never shared" in f.fix and "check_5_19" in f.bench
    assert "rslave" in A.FINDINGS["5.19"].fix


@pytest.mark.parametrize(("i", "cls"), [
    pytest.param(inp(), AuditClass.DEFAULT, id="clean"),
    pytest.param(inp({"Memory": 0, "PidsLimit": 0, "SecurityOpt": []}), AuditClass.DEFAULT, id="hardening-only"),
    pytest.param(inp({"CapAdd": ["SYS_ADMIN"]}), AuditClass.ELEVATED, id="sys-admin"),
    pytest.param(inp(mounts=[SOCK]), AuditClass.ELEVATED, id="socket"),
    pytest.param(inp({"Privileged": True}), AuditClass.PRIVILEGED, id="privileged"),
    pytest.param(inp(proc=proc_of(caps.ALL_CAPS)), AuditClass.PRIVILEGED, id="every-cap-running"),
])
def test_class(i, cls):
    assert A.audit(i, 0).audit_class is cls


STATUS = """Name:\tsh
NoNewPrivs:\t1
Seccomp:\t2
Seccomp_filters:\t1
CapInh:\t0000000000000000
CapPrm:\t00000000a82425fb
CapEff:\t00000000a82425fb
CapBnd:\t00000000a82425fb
CapAmb:\t0000000000000000
"""


def test_proc_status_is_parsed():
    p = A.parse_proc_status(STATUS)
    assert p.no_new_privs is True and p.seccomp == 2
    # 0xa80425fb is Docker's default set; 0x200000 more is bit 21, CAP_SYS_ADMIN
    assert p.cap_bnd == DOCKER_DEFAULT | {"CAP_SYS_ADMIN"} and caps.to_mask(DOCKER_DEFAULT) == 0xa80425fb
    assert caps.from_mask(1 << 45) == {"CAP_45"}


def test_proc_status_without_caps_is_a_clear_error():
    with pytest.raises(ValueError, match="CapBnd missing"):
        A.parse_proc_status("Name:\tsh\nCapEff:\t0\n")


def test_change_text_names_added_then_removed():
    added, removed = A.change(frozenset({"pid=host"}), frozenset({"CAP_SYS_ADMIN", "CAP_NET_ADMIN"}))
    assert A.change_text(added, removed) == "privileges changed: +CAP_NET_ADMIN +CAP_SYS_ADMIN -pid=host"


def test_to_json_is_data_first():
    a = A.audit(inp({"CapAdd": ["SYS_ADMIN"]}, proc=None), 5.0)
    j = a.to_json()
    assert j["class"] == "elevated" and j["findings"][0]["id"] == "5.3" and j["proc"] == "not running"
    assert a.counts() == {"high": 0, "medium": 1, "low": 0}
