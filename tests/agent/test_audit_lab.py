"""The isolation audit on the real Docker engine: the lab's privilege boxes (lab.privileges), every finding and its
absence, a box recreated with more privileges (one change event), the CLI and the least-privilege trial."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from agent import auditor
from agent.audit import AuditCompleted, PrivilegesChanged
from agent.core.config import loads
from agent.wiring import docker_factory
from remediations.model import ContainerEventRecord

pytestmark = pytest.mark.lab

# the low findings every box without hardening has (the engine's defaults): no memory limit, no PIDs limit,
# new privileges allowed
BASE = {"5.10", "5.28", "5.25"}
EXPECTED = {   # role -> finding ids (besides BASE, for all but clean)
    "privileged": {"5.4"},
    "sysadmin": {"5.3"},
    "netadmin": {"5.3"},
    "socket": {"5.31"},
    "pidhost": {"5.15"},
    "seccomp": {"5.21"},
    "cvmfs": {"cvmfs"},
    "hostwide": {"5.9", "5.16", "5.20", "5.30", "5.17", "5.5", "5.19", "5.14"},
}


@pytest.fixture(scope="module")
def boxes(lab_available, tmp_path_factory):
    if lab_available:
        pytest.skip(lab_available)
    from lab import privileges
    from lab.cleanup import remove_run

    run_id = privileges.claim_run()
    made = {}
    cvmfs = str(tmp_path_factory.mktemp("cvmfs"))
    try:
        made = privileges.create(run_id, cvmfs_dir=cvmfs)
        yield run_id, made, cvmfs
    finally:
        privileges.remove(made)
        privileges.release(cvmfs)
        remove_run(run_id)


@pytest.fixture(scope="module")
def client():
    return docker_factory(timeout_s=30)()


def test_every_finding_and_its_absence(boxes, client):
    _run_id, made, _cvmfs = boxes
    defaults = auditor.engine_defaults(client)
    # measured from a running container without --cap-add/--cap-drop (e.g. the clean box): Docker 20.10's 14
    assert "CapBnd" in defaults.caps_source and defaults.caps_known
    assert {"CAP_NET_RAW", "CAP_CHOWN"} <= defaults.default_caps and "CAP_SYS_ADMIN" not in defaults.default_caps
    assert "seccomp" in defaults.lsms
    audits = {role: auditor.audit_container(client, role, b.container, defaults, time.time())
              for role, b in made.items()}
    for role, a in audits.items():
        got = {f.id for f in a.findings}
        want = set() if role == "clean" else EXPECTED[role] | BASE
        assert a.error is None and got == want, (role, got, want)
    # this host has neither AppArmor nor SELinux on (docker info SecurityOptions): 5.1/5.2 never appear
    assert not {"5.1", "5.2"} & {f.id for a in audits.values() for f in a.findings}
    assert audits["privileged"].proc.startswith("not running") and audits["hostwide"].proc.startswith("not running")
    assert all(audits[r].proc == "read" for r in made if made[r].started)
    assert audits["privileged"].audit_class == "privileged" and audits["clean"].audit_class == "default"
    assert {audits[r].audit_class for r in ("sysadmin", "netadmin", "socket", "pidhost", "seccomp")} == {"elevated"}
    assert audits["cvmfs"].audit_class == "default"   # a hardening finding, not an elevation
    sysadmin = {f.id: f for f in audits["sysadmin"].findings}["5.3"]
    assert sysadmin.privileges == ("CAP_SYS_ADMIN",) and sysadmin.evidence.startswith("/proc/PID/status CapBnd")
    cvmfs = {f.id: f for f in audits["cvmfs"].findings}["cvmfs"]
    assert "rslave" in cvmfs.fix and "(rprivate)" in cvmfs.detail
    assert audits["socket"].privileges == {"engine-socket:/var/run/docker.sock"}


def test_cvmfs_without_rslave_never_sees_a_later_mount(boxes):
    """Why the cvmfs finding's fix is rslave: a mount the host makes later under /cvmfs (autofs mounting a
    repository on first use) appears in the rslave box and never in the box without propagation."""
    _run_id, made, cvmfs = boxes
    repo = os.path.join(cvmfs, "later.cern.ch")
    os.makedirs(repo, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", repo], check=True)
    try:
        with open(os.path.join(repo, "version"), "w") as fh:
            fh.write("2.11\n")

        def sees(role: str) -> bool:
            return subprocess.run(["docker", "exec", made[role].container, "cat", "/cvmfs/later.cern.ch/version"],
                                  capture_output=True).returncode == 0
        assert sees("clean") and not sees("cvmfs")
    finally:
        subprocess.run(["umount", repo], check=False)


def test_a_box_recreated_with_more_privileges_is_one_change_event(boxes, client, tmp_path):
    from lab import privileges

    run_id, _made, _cvmfs = boxes
    name = privileges.container_name(run_id, 199)
    image = client.api.inspect_container(_made["netadmin"].container)["Config"]["Image"]
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", "--cap-add", "NET_ADMIN", image,
                    "1093"], check=True, capture_output=True)
    got: list = []
    cond = threading.Condition()

    def publish(msg):
        with cond:
            got.append(msg)
            cond.notify_all()

    def wait_for(n_audits: int) -> None:
        with cond:
            assert cond.wait_for(lambda: sum(isinstance(m, AuditCompleted) for m in got) >= n_audits, 60)

    service = auditor.AuditService({"recreated": name}, lambda: client, publish, interval_s=3600,
                                   state_dir=str(tmp_path))
    service.start()
    try:
        wait_for(1)
        subprocess.run(["docker", "rm", "-f", name], check=True, capture_output=True)
        subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", "--cap-add", "NET_ADMIN",
                        "--cap-add", "SYS_ADMIN", image, "1093"], check=True, capture_output=True)
        service.on_container_event(ContainerEventRecord("recreated", "container", "start", "start", None, "",
                                                        time.time()))
        wait_for(2)
        service.on_container_event(ContainerEventRecord("recreated", "container", "restart", "restart", None, "",
                                                        time.time()))
        wait_for(3)   # audited again, unchanged: no event
    finally:
        service.stop()
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    changes = [m for m in got if isinstance(m, PrivilegesChanged)]
    assert len(changes) == 1 and changes[0].added == ("CAP_SYS_ADMIN",) and changes[0].removed == ()
    assert changes[0].text == "privileges changed: +CAP_SYS_ADMIN"
    assert [m.trigger for m in got if isinstance(m, AuditCompleted)] == ["start", "start", "restart"]
    # the baseline survives a restart of the agent: a new service sees no change, audit.json holds it
    saved = json.loads((tmp_path / "audit.json").read_text())
    assert saved["boxes"]["recreated"]["privileges"] == ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]


def _config(tmp_path, made: dict, checks: str = "") -> str:
    text = f"""
[agent]
interval = 10
timeout = 2.0
state_dir = "{tmp_path / 'state'}"
"""
    for i, (role, b) in enumerate(made.items()):
        text += f"""
[[box]]
name = "{role}"
kind = "container"
ipv4 = "192.0.2.{100 + i}"
container = "{b.container}"
network = "none"
""" + (checks if role == "both" else "")
    path = tmp_path / "agent.toml"
    path.write_text(text)
    loads(text)   # a valid config
    return str(path)


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", "audit", *argv], capture_output=True, text=True,
                          timeout=300)


def test_the_audit_command_json_text_and_exit_codes(boxes, tmp_path):
    _run_id, made, _cvmfs = boxes
    cfg = _config(tmp_path, made)
    p = _cli("-c", cfg, "--json")
    assert p.returncode == 1, p.stderr   # high findings (privileged, pid host, socket, seccomp)
    out = json.loads(p.stdout)
    by_box = {b["box"]: b for b in out["boxes"]}
    assert set(by_box) == set(made) and by_box["clean"]["findings"] == []
    assert [f["id"] for f in by_box["sysadmin"]["findings"]][0] == "5.3"
    p = _cli("-c", cfg, "clean", "netadmin")
    assert p.returncode == 0, p.stdout + p.stderr   # no high finding: medium/low are WARN
    assert "PASS  no findings" in p.stdout and "WARN  5.3 " in p.stdout and "fix: " in p.stdout
    p = _cli("-c", cfg, "nosuchbox")
    assert p.returncode == 2 and "unknown container box 'nosuchbox'" in p.stderr and p.stderr.count("\n") == 1


def test_suggest_try_adds_back_only_the_capability_a_check_needs(boxes, tmp_path):
    """A box with NET_ADMIN and SYS_ADMIN whose check sets an interface's MTU: the trial keeps NET_ADMIN, names
    the check, and drops SYS_ADMIN; the variant is gone afterwards."""
    from lab import privileges

    run_id, made, _cvmfs = boxes
    name = privileges.container_name(run_id, 198)
    image = subprocess.run(["docker", "inspect", "-f", "{{.Config.Image}}", made["clean"].container],
                           capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", "--cap-add", "NET_ADMIN",
                    "--cap-add", "SYS_ADMIN", "-v", f"{tmp_path}:/data", image, "1093"], check=True,
                   capture_output=True)
    try:
        check = '\n[[box.check]]\nkind = "exec"\nargv = ["ip", "link", "set", "lo", "mtu", "1400"]\n'
        cfg = _config(tmp_path, {"both": privileges.PrivilegeBox("both", name, (), True)}, check)
        p = _cli("-c", cfg, "--suggest", "both")
        assert p.returncode == 0 and "not tried: CAP_NET_ADMIN, CAP_SYS_ADMIN" in p.stdout, p.stdout + p.stderr
        p = _cli("-c", cfg, "--suggest", "both", "--try")
        assert p.returncode == 2 and "--yes" in p.stderr
        p = _cli("-c", cfg, "--suggest", "both", "--try", "--yes", "--json")
        assert p.returncode == 0, p.stdout + p.stderr
        out = json.loads(p.stdout)
        assert out["needed_by"] == {"CAP_NET_ADMIN": ["exec:ip"]} and out["not_needed"] == ["CAP_SYS_ADMIN"]
        assert out["checks_with_defaults"] == {"running": True, "exec:ip": False}
        assert out["flags"][:2] == ["--cap-add", "NET_ADMIN"] and "SYS_ADMIN" not in out["flags"]
        assert any("writable" in line and "/data" in line for line in out["left_out"])
        left = subprocess.run(["docker", "ps", "-aq", "--filter", "label=vobox.audit.trial"], capture_output=True,
                              text=True).stdout.split()
        assert left == []
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_the_engine_events_on_the_bus_trigger_the_audit_of_a_recreated_box(boxes, client, tmp_path):
    """End to end as wired (agent.wiring.build_auditor): the real events watcher publishes the recreated
    container's events on the bus, the audit service audits the box again, one PrivilegesChanged follows."""
    from agent.bus import Bus
    from agent.engines.watcher import ContainerStates, DockerEventWatcher
    from agent.wiring import build_auditor
    from lab import privileges

    run_id, made, _cvmfs = boxes
    name = privileges.container_name(run_id, 197)
    image = client.api.inspect_container(made["clean"].container)["Config"]["Image"]
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", image, "1093"], check=True,
                   capture_output=True)
    text = f"""
[agent]
interval = 10
timeout = 2.0
state_dir = "{tmp_path / 'state'}"

[[box]]
name = "rebuilt"
kind = "container"
ipv4 = "192.0.2.150"
container = "{name}"
network = "none"
"""
    cfg = loads(text)
    bus = Bus()
    got: list = []
    cond = threading.Condition()

    def keep(msg):
        with cond:
            got.append(msg)
            cond.notify_all()
    for kind in (AuditCompleted, PrivilegesChanged, ContainerEventRecord):
        bus.subscribe(kind, keep, name="test")
    make = lambda: docker_factory(timeout_s=30)()   # noqa: E731 - the wiring's factory
    auditor_ = build_auditor(cfg, bus, make, discovering=False)
    watcher = DockerEventWatcher([b.remediation_target() for b in cfg.boxes], make, bus.publish,
                                 states=ContainerStates(str(tmp_path / "containers.json")))
    auditor_.start()
    watcher.start()
    try:
        assert watcher.connected.wait(30)
        with cond:
            assert cond.wait_for(lambda: any(isinstance(m, AuditCompleted) for m in got), 60)
        subprocess.run(["docker", "rm", "-f", name], check=True, capture_output=True)
        subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", "--cap-add", "SYS_ADMIN",
                        "--pid", "host", image, "1093"], check=True, capture_output=True)
        with cond:
            assert cond.wait_for(lambda: any(isinstance(m, PrivilegesChanged) for m in got), 60), got
        time.sleep(1.0)   # the create and start events: still one change
    finally:
        watcher.stop()
        auditor_.stop()
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    (change,) = [m for m in got if isinstance(m, PrivilegesChanged)]
    assert change.text == "privileges changed: +CAP_SYS_ADMIN +pid=host" and change.new_class == "elevated"
    triggers = [m.trigger for m in got if isinstance(m, AuditCompleted)]
    assert triggers[0] == "start" and set(triggers[1:]) <= {"start", "create", "resync"} and len(triggers) >= 2
