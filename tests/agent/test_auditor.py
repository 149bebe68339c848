"""agent.auditor without an engine: an unreachable engine is data (every box unknown, said why), and the change
between two audits is one event, its baseline kept in state_dir/audit.json across restarts."""
from __future__ import annotations

import json

import pytest

from agent import audit as A
from agent.auditor import AuditService, lsms_of, podman_conf_caps
from remediations.model import ContainerEventRecord
from tests.agent.audit.test_findings import inp


def test_an_unreachable_engine_makes_every_box_unknown_with_the_reason(tmp_path):
    got: list = []

    def no_engine():
        raise ConnectionError("unix:///var/run/docker.sock: connection refused")
    s = AuditService({"a": "ctr-a", "b": "ctr-b"}, no_engine, got.append, state_dir=str(tmp_path), clock=lambda: 9.0)
    out = s.audit_now()
    assert [a.box for a in out] == ["a", "b"] and all(a.audit_class == "unknown" for a in out)
    assert all("connection refused" in a.error for a in out)
    assert [type(m).__name__ for m in got] == ["AuditCompleted", "AuditCompleted"]


def test_a_change_is_one_event_and_the_baseline_survives_a_restart(tmp_path):
    got: list = []
    s = AuditService({"b1": "c"}, lambda: None, got.append, state_dir=str(tmp_path))
    s._record(A.audit(inp(), 1.0), "start")
    s._record(A.audit(inp({"CapAdd": ["SYS_ADMIN"]}), 2.0), "start")
    s._record(A.audit(inp({"CapAdd": ["SYS_ADMIN"]}), 3.0), "interval")
    s._save()
    changes = [m for m in got if isinstance(m, A.PrivilegesChanged)]
    assert [(c.added, c.old_class, c.new_class) for c in changes] == [(("CAP_SYS_ADMIN",), "default", "elevated")]
    assert json.loads((tmp_path / "audit.json").read_text())["boxes"]["b1"]["privileges"] == ["CAP_SYS_ADMIN"]
    got.clear()
    again = AuditService({"b1": "c"}, lambda: None, got.append, state_dir=str(tmp_path))
    again._record(A.audit(inp({"PidMode": "host"}), 4.0), "start")   # changed while the agent was down
    (change,) = [m for m in got if isinstance(m, A.PrivilegesChanged)]
    assert change.text == "privileges changed: +pid=host -CAP_SYS_ADMIN"


def test_engine_events_that_trigger_an_audit():
    s = AuditService({"b1": "c"}, lambda: None, lambda m: None)
    for event in ("die", "pause", "network_disconnect", "start", "oom"):
        s.on_container_event(ContainerEventRecord("b1", "container", event, event, None, "", 1.0))
    s.on_container_event(ContainerEventRecord("other", "container", "start", "start", None, "", 1.0))
    assert s._pending == {"b1": "start"}


def test_lsms_from_docker_and_podman_info():
    assert lsms_of({"SecurityOptions": ["name=apparmor", "name=seccomp,profile=default", "name=cgroupns"]}) == \
        {"apparmor", "seccomp", "cgroupns"}
    assert lsms_of({"host": {"security": {"selinuxEnabled": True, "apparmorEnabled": False,
                                          "seccompEnabled": True}}}) == {"selinux", "seccomp"}


def test_podmans_default_capabilities_from_containers_conf(tmp_path):
    usr, etc = tmp_path / "usr.conf", tmp_path / "etc.conf"
    usr.write_text('[containers]\ndefault_capabilities = ["CHOWN", "KILL", "NET_RAW"]\n')
    etc.write_text('[engine]\nruntime = "runc"\n')
    caps, source = podman_conf_caps((str(usr), str(etc)))
    assert caps == {"CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"} and source.startswith(str(usr))
    etc.write_text('[containers]\ndefault_capabilities = ["CHOWN"]\n')
    assert podman_conf_caps((str(usr), str(etc)))[0] == {"CAP_CHOWN"}   # the last that sets it wins
    assert podman_conf_caps((str(tmp_path / "none"),)) is None


class _NoContainersPodman:
    """The two answers engine_defaults reads when no container runs: a Podman's version and libpod-shaped info
    (`podman info --format json`'s host.security, as Podman 4.3 prints it)."""

    class api:   # docker-py's attribute name
        @staticmethod
        def containers():
            return []

    @staticmethod
    def version():
        return {"Components": [{"Name": "Podman Engine", "Version": "4.3.1"}]}

    @staticmethod
    def info():
        return {"host": {"security": {"capabilities": "CAP_CHOWN,CAP_DAC_OVERRIDE,CAP_FOWNER,CAP_FSETID,CAP_KILL",
                                      "seccompEnabled": True, "selinuxEnabled": False}}}


def test_podmans_defaults_from_its_info_when_no_container_runs():
    from agent.auditor import engine_defaults

    d = engine_defaults(_NoContainersPodman(), conf_caps=lambda: pytest.fail("info had them"))
    assert d.engine == "podman" and d.caps_known and d.lsms == {"seccomp"}
    assert d.default_caps == {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL"}
    assert d.caps_source == "podman info host.security.capabilities"
